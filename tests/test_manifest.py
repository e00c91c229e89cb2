"""Data manifests: written atomically (refusing to overwrite), the same for two copies of the same data, and
``data verify --manifest`` reporting missing, extra and changed files and images in another split; a
manifest is validated with one-line errors."""

import json
import shutil

import pytest

from replicas_cub import write_cub, write_waterbirds
from replicas_isic_plant import write_isic, write_plant
from rightreasons.cli import main
from rightreasons.data import manifest as mf
from rightreasons.errors import UserError


def make(capsys, name, root, out, *extra):
    code = main(["data", "manifest", name, str(root), "--out", str(out), *map(str, extra)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check(capsys, name, root, manifest, *extra):
    code = main(["data", "verify", name, str(root), "--manifest", str(manifest), *map(str, extra)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def plant(tmp_path):
    return write_plant(tmp_path / "plant")


def test_round_trip_same_copy_is_clean_and_a_changed_byte_is_named(plant, tmp_path, capsys):
    out = tmp_path / "plant.json"
    code, text, _ = make(capsys, "plant", plant.root, out)
    assert code == 0 and f"manifest of 19 files written to {out}" in text
    data = json.loads(out.read_text())
    assert (data["format"], data["version"], data["dataset"]) == (mf.FORMAT, mf.VERSION, "plant")
    assert data["settings"] == {"fold": 0, "val_fraction": 0.1, "split_seed": 42}
    assert [f["path"] for f in data["files"]] == sorted(f["path"] for f in data["files"])
    image = next(f for f in data["files"] if f["path"] == f"rgb_data/1/{plant.train[0]}.JPEG")
    assert image["size"] == plant.images[plant.train[0]].stat().st_size and len(image["sha256"]) == 64
    assert f"rgb_data/1/{plant.train[0]}.JPEG" in data["splits"]["train"]
    assert sum(len(v) for v in data["splits"].values()) == 16

    code, text, err = check(capsys, "plant", plant.root, out)
    assert code == 0 and err == "" and f"compared with the manifest {out}" in text

    path = plant.images[plant.test[1]]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of the scan data: still a JPEG with its end marker
    path.write_bytes(bytes(raw))
    code, text, err = check(capsys, "plant", plant.root, out)
    assert code == 2 and "1 problem(s) (1 changed)" in err and len(err.splitlines()) == 1
    assert f"  rgb_data/{plant.test[1].split('_')[0]}/{plant.test[1]}.JPEG: sha256 " in text
    assert "(same size)" in text

    plant.images[plant.train[0]].unlink()  # missing: named once, by the verifier (not again by the manifest)
    v = mf.verify_with_manifest("plant", plant.root, out)
    assert [p.where for p in v.by_kind()["missing"]] == [str(plant.images[plant.train[0]])]
    assert [k for k in v.by_kind()] == ["missing", "changed"]


def test_an_image_moved_to_another_split_is_reported(plant, tmp_path, capsys):
    out = tmp_path / "plant.json"
    assert make(capsys, "plant", plant.root, out)[0] == 0
    lists = plant.root / "rgb_dataset_splits"
    moved = plant.train[2]
    train = [line for line in (lists / "train_0.txt").read_text().splitlines() if moved not in line]
    (lists / "train_0.txt").write_text("\n".join(train) + "\n")
    (lists / "test_0.txt").write_text((lists / "test_0.txt").read_text() + f"\n{moved}\n")
    v = mf.verify_with_manifest("plant", plant.root, out)
    by_kind = {k: [p.line() for p in ps] for k, ps in v.by_kind().items()}
    key = f"rgb_data/1/{moved}.JPEG"
    assert f"{key}: in test here, in train in the manifest" in by_kind["split"]
    assert {line.split(":")[0] for line in by_kind["changed"]} == {"rgb_dataset_splits/train_0.txt",
                                                                    "rgb_dataset_splits/test_0.txt"}
    assert set(by_kind) <= {"split", "changed"}


def test_waterbirds_split_column_change_and_cub_segmentations_elsewhere(tmp_path, capsys):
    root, segs = tmp_path / "wb", tmp_path / "CUB" / "segmentations"
    records = write_waterbirds(root, segs)
    out = tmp_path / "wb.json"
    assert make(capsys, "waterbirds", root, out, "--data-option", f"segmentations={segs}")[0] == 0
    data = json.loads(out.read_text())
    assert "segmentations" not in data["options"]  # a path of this machine
    assert any(f["path"].startswith("@segmentations/") for f in data["files"])
    # another user's copy, segmentations somewhere else: the same manifest
    other, other_segs = tmp_path / "b" / "wb", tmp_path / "b" / "segs"
    shutil.copytree(root, other)
    shutil.copytree(segs, other_segs)
    assert check(capsys, "waterbirds", other, out, "--data-option", f"segmentations={other_segs}")[0] == 0
    lines = (other / "metadata.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[3] = "2" if cells[3] != "2" else "1"
    lines[1] = ",".join(cells)
    (other / "metadata.csv").write_text("\n".join(lines) + "\n")
    v = mf.verify_with_manifest("waterbirds", other, out, options={"segmentations": str(other_segs)})
    split = {"0": "train", "1": "val", "2": "test"}
    assert [p.line() for p in v.by_kind()["split"]] == [
        f"{records[0].filename}: in {split[cells[3]]} here, in train in the manifest"]

    cub = tmp_path / "CUB_200_2011"
    write_cub(cub)
    shutil.move(str(cub / "segmentations"), str(tmp_path / "cub-segs"))
    opts = ["--data-option", "val_fraction=0.25", "--data-option", f"segmentations={tmp_path / 'cub-segs'}",
            "--seed", "2"]
    assert make(capsys, "cub", cub, tmp_path / "cub.json", *opts)[0] == 0
    assert json.loads((tmp_path / "cub.json").read_text())["seed"] == 2
    # the manifest's options and seed, under those given (the segmentations of this machine)
    segs_here = ["--data-option", f"segmentations={tmp_path / 'cub-segs'}"]
    assert check(capsys, "cub", cub, tmp_path / "cub.json", *segs_here)[0] == 0
    code, text, _ = check(capsys, "cub", cub, tmp_path / "cub.json", *segs_here, "--seed", "0")
    assert code == 2 and "seed is 0 here but 2 in the manifest" in text  # CUB's val split depends on the seed
    assert "in the manifest" in text.split("split:")[-1]


def test_two_copies_give_the_same_manifest_and_missing_and_extra_files_are_named(tmp_path, capsys):
    rep = write_isic(tmp_path / "a" / "isic", "rieger")
    copy = shutil.copytree(rep.root, tmp_path / "b" / "isic")
    assert make(capsys, "isic", rep.root, tmp_path / "a.json")[0] == 0
    assert make(capsys, "isic", copy, tmp_path / "b.json")[0] == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()

    clean = next(i for i, it in rep.items.items() if it[3] == 0)
    gone = f"{rep.items[clean][0]}/{rep.items[clean][1]}"
    (copy / gone).unlink()  # the loader does not miss it (a folder listing): only the manifest tells
    shutil.copy(copy / "processed" / "cancer" / rep.items[rep.order[-1]][1], copy / "processed" / "cancer" / "new.jpg")
    code, text, err = check(capsys, "isic", copy, tmp_path / "a.json")
    assert code == 2
    assert f"  {gone}: in the manifest (" in text and "not read by the loader here" in text
    assert "  processed/cancer/new.jpg: read by the loader here, not in the manifest" in text
    assert "1 missing" in err and "1 extra" in err


def test_isic_options_are_recorded_and_a_different_split_seed_is_reported(tmp_path, capsys):
    rep = write_isic(tmp_path / "isic", "heo")
    out = tmp_path / "m.json"
    assert make(capsys, "isic", rep.root, out, "--data-option", "split_seed=7", "--data-option", "size=8")[0] == 0
    data = json.loads(out.read_text())
    assert data["options"] == {"size": 8, "split_seed": 7}
    assert data["settings"] == {"layout": "heo", "split_seed": 7, "dilate": 0}
    assert check(capsys, "isic", rep.root, out)[0] == 0  # the manifest's options
    v = mf.verify_with_manifest("isic", rep.root, out, options={"split_seed": 42})
    kinds = v.by_kind()
    assert [p.line() for p in kinds["options"]] == [f"{out}: split_seed is 42 here but 7 in the manifest"]
    assert kinds["split"]  # and the images it moves


def test_overwrite_refused_and_broken_copies_get_no_manifest(plant, tmp_path, capsys):
    out = tmp_path / "m.json"
    out.write_text("keep")
    code, _, err = make(capsys, "plant", plant.root, out)
    assert code == 2 and "exists; pass --overwrite" in err and out.read_text() == "keep"
    assert make(capsys, "plant", plant.root, out, "--overwrite")[0] == 0
    assert json.loads(out.read_text())["dataset"] == "plant"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "plant"]  # no temporary file left

    plant.images[plant.train[0]].unlink()
    code, _, err = make(capsys, "plant", plant.root, tmp_path / "n.json")
    assert code == 2 and "1 problem(s) (1 missing)" in err and "a manifest records a complete copy" in err
    assert not (tmp_path / "n.json").exists()


def test_a_maintainers_manifest_file_is_accepted_by_name(plant, tmp_path, capsys):
    # the command docs/real-datasets.md gives maintainers: the file is manifests/<name>.json
    (tmp_path / "manifests").mkdir()
    shipped = tmp_path / "manifests" / "plant.json"
    assert make(capsys, "plant", plant.root, shipped, "--data-option", "fold=0")[0] == 0
    assert check(capsys, "plant", plant.root, shipped)[0] == 0
    code, _, err = check(capsys, "isic", plant.root, shipped)
    assert code == 2 and "a manifest of 'plant', not of 'isic'" in err


@pytest.fixture
def good(plant, tmp_path):
    out = tmp_path / "good.json"
    mf.write_manifest("plant", plant.root, out)
    return json.loads(out.read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda m: "not json {", "line 1"),
    (lambda m: [1], "must be a JSON object"),
    (lambda m: {**m, "format": "other"}, "field 'format' must be 'rightreasons-data-manifest'"),
    (lambda m: {**m, "version": 2}, "field 'version' is 2; this rightreasons reads version 1"),
    (lambda m: {**m, "extra": 1}, "field 'extra' is not a manifest field"),
    (lambda m: {**m, "files": [{**m["files"][0], "sha256": "abc"}] + m["files"][1:]},
     "field 'files[0].sha256' must be 64 lower-case hex digits"),
    (lambda m: {**m, "files": [{**m["files"][0], "path": "../etc/passwd"}] + m["files"][1:]},
     "field 'files[0].path' must be a relative path"),
    (lambda m: {**m, "files": [{**m["files"][0], "size": -1}] + m["files"][1:]}, "field 'files[0].size'"),
    (lambda m: {**m, "files": m["files"] + m["files"][:1]}, "is already listed as files[0]"),
    (lambda m: {**m, "splits": {**m["splits"], "val": ["nope.jpg"]}}, "field 'splits.val[0]' 'nope.jpg' is not a "
                                                                      "path listed in files"),
    (lambda m: {**m, "splits": {"train": []}}, "field 'splits' must be an object with exactly train, val and test"),
    (lambda m: {**m, "options": {"fold": [0]}}, "field 'options.fold'"),
])
def test_manifest_errors_are_one_line_naming_the_field(good, plant, tmp_path, capsys, edit, message):
    bad = tmp_path / "bad.json"
    value = edit(good)
    bad.write_text(value if isinstance(value, str) else json.dumps(value))
    with pytest.raises(UserError) as info:
        mf.read_manifest(bad, "plant")
    assert message in str(info.value) and str(bad) in str(info.value) and "\n" not in str(info.value)
    code, _, err = check(capsys, "plant", plant.root, bad)
    assert code == 2 and message in err and len(err.splitlines()) == 1
