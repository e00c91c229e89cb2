"""folder:PATH loader: layout, labels, masks (partial, inverted, thresholded), resizing, normalisation,
splits; and the generated "patches" example."""

import numpy as np
import pytest
import torch

from own_data_fixtures import make_folder, png_bytes, set_row
from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data.examples import write_patches
from rightreasons.errors import UserError


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return write_patches(tmp_path_factory.mktemp("ex") / "patches", seed=3, size=16, n_train=40, n_val=10, n_test=20)


def test_patches_example_loads_with_partial_masks_and_named_classes(patches):
    data = load_dataset(f"folder:{patches}")
    assert data.input_shape == (3, 16, 16)
    assert data.info["classes"] == ["benign", "malignant"]
    assert data.info["groups"] == ["benign/clean", "benign/patch", "malignant/clean", "malignant/patch"]
    assert [len(data.train), len(data.val), len(data.test)] == [40, 10, 20]
    assert data.train.input_range == (0.0, 1.0) and 0 <= float(data.train.x.min()) and float(data.train.x.max()) <= 1
    # the sticker is only on benign training images; groups say so
    patched = data.train.group % 2 == 1
    assert bool((data.train.y[patched] == 0).all()) and patched.any()
    # masks: white on patched images, empty on clean ones, some patched training images not annotated
    has_area = data.train.mask.flatten(1).any(1)
    assert bool((has_area == (patched & data.train.has_mask)).all())
    assert not bool(data.train.has_mask.all()) and bool(data.test.has_mask.all())
    # the mask is the same in every channel (it marks pixels)
    m = data.train.mask
    assert torch.equal(m[:, 0], m[:, 1]) and torch.equal(m[:, 0], m[:, 2])


def test_patches_example_is_deterministic_and_refuses_to_overwrite(tmp_path, patches):
    again = write_patches(tmp_path / "again", seed=3, size=16, n_train=40, n_val=10, n_test=20)
    assert (again / "labels.csv").read_text() == (patches / "labels.csv").read_text()
    assert (again / "images" / "0005.png").read_bytes() == (patches / "images" / "0005.png").read_bytes()
    assert main(["data", "example", "patches", "--out", str(again), "--size", "16"]) == 2
    assert (again / "images" / "0005.png").read_bytes() == (patches / "images" / "0005.png").read_bytes()
    assert main(["data", "example", "patches", "--out", str(again), "--size", "8", "--n-train", "4", "--n-val", "2",
                 "--n-test", "2", "--overwrite"]) == 0
    assert len((again / "labels.csv").read_text().splitlines()) == 9
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def _groups(folder):
    rows = [line.split(",") for line in (folder / "labels.csv").read_text().splitlines()[1:]]
    return [(group, split) for _, _, group, split, _ in rows]


def test_patches_example_patch_rate_sets_the_share_of_stickered_benign_images(tmp_path, capsys):
    sizes = dict(size=8, n_train=200, n_val=40, n_test=40)
    for rate in (0.0, 1.0):
        groups = _groups(write_patches(tmp_path / f"r{rate}", patch_rate=rate, **sizes))
        benign = [g for g, split in groups if split != "test" and g.startswith("benign")]
        assert len(benign) == 120 and benign.count("benign/patch") == (120 if rate else 0)
        assert not [g for g, split in groups if split != "test" and g == "malignant/patch"]
        test = [g for g, split in groups if split == "test"]
        assert 5 < sum(g.endswith("/patch") for g in test) < 35  # the test split keeps its half-and-half stickers
    main_rate = [g for g, split in _groups(write_patches(tmp_path / "r95", patch_rate=0.95, **sizes))
                 if split != "test" and g.startswith("benign")]
    assert 105 <= main_rate.count("benign/patch") < 120
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(UserError, match="patch_rate"):
            write_patches(tmp_path / "bad", patch_rate=bad, **sizes)
    assert not (tmp_path / "bad").exists()
    assert main(["data", "example", "patches", "--out", str(tmp_path / "cli"), "--size", "8", "--n-train", "20",
                 "--n-val", "4", "--n-test", "4", "--patch-rate", "1"]) == 0
    assert [g for g, split in _groups(tmp_path / "cli") if split == "train" and g == "benign/clean"] == []
    assert main(["data", "example", "patches", "--out", str(tmp_path / "cli2"), "--patch-rate", "2"]) == 2
    assert main(["data", "example", "isic", "--out", str(tmp_path / "cli3"), "--patch-rate", "0.9"]) == 2
    err = capsys.readouterr().err
    assert "patch_rate must be a number in [0, 1]" in err and "isic: --patch-rate is for patches" in err
    assert not (tmp_path / "cli2").exists() and not (tmp_path / "cli3").exists()


def test_resize_channels_and_normalisation(patches):
    data = load_dataset(f"folder:{patches}", size="8,12", channels=1)
    assert data.input_shape == (1, 8, 12) and data.train.mask.shape == (40, 1, 8, 12)
    assert data.train.mask.flatten(1).any(1).sum() > 0  # nearest-neighbour masks survive shrinking
    data = load_dataset(f"folder:{patches}", size=8, normalize="imagenet")
    lo, hi = data.train.input_range
    assert lo == pytest.approx(-0.485 / 0.229) and hi == pytest.approx((1 - 0.406) / 0.225)
    assert float(data.train.x.min()) >= lo - 1e-6 and float(data.train.x.max()) <= hi + 1e-6
    assert data.info["input_range"] == [lo, hi]
    data = load_dataset(f"folder:{patches}", normalize="0.5,0.25")
    assert data.train.input_range == (-2.0, 2.0)


def test_integer_labels_masks_and_inversion(tmp_path):
    root = make_folder(tmp_path / "f", n=8)
    data = load_dataset(f"folder:{root}")
    assert data.info["classes"] == ["0", "1"] and data.train.num_classes == 2
    assert bool(data.train.mask[:, :, :2, :2].all()) and int(data.train.mask.sum()) == len(data.train) * 3 * 4
    inv = load_dataset(f"folder:{root}", mask_invert=True)
    assert torch.equal(inv.train.mask, ~data.train.mask)
    wider = load_dataset(f"folder:{root}", num_classes=3)
    assert wider.train.num_classes == 3


def test_grey_masks_need_a_threshold(tmp_path):
    root = make_folder(tmp_path / "f", n=8)
    grey = np.zeros((8, 8), dtype=np.uint8)
    grey[:4, :4] = 200
    grey[:2, :2] = 255
    (root / "masks" / "000.png").write_bytes(png_bytes(grey))
    data = load_dataset(f"folder:{root}", mask_threshold=0.5)
    assert int(data.train.mask[0, 0].sum()) == 16
    data = load_dataset(f"folder:{root}", mask_threshold=0.9)
    assert int(data.train.mask[0, 0].sum()) == 4


def test_names_split_and_class_order(tmp_path):
    root = make_folder(tmp_path / "f", n=40, split=False, labels=("dog", "cat"))
    data = load_dataset("folder:" + str(root), seed=1)
    assert data.info["classes"] == ["cat", "dog"]
    assert [len(data.train), len(data.val), len(data.test)] == [28, 6, 6]
    for part in (data.val, data.test):  # stratified: 3 of each class
        assert torch.bincount(part.y).tolist() == [3, 3]
    same = load_dataset("folder:" + str(root), seed=1)
    other = load_dataset("folder:" + str(root), seed=2)
    assert torch.equal(same.test.x, data.test.x) and not torch.equal(other.test.x, data.test.x)
    ordered = load_dataset("folder:" + str(root), classes="dog,cat")
    assert ordered.info["classes"] == ["dog", "cat"]
    assert "seeded stratified" in data.info["split"]


def test_split_column_without_val_rows_carves_val_from_train(tmp_path):
    root = make_folder(tmp_path / "f", n=16)
    text = (root / "labels.csv").read_text().replace(",val,", ",train,")
    (root / "labels.csv").write_text(text)
    data = load_dataset(f"folder:{root}", val_fraction=0.25)
    assert len(data.val) == 4 and len(data.train) == 8 and len(data.test) == 4
    assert "no val rows" in data.info["split"]


def test_rows_without_mask_are_unannotated_and_jpeg_images_load(tmp_path):
    root = make_folder(tmp_path / "f", n=8)
    set_row(root, 2, "mask", "")
    img = np.full((8, 8, 3), 120, dtype=np.uint8)
    (root / "img" / "x.jpg").write_bytes(png_bytes(img, "JPEG"))
    set_row(root, 3, "file", "img/x.jpg")
    data = load_dataset(f"folder:{root}")
    assert not bool(data.train.has_mask[0]) and not bool(data.train.mask[0].any())
    assert bool(data.train.has_mask[1:].all())
    assert abs(float(data.train.x[1].mean()) - 120 / 255) < 0.02


def test_cli_trains_on_a_folder_and_evaluates_it(tmp_path, patches, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # fast on a crowded machine
    out = tmp_path / "run"
    assert main(["train", "--data", f"folder:{patches}", "--data-option", "size=8", "--method", "rrr", "--model", "mlp",
                 "--epochs", "1", "--batch-size", "16", "--out", str(out), "--quiet"]) == 0
    assert "rrr on folder:" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
