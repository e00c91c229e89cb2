"""Boxes as annotations in labels.csv (``boxes`` = x,y,w,h;...), rasterised to masks at load time."""

import csv

import numpy as np
import pytest
import torch

from own_data_fixtures import png_bytes
from rightreasons.data import load_dataset
from rightreasons.data.image_files import box_mask, parse_boxes
from rightreasons.errors import DataError


def _folder(root, boxes, masks=None, size=10, n=8):
    (root / "img").mkdir(parents=True)
    rows = [["file", "label", "split", "boxes"] + (["mask"] if masks is not None else [])]
    for i in range(n):
        (root / "img" / f"{i}.png").write_bytes(png_bytes(np.full((size, size, 3), 20 * i)))
        row = [f"img/{i}.png", str(i % 2), ("train", "train", "val", "test")[(i // 2) % 4],
               boxes[i] if i < len(boxes) else ""]
        if masks is not None:
            row.append(masks[i] if i < len(masks) else "")
        rows.append(row)
    with open(root / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root


def _slow_box(h, w, box):
    """Pixel (r, c) is in the box when its centre (c + 0.5, r + 0.5) lies in [x, x + w) x [y, y + h)."""
    x0, y0, bw, bh = box
    return np.array([[x0 <= c + 0.5 < x0 + bw and y0 <= r + 0.5 < y0 + bh for c in range(w)] for r in range(h)])


def test_boxes_rasterise_by_pixel_centres_and_unite():
    for box in [(2, 3, 4, 2), (0.4, 0.6, 1.2, 1.0), (7.5, 8, 10, 10), (-3, -3, 4, 4)]:
        assert np.array_equal(box_mask([box], (10, 9), "x"), _slow_box(10, 9, box)), box
    both = box_mask([(0, 0, 2, 2), (5, 5, 1, 3)], (10, 10), "x")
    assert both.sum() == 4 + 3 and both[0, 0] and both[7, 5] and not both[8, 5]
    assert parse_boxes(" 1,2,3,4 ; 5,6,7,8;", "x") == ((1, 2, 3, 4), (5, 6, 7, 8))
    assert parse_boxes("", "x") == ()


@pytest.mark.parametrize("cell, message", [("1,2,3", "four numbers"), ("a,b,c,d", "four numbers"),
                                           ("1,2,0,4", "not positive"), ("1,2,nan,4", "four numbers")])
def test_bad_boxes_name_the_row(tmp_path, cell, message):
    _folder(tmp_path, ["1,1,2,2", cell])
    with pytest.raises(DataError, match=f"row 3, column boxes: .*{message}"):
        load_dataset(f"folder:{tmp_path}")


def test_a_box_outside_the_image_is_an_error(tmp_path):
    _folder(tmp_path, ["20,20,3,3"])
    with pytest.raises(DataError, match="covers no pixel"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_with_boxes_gives_their_masks_and_annotations(tmp_path):
    boxes = ["1,1,3,2", "0,0,2,2;6,6,4,4", "", "2,5,1,1"]
    splits = load_dataset(f"folder:{_folder(tmp_path, boxes)}")
    data = [splits.train, splits.val, splits.test]
    names = {}
    for ds in data:
        for j in range(len(ds)):
            value = int(round(float(ds.x[j, 0, 0, 0]) * 255 / 20))  # the image index, from its grey level
            names[value] = (ds.mask[j, 0].numpy(), bool(ds.has_mask[j]))
    for i in range(8):
        expected = np.zeros((10, 10), dtype=bool)
        for part in filter(None, (boxes[i] if i < len(boxes) else "").split(";")):
            expected |= _slow_box(10, 10, tuple(float(v) for v in part.split(",")))
        mask, annotated = names[i]
        assert np.array_equal(mask, expected), i
        assert annotated == bool(expected.any()), i


def test_boxes_unite_with_mask_images_invert_and_stream_the_same(tmp_path):
    m = np.zeros((10, 10), dtype=np.uint8)
    m[9, :] = 255
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "0.png").write_bytes(png_bytes(m))
    root = _folder(tmp_path, ["0,0,2,2"], masks=["m/0.png"])
    memory = load_dataset(f"folder:{root}", mask_invert=True, size=10)
    stream = load_dataset(f"folder:{root}", mask_invert=True, size=10, stream=True)
    index = torch.arange(len(memory.train))
    assert torch.equal(memory.train.batch(index).mask, stream.train.batch(index).mask)
    first = int(torch.nonzero(memory.train.x[:, 0, 0, 0] == 0)[0])  # image 0 (grey level 0)
    expected = ~(_slow_box(10, 10, (0, 0, 2, 2)) | (np.arange(10)[:, None] == 9))
    assert np.array_equal(memory.train.mask[first, 0].numpy(), expected)
