"""``rightreasons data verify`` on miniature replicas of ISIC, plant, CUB and Waterbirds: complete copies pass
with the loader's counts; broken copies (a file deleted, a truncated JPEG, a wrong-size mask, a malformed
line) report every problem, each named, exit 2 with a one-line summary; the verifier hook of a loader module."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from replicas_cub import set_line, write_cub, write_waterbirds
from replicas_isic_plant import encode, write_isic, write_plant
from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data import registry, verify
from rightreasons.data.csv_common import SPLIT_NAMES
from rightreasons.errors import UserError


def run(capsys, *args):
    code = main(["data", "verify", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def truncate_jpeg(path):
    """Cut a JPEG inside its scan data: the header still reads, the end-of-image marker is gone."""
    raw = path.read_bytes()
    sos = raw.index(b"\xff\xda")
    path.write_bytes(raw[:sos + (len(raw) - sos) // 2])


def loader_counts(data, by):
    """split -> name -> examples of the loaded dataset, by group or class."""
    names = data.info["groups" if by == "group" else "classes"]
    out = {}
    for s in SPLIT_NAMES:
        values = getattr(data.split(s), "group" if by == "group" else "y")
        counts = torch.bincount(values, minlength=len(names)).tolist()
        out[s] = dict(zip(names, counts))
    return out


@pytest.fixture
def isic_heo(tmp_path):
    return write_isic(tmp_path / "isic", "heo")


@pytest.fixture
def plant(tmp_path):
    return write_plant(tmp_path / "plant")


@pytest.fixture
def cub(tmp_path):
    root = tmp_path / "CUB_200_2011"
    return root, write_cub(root)


@pytest.fixture
def waterbirds(tmp_path):
    root, segs = tmp_path / "wb", tmp_path / "CUB_200_2011" / "segmentations"
    return root, segs, write_waterbirds(root, segs)


# ---------------------------------------------------------------------------------------------- complete


@pytest.mark.parametrize("layout", ["rieger", "heo"])
def test_complete_isic_copies_pass_with_the_loaders_counts(tmp_path, capsys, layout):
    rep = write_isic(tmp_path / layout, layout)
    v = verify.verify_dataset("isic", rep.root)
    assert v.ok and v.loaded is True and v.settings["layout"] == layout
    data = load_dataset(f"isic:{rep.root}", size=8)
    assert v.counts == data.info["group_counts"] == loader_counts(data, "group")
    assert sum(len(v.splits[s]) for s in SPLIT_NAMES) == len(rep.items)
    # every image and segmentation the loader reads, nothing it skips (notes.txt)
    assert len(v.files) == len(rep.items) + len(rep.masks) and not any(k.endswith(".txt") for k in v.files)
    code, out, err = run(capsys, "isic", rep.root)
    assert code == 0 and err == ""
    assert out.strip().splitlines()[-1].startswith(f"isic:{rep.root}: complete: {len(v.files)} files")
    assert "benign/patch" in out and "1 entry skipped" in out


def test_complete_plant_cub_and_waterbirds_copies_pass(plant, cub, waterbirds, capsys):
    v = verify.verify_dataset("plant", plant.root)
    assert v.ok and v.loaded is None  # its stream path decodes the training images: only with --decode
    v = verify.verify_dataset("plant", plant.root, decode=True)
    assert v.ok and v.loaded is True
    assert v.counts == loader_counts(load_dataset(f"plant:{plant.root}", size=8), "class")
    assert len(v.files) == len(plant.images) + 3  # the images, train_0.txt, test_0.txt and the mask pickle

    root, records = cub
    v = verify.verify_dataset("cub", root, seed=3, options={"val_fraction": 0.25})
    assert v.ok and v.loaded is True
    data = load_dataset(f"cub:{root}", seed=3, val_fraction=0.25, size=8)
    assert v.counts == loader_counts(data, "class")
    assert [k.rsplit("/", 1)[-1] for k in v.splits["val"]] == [
        next(r.rel for r in records if r.id == i).rsplit("/", 1)[-1] for i in data.info["image_ids"]["val"]]

    root, segs, records = waterbirds
    v = verify.verify_dataset("waterbirds", root, options={"segmentations": str(segs)})
    assert v.ok and v.loaded is True
    assert v.counts == loader_counts(load_dataset(f"waterbirds:{root}", segmentations=str(segs), size=8), "group")
    assert all(k.startswith("@segmentations/") for k in v.files if k.endswith(".png"))
    assert run(capsys, "waterbirds", root, "--data-option", f"segmentations={segs}", "--decode")[0] == 0


# ---------------------------------------------------------------------------------------------- broken


def test_a_broken_plant_copy_reports_every_problem_by_name(plant, capsys):
    gone, cut, small = plant.train[0], plant.train[1], plant.test[0]
    plant.images[gone].unlink()
    truncate_jpeg(plant.images[cut])
    masks = {**plant.plant, small: np.ones((5, 5), dtype=bool)}
    (plant.root / "mask" / "preprocessed_masks.pyu").write_bytes(pickle.dumps(masks))
    code, out, err = run(capsys, "plant", plant.root)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: plant:{plant.root}: 3 problem(s) (1 missing, "
                                                   "1 undecodable, 1 mask size)")
    assert f"{plant.images[gone]}: no such file (listed in" in out
    assert f"{plant.images[cut]} (" in out and "truncated JPEG" in out
    assert f"mask '{small}': mask is 5x5 but its image is 12x16" in out
    # the counts are still those of the lists: the deleted image keeps its place
    assert sum(sum(row.values()) for row in verify.verify_dataset("plant", plant.root).counts.values()) == 16


def test_a_broken_isic_copy_reports_missing_malformed_undecodable_and_mask_size(isic_heo, capsys):
    rep = isic_heo
    patch = [i for i, it in rep.items.items() if it[3] == 1]
    root = rep.root
    folder, name = rep.items[patch[0]][:2]
    (root / folder / name).unlink()  # its segmentation stays: no matching image
    (root / "segmentation" / rep.items[patch[1]][1]).unlink()  # a patch image without its segmentation
    (root / "segmentation" / rep.items[patch[2]][1]).write_bytes(encode(np.zeros((10, 10, 3), dtype=np.uint8)))
    malignant = next(i for i, it in rep.items.items() if it[3] == 2)
    truncate_jpeg(root / rep.items[malignant][0] / rep.items[malignant][1])
    v = verify.verify_dataset("isic", root)
    kinds = {k: [p.where for p in ps] for k, ps in v.by_kind().items()}
    assert kinds == {
        "missing": [str(root / "segmentation" / rep.items[patch[1]][1])],
        "undecodable": [str(root / rep.items[malignant][0] / rep.items[malignant][1])],
        "mask size": [str(root / "segmentation" / rep.items[patch[2]][1])],
        "malformed": [str(root / "segmentation" / name)],
    }
    assert v.loaded is None  # the loader is not run on a copy with problems
    code, out, err = run(capsys, "isic", root)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "4 problem(s)" in err
    assert "segmentation is 10x10 but its image is 20x24" in out and f"no matching image {root / folder / name}" in out


def test_a_broken_cub_copy(cub, capsys):
    root, records = cub
    (root / "images" / records[0].rel).unlink()
    truncate_jpeg(root / "images" / records[1].rel)
    seg = (root / "segmentations" / records[2].rel).with_suffix(".png")
    seg.write_bytes(encode(np.zeros((8, 8), dtype=np.uint8)))
    set_line(root / "image_class_labels.txt", 4, "4 999")
    v = verify.verify_dataset("cub", root, options={"val_fraction": 0.25})
    kinds = {k: [p.line() for p in ps] for k, ps in v.by_kind().items()}
    assert kinds["missing"] == [f"{root / 'images' / records[0].rel} (images.txt line 1): no such file"]
    assert kinds["undecodable"][0].startswith(f"{root / 'images' / records[1].rel} (images.txt line 2): truncated")
    assert kinds["mask size"] == [f"{seg} (segmentation of images.txt line 3): segmentation is 8x8 but its image "
                                  "is 32x40"]
    assert any("image_class_labels.txt line 4: class id 999 is not in 1..200" in line for line in kinds["malformed"])
    assert any("no line for image id 4" in line for line in kinds["malformed"])
    assert run(capsys, "cub", root, "--data-option", "val_fraction=0.25")[0] == 2


def test_a_broken_waterbirds_copy(waterbirds):
    root, segs, records = waterbirds
    stem = records[0].filename.rsplit("/", 1)[1][:-4]
    next(segs.rglob(f"{stem}.png")).unlink()
    set_line(root / "metadata.csv", 3, f"2,{records[1].filename},1,7,0,x.jpg")
    v = verify.verify_dataset("waterbirds", root, options={"segmentations": str(segs)})
    kinds = {k: [p.line() for p in ps] for k, ps in v.by_kind().items()}
    assert set(kinds) == {"missing", "malformed"}
    assert f"no segmentation {stem}.png under {segs}" in kinds["missing"][0]
    assert kinds["malformed"] == [f"{root / 'metadata.csv'} row 3, column 'split': '7' is not 0 (train), 1 (val) "
                                  "or 2 (test)"]


def test_decode_finds_what_the_header_check_cannot(plant):
    path = plant.images[plant.train[0]]
    raw = path.read_bytes()
    sos = raw.index(b"\xff\xda")
    path.write_bytes(raw[:sos] + b"\xff\xda\x00" + b"\x00" * 10 + b"\xff\xd9")  # a valid header and end marker
    assert verify.verify_dataset("plant", plant.root).ok
    v = verify.verify_dataset("plant", plant.root, decode=True)
    assert [(p.kind, p.where) for p in v.problems] == [("undecodable", f"{path} ({plant.root / 'rgb_dataset_splits'}"
                                                                       "/train_0.txt line 1)")]
    assert v.loaded is None


def test_at_most_ten_problems_of_a_kind_are_named(tmp_path, capsys):
    rep = write_plant(tmp_path / "plant", samples=range(1, 13))
    for stem in plant_stems(rep)[:12]:
        rep.images[stem].unlink()
    code, out, _ = run(capsys, "plant", rep.root)
    assert code == 2 and "missing: 12 (the first 10 named)" in out
    assert sum(1 for line in out.splitlines() if line.startswith("  ") and "no such file" in line) == 10


def plant_stems(rep):
    return rep.train + rep.test


def test_a_missing_root_or_layout_folder_is_a_problem_not_a_crash(tmp_path, plant, capsys):
    code, out, err = run(capsys, "isic", tmp_path / "nowhere")
    assert code == 2 and f"{tmp_path / 'nowhere'}: no such directory" in out and len(err.splitlines()) == 1
    shutil.rmtree(plant.root / "rgb_data")
    v = verify.verify_dataset("plant", plant.root)
    kinds = v.by_kind()
    assert [p.where for p in kinds["missing"]][0] == str(plant.root / "rgb_data")
    assert len(kinds["missing"]) == 1 + len(plant.images)  # the folder, then each listed image


def test_option_errors_are_one_line_user_errors(plant, capsys):
    code, _, err = run(capsys, "plant", plant.root, "--data-option", "fold=-1")
    assert code == 2 and "option fold" in err and len(err.splitlines()) == 1
    with pytest.raises(UserError, match="unknown option"):
        verify.verify_dataset("plant", plant.root, options={"nope": 1})
    assert main(["data", "verify", "mnist", str(plant.root)]) == 2  # not a downloaded dataset


# ---------------------------------------------------------------------------------------------- the hook


def verify_files(v):
    """The verifier this module provides for a loader defined in it (see test_a_loader_module_may_verify)."""
    v.problem("malformed", v.root / "index.txt", "line 3: not what we expect")
    v.problem("malformed", v.root / "index.txt", "line 9: not either")


def _loader(path, seed=0, **options):
    raise registry.UserError("never called")


@pytest.fixture
def fake_prefix(monkeypatch):
    monkeypatch.setattr(registry, "PATH_DATASETS", {**registry.PATH_DATASETS, "mine": _loader})


def test_a_loader_module_may_provide_its_own_verifier(tmp_path, fake_prefix):
    v = verify.verify_dataset("mine", tmp_path)
    assert [p.line() for p in v.problems] == [f"{tmp_path / 'index.txt'}: line 3: not what we expect",
                                              f"{tmp_path / 'index.txt'}: line 9: not either"]


def test_without_a_verifier_the_loader_runs_and_reports_its_first_error(tmp_path, monkeypatch):
    from rightreasons.data.dataset import DataSplits, ExplanationDataset
    from rightreasons.data.manifest import write_manifest

    def loader(path, seed=0, **options):
        if set(options) - {"ok"}:
            raise UserError(f"unknown option(s) {', '.join(options)}")  # e.g. a loader without stream=
        if not options.get("ok"):
            raise verify.DataError(f"{path}/a.txt: first problem")
        ds = ExplanationDataset(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]), name="x")
        return DataSplits(ds, ds, ds)

    loader.__module__ = "json"  # a module without verify_files
    monkeypatch.setattr(registry, "PATH_DATASETS", {**registry.PATH_DATASETS, "other": loader})
    v = verify.verify_dataset("other", tmp_path)
    assert [(p.kind, p.detail) for p in v.problems] == [("loader", f"{tmp_path}/a.txt: first problem")]
    assert "stops at its first problem" in v.notes[0]
    v = verify.verify_dataset("other", tmp_path, options={"ok": 1})
    assert v.ok and v.loaded is True
    with pytest.raises(UserError, match="has no verifier that lists the files"):
        write_manifest("other", tmp_path, tmp_path / "m.json", options={"ok": 1})
