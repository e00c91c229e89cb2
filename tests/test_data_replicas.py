"""The generated replicas of ISIC, plant and CUB (``rightreasons data example isic|plant|cub``): each loads
with its loader, carries the planted shortcut, and is deterministic per seed."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from rightreasons.cli import main
from rightreasons.data import load_dataset
from rightreasons.data.isic import PATCH_THRESHOLD
from rightreasons.data.replicas import CUB_CLASSES, SOILS, write_cub, write_isic, write_plant
from rightreasons.errors import UserError


def digest(root) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def isic(tmp_path_factory):
    return write_isic(tmp_path_factory.mktemp("r") / "isic", seed=1, n=80, size=32)


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    return write_plant(tmp_path_factory.mktemp("r") / "plant", seed=1, n=96, size=32)


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    return write_cub(tmp_path_factory.mktemp("r") / "cub", seed=1, n=48, size=32)


def test_isic_patches_only_on_benign_images_and_masked_exactly_there(isic):
    patched = sorted(p.name for p in (isic / "processed" / "patch_no_cancer_again").iterdir())
    clean = sorted(p.name for p in (isic / "processed" / "no_cancer").iterdir())
    malignant = sorted(p.name for p in (isic / "processed" / "cancer").iterdir())
    assert sorted(p.name for p in (isic / "segmentation").iterdir()) == patched
    assert len(patched) > 3 * len(clean) > 0 and len(malignant) == 40
    assert not set(patched) & set(clean) and not set(patched + clean) & set(malignant)
    for name in patched:  # the white patch of the segmentation covers the sticker drawn on the image
        seg = np.asarray(Image.open(isic / "segmentation" / name).convert("RGB"))[..., 0] > PATCH_THRESHOLD
        img = np.asarray(Image.open(isic / "processed" / "patch_no_cancer_again" / name).convert("RGB"), float)
        assert 0 < seg.mean() < 0.15
        assert img[seg].std(0).mean() > 0 and img[seg][:, 2].mean() != img[~seg][:, 2].mean()
    data = load_dataset(f"isic:{isic}", size=32)
    assert data.info["layout"] == "heo" and data.info["with_patch"] == len(patched)
    for split in (data.train, data.val, data.test):
        has_patch = split.mask.flatten(1).any(1)
        assert torch.equal(has_patch, split.group == 1)  # non-empty masks exactly on the patch images
        assert not split.y[has_patch].any()  # every patch is on a benign image


def test_isic_lesions_tell_the_class_only_weakly(isic):
    data = load_dataset(f"isic:{isic}", size=32)
    x, y, m = data.train.x, data.train.y, data.train.mask[:, 0]
    centre = x[:, :, 10:22, 10:22].mean((1, 2, 3))  # the lesion, away from the corner stickers
    gap = (centre[y == 0].mean() - centre[y == 1].mean()) / centre.std()
    assert 0 < gap < 1.5  # darker malignant lesions, but the classes overlap
    chroma = x.amax(1) - x.amin(1)
    assert chroma[m].mean() - chroma[~m].mean() > 0.1  # the saturated stickers stand out from skin and lesion


def test_plant_background_tells_the_class_in_train_only(plant):
    train = (plant / "rgb_dataset_splits" / "train_0.txt").read_text().split()
    test = (plant / "rgb_dataset_splits" / "test_0.txt").read_text().split()
    assert len(train) == 72 and len(test) == 24 and not set(train) & set(test)
    with open(plant / "mask" / "preprocessed_masks.pyu", "rb") as fh:
        masks = pickle.load(fh)
    assert set(masks) == set(train + test)
    assert all(m.dtype == np.bool_ and m.shape == (32, 32) and 0.1 < m.mean() < 0.7 for m in masks.values())

    def soil(stem):
        img = np.asarray(Image.open(plant / "rgb_data" / stem.split("_")[0] / f"{stem}.JPEG"), float)
        return img[~masks[stem]].mean()

    def diseased(stem):
        return int(stem.split("_")[1][1:]) > 3

    pale = (np.mean(SOILS[0]) + np.mean(SOILS[1])) / 2
    assert all((soil(s) > pale) == diseased(s) for s in train)  # the soil tells the class in train
    agree = np.mean([(soil(s) > pale) == diseased(s) for s in test])
    assert 0.2 < agree < 0.8  # and not in test
    data = load_dataset(f"plant:{plant}", size=32)
    assert len(data.train) + len(data.val) == 72 and len(data.test) == 24
    assert data.train.y.float().mean() == 0.5
    ignore = data.train.mask[:, 0]
    fg = [(data.train.x[i, 1][~ignore[i]].mean() - data.train.x[i, 0][~ignore[i]].mean()).item()
          for i in range(len(data.train))]
    fg = torch.tensor(fg)
    y = data.train.y
    gap = (fg[y == 0].mean() - fg[y == 1].mean()) / fg.std()
    assert 0.3 < gap  # the plant itself is a little yellower when diseased: a real, weaker signal


def test_cub_loads_with_segmentations_and_takes_the_square_shortcut(cub):
    data = load_dataset(f"cub:{cub}", size=32)
    assert data.info["classes"] == CUB_CLASSES[:4]
    assert len(data.train) + len(data.val) == 24 and len(data.test) == 24
    background = data.train.mask[:, 0].float().mean((1, 2))
    assert ((background > 0.4) & (background < 0.95)).all()  # the bird is a part of each image
    seg = np.asarray(Image.open(next((cub / "segmentations").rglob("*.png"))))
    assert seg.ndim == 2 and set(np.unique(seg)) <= set(range(0, 256, 51)) and len(np.unique(seg)) > 2
    box = load_dataset(f"cub:{cub}", size=32, mask="box", mask_region="ignore").train.mask[:, 0]
    bird = ~data.train.mask[:, 0]
    assert (box & bird).sum() >= 0.95 * bird.sum()  # the boxes hold the birds
    parts = load_dataset(f"cub:{cub}", size=32, mask="parts", mask_region="ignore", parts="beak")
    assert parts.train.has_mask.all()
    spurious = load_dataset(f"cub:{cub}", size=32, spurious="square", spurious_size=4)
    stamped = spurious.train.mask[:, 0].flatten(1)
    assert stamped.sum(1).eq(16).all() and (spurious.train.group % 2 == 1).all()


@pytest.mark.parametrize("writer,n", [(write_isic, 40), (write_plant, 48), (write_cub, 32)])
def test_replicas_are_deterministic_per_seed(tmp_path, writer, n):
    a = digest(writer(tmp_path / "a", seed=2, n=n, size=16))
    assert digest(writer(tmp_path / "b", seed=2, n=n, size=16)) == a
    assert digest(writer(tmp_path / "c", seed=3, n=n, size=16)) != a


def test_cli_writes_replicas_and_refuses_wrong_options(tmp_path, capsys):
    out = tmp_path / "isic"
    assert main(["data", "example", "isic", "--out", str(out), "--n", "40", "--size", "16", "--seed", "2"]) == 0
    assert digest(out) == digest(write_isic(tmp_path / "lib", seed=2, n=40, size=16))
    assert "--data isic:" in capsys.readouterr().out
    assert main(["data", "example", "isic", "--out", str(out), "--n", "40", "--size", "16"]) == 2  # not empty
    assert main(["data", "example", "plant", "--out", str(tmp_path / "p"), "--n-train", "10"]) == 2
    assert main(["data", "example", "patches", "--out", str(tmp_path / "q"), "--n", "10"]) == 2
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()
    with pytest.raises(UserError, match="isic: n must be an integer >= 20, got 5"):
        write_isic(tmp_path / "few", n=5)
    with pytest.raises(UserError, match="cub: classes must be at most 8"):
        write_cub(tmp_path / "many", classes=9, n=100)
    assert not (tmp_path / "few").exists()
