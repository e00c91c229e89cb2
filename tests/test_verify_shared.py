"""The checks the dataset verifiers share (``data/verify/shared.py``): index files, paths escaping their folder,
the segmentations folder, mask sizes, empty splits, options needing a mask."""

import numpy as np
import pytest

from replicas_isic_plant import encode
from rightreasons.data.verify import Verification
from rightreasons.data.verify.images import Bad
from rightreasons.data.verify.shared import (
    check_mask,
    inside_or_problem,
    needs_mask,
    read_index,
    record_splits,
    root_ok,
    segmentation_dir,
)
from rightreasons.errors import DataError, UserError


def problems(v):
    return [(p.kind, p.where, p.detail) for p in v.problems]


def test_read_index_records_the_file_or_why_it_was_not_read(tmp_path):
    v = Verification("x", tmp_path)
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("a")
    bad.write_text("b")

    def fail(path):
        raise DataError(f"{path}: line 1: wrong")

    def not_text(path):
        raise Bad("malformed", "not UTF-8")

    assert read_index(v, good, "unused", lambda p: p.read_text()) == "a"
    assert read_index(v, tmp_path / "none.txt", "no such file (an index)", fail) is None
    assert read_index(v, bad, "unused", fail, kind="unreadable") is None
    assert read_index(v, bad, "unused", not_text) is None
    assert problems(v) == [("missing", str(tmp_path / "none.txt"), "no such file (an index)"),
                           ("unreadable", str(bad), "line 1: wrong"), ("malformed", str(bad), "not UTF-8")]
    assert list(v.files) == ["good.txt"]
    assert read_index(v, bad, "unused", fail, recorded_if_malformed=True) is None
    assert list(v.files) == ["good.txt", "bad.txt"]


def test_a_path_escaping_its_folder_is_malformed(tmp_path):
    v = Verification("x", tmp_path)
    assert inside_or_problem(v, tmp_path, "a/b.jpg", "index line 1", "image path") == tmp_path / "a" / "b.jpg"
    assert inside_or_problem(v, tmp_path, "../b.jpg", "index line 2", "image path") is None
    assert problems(v) == [("malformed", "index line 2", f"image path '../b.jpg' resolves outside {tmp_path}")]


def test_the_segmentations_folder_inside_outside_or_missing(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "segs"
    (root / "segmentations").mkdir(parents=True)
    outside.mkdir()
    v = Verification("x", root)
    assert segmentation_dir(v, None, True, "gone") == (root / "segmentations", True) and v.roots == {}
    assert segmentation_dir(v, str(outside), False, "gone") == (outside, False) and v.roots == {}
    assert segmentation_dir(v, str(outside), True, "gone") == (outside, True)
    assert v.roots == {"segmentations": outside} and v.key(outside / "a.png") == "@segmentations/a.png"
    assert segmentation_dir(v, str(tmp_path / "nowhere"), True, "gone") == (tmp_path / "nowhere", False)
    assert problems(v) == [("missing", str(tmp_path / "nowhere"), "gone")]


def test_a_mask_of_another_size_than_its_image(tmp_path):
    v = Verification("x", tmp_path)
    (tmp_path / "m.png").write_bytes(encode(np.zeros((4, 6), dtype=np.uint8)))
    check_mask(v, tmp_path / "m.png", "m.png (of a.jpg)", (4, 6))
    check_mask(v, tmp_path / "m.png", "m.png (of b.jpg)", (5, 6))
    check_mask(v, tmp_path / "m.png", "m.png (of c.jpg)", None)  # the image could not be read: nothing to compare
    assert problems(v) == [("mask size", "m.png (of b.jpg)", "segmentation is 4x6 but its image is 5x6")]
    assert v.checked == 3 and list(v.files) == ["m.png"]


def test_root_and_empty_splits(tmp_path):
    v = Verification("x", tmp_path / "none")
    assert not root_ok(v) and problems(v) == [("missing", str(tmp_path / "none"), "no such directory")]
    v = Verification("x", tmp_path)
    assert root_ok(v)
    record_splits(v, ["a", "b", "c"], np.array([0, 2, 0]), np.array([1, 0, 1]), ["p", "q"], "index", {"val": "why"})
    assert problems(v) == [("malformed", "index", "the val split is empty (why)")]
    assert v.splits == {"train": ["a", "c"], "val": [], "test": ["b"]}
    assert v.counts == {"train": {"p": 0, "q": 2}, "val": {"p": 0, "q": 0}, "test": {"p": 1, "q": 0}}


def test_an_option_that_needs_another_mask_is_a_user_error():
    needs_mask("cub:/d", {"parts": None, "segmentations": "s"}, "segmentation",
               {"parts": "parts", "segmentations": "segmentation"})
    with pytest.raises(UserError, match=r"^cub:/d: option parts needs mask=parts$"):
        needs_mask("cub:/d", {"parts": "beak", "segmentations": "s"}, "box",
                   {"parts": "parts", "segmentations": "segmentation"})
