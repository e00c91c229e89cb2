"""Saliency grids: valid PNG bytes, the grid's shape, the mask outline exactly on the mask's border,
and the `explain` command (writes a PNG, refuses to overwrite without --overwrite)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from data_fixtures import make_idx_dir
from helpers import tiny_mlp
from rightreasons.cli import main
from rightreasons.data import ExplanationDataset
from rightreasons.report import saliency
from rightreasons.report.png import encode_png
from rightreasons.train import TrainConfig, run_training, save_run

CYAN = (0, 255, 255)


def decode_png(data: bytes) -> np.ndarray:
    """The pixels of PNG bytes, read with Pillow; they must be 8-bit RGB."""
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.mode) == ("PNG", "RGB")
        return np.asarray(img)


def test_png_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    assert (decode_png(encode_png(rgb)) == rgb).all()


def corner_dataset(n=6, size=28, patch=4):
    """Images with a bright patch in alternating corners, masked; labels 0, 1, 2 in turn."""
    x = torch.rand(n, 1, size, size) * 0.5
    mask = torch.zeros_like(x, dtype=torch.bool)
    boxes = []
    for i in range(n):
        r, c = (0, 0) if i % 2 == 0 else (size - patch, size - patch - 1)
        x[i, 0, r:r + patch, c:c + patch] = 1.0
        mask[i, 0, r:r + patch, c:c + patch] = True
        boxes.append((r, c))
    y = torch.arange(n) % 3
    return ExplanationDataset(x, y, mask, num_classes=3), boxes


def test_grid_shape_and_outline_on_the_mask_border():
    data, boxes = corner_dataset()
    model = tiny_mlp(in_shape=(1, 28, 28), classes=3)
    kinds = saliency.attribution_kinds()
    grid = decode_png(encode_png(saliency.explain_grid(model, data, n=6, kinds=kinds)))
    s, gap, cell = 4, 2, 28 * 4
    assert saliency.cell_scale(28) == s
    assert grid.shape == ((1 + len(kinds)) * (cell + gap) + gap, 6 * (cell + gap) + gap, 3)
    order = saliency.pick_examples(data, 6).tolist()
    assert order == [0, 1, 2, 3, 4, 5]  # classes 0, 1, 2, 0, 1, 2: the first example of each in turn
    for row in range(1 + len(kinds)):
        for col, i in enumerate(order):
            top, left = gap + row * (cell + gap), gap + col * (cell + gap)
            img = grid[top:top + cell, left:left + cell]
            cyan = (img == CYAN).all(-1)
            r, c = boxes[i]
            expected = np.zeros((cell, cell), bool)  # the perimeter of the upscaled 4x4 patch
            r0, c0, r1, c1 = r * s, c * s, (r + 4) * s - 1, (c + 4) * s - 1
            expected[r0, c0:c1 + 1] = expected[r1, c0:c1 + 1] = True
            expected[r0:r1 + 1, c0] = expected[r0:r1 + 1, c1] = True
            assert (cyan == expected).all(), (row, col)


def test_heat_map_is_brightest_where_the_attribution_is_largest():
    a = np.zeros((1, 4, 4))
    a[0, 1, 2] = -5.0  # magnitude counts, not sign
    rgb = saliency.heat(a)
    assert rgb.shape == (4, 4, 3) and tuple(rgb[1, 2]) == (255, 255, 255) and rgb.sum() == 3 * 255
    assert not (rgb == CYAN).all(-1).any()


def test_examples_without_annotation_get_no_outline():
    data, _ = corner_dataset(n=3)
    data.has_mask[:] = False
    row = saliency.input_row(data, torch.arange(3))
    assert not any((cell == CYAN).all(-1).any() for cell in row)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    idx = make_idx_dir(tmp_path_factory.mktemp("mnist"), n_train=120, n_test=40)[0]
    out = tmp_path_factory.mktemp("run") / "rrr"
    config = TrainConfig(data="decoy-mnist", data_options={"source": str(idx)}, method="rrr", epochs=1, threads=1)
    save_run(out, run_training(config))
    return out, idx


def test_explain_writes_a_png_and_refuses_to_overwrite(run_dir, tmp_path, capsys, monkeypatch):
    run_dir, idx = run_dir
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path))  # never the real MNIST
    target = tmp_path / "grid.png"
    assert main(["explain", str(run_dir), "--out", str(target), "--images", "5", "--attribution", "gradient"]) == 0
    grid = decode_png(target.read_bytes())
    cells = 5 * (112 + 2) + 2
    assert grid.shape[0] == 2 * (112 + 2) + 2 and grid.shape[1] > cells
    margin = grid[:, :grid.shape[1] - cells]
    assert (margin.max(-1) < 100).any(axis=1)[2:114].any()  # a label written beside the first row...
    assert (margin.max(-1) < 100).any(axis=1)[116:228].any()  # ...and the second
    assert (grid == CYAN).all(-1).any()  # decoy swatches outlined
    before = target.read_bytes()
    assert main(["explain", str(run_dir), "--out", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert target.read_bytes() == before
    assert main(["explain", str(run_dir), "--out", str(target), "--overwrite", "--data", "decoy-mnist-cdep",
                 "--data-option", f"source={idx}"]) == 0
    assert decode_png(target.read_bytes()).shape[0] == (1 + len(saliency.attribution_kinds())) * (112 + 2) + 2
    assert main(["explain", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.png")]) == 2


def test_explain_several_runs_one_row_each(run_dir, tmp_path, monkeypatch):
    run_dir, _ = run_dir
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path))
    target = tmp_path / "two.png"
    assert main(["explain", str(run_dir), str(run_dir), "--attribution", "gradient", "--images", "3",
                 "--out", str(target)]) == 0
    grid = decode_png(target.read_bytes())
    assert grid.shape[0] == 3 * (112 + 2) + 2
    grid = grid[:, -(3 * (112 + 2) + 2):]  # the cells, right of the label margin
    row1, row2 = grid[2 + 114:2 + 114 + 112], grid[2 + 228:2 + 228 + 112]
    assert (row1 == row2).all()  # the same model twice: identical rows on the same images
