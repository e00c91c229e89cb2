"""report.png: Pillow-readable 8-bit RGB PNGs with the exact pixels, one-line errors for arrays that are not
(H, W, 3) uint8, and atomic files."""

import io

import numpy as np
import pytest
from PIL import Image

from rightreasons.errors import UserError
from rightreasons.report.png import encode_png, write_png


def read(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.mode) == ("PNG", "RGB")
        return np.asarray(img)


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (64, 130, 3)])
def test_pixels_survive_the_round_trip(shape):
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(rgb)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = read(data)
    assert decoded.shape == shape and (decoded == rgb).all()


def test_a_non_contiguous_view_is_written_as_it_looks():
    rgb = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    view = rgb[::2, ::-1]
    assert (read(encode_png(view)) == view).all()


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8),
                                 np.zeros((4, 0, 3), np.uint8), np.zeros((2, 4, 4, 3), np.uint8)])
def test_bad_arrays_are_a_one_line_user_error(bad):
    with pytest.raises(UserError) as info:
        encode_png(bad)
    message = str(info.value)
    assert message.startswith("encode_png: expected a non-empty (H, W, 3) uint8 array")
    assert str(bad.dtype) in message and str(bad.shape) in message and "\n" not in message


def test_write_png_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "grid.png"
    first = np.full((3, 4, 3), 7, np.uint8)
    assert write_png(target, first) == target
    assert (read(target.read_bytes()) == first).all()
    second = np.random.default_rng(2).integers(0, 256, (5, 2, 3), dtype=np.uint8)
    write_png(target, second)
    assert (read(target.read_bytes()) == second).all()
    assert sorted(p.name for p in target.parent.iterdir()) == ["grid.png"]


def test_a_bad_array_leaves_an_existing_file_alone(tmp_path):
    target = tmp_path / "grid.png"
    write_png(target, np.zeros((2, 2, 3), np.uint8))
    before = target.read_bytes()
    with pytest.raises(UserError):
        write_png(target, np.zeros((2, 2), np.uint8))
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]
