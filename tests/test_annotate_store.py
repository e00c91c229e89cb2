"""The annotation store: atomic saves of masks and labels.csv, the history that undoes them, versions that
refuse a stale save, and everything a client sends checked (rows only, never a path out of the folder;
PNGs of the image's size with only 0 and 255)."""

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rightreasons.annotate.store import HISTORY_DIR, ConflictError, MaskStore, NotFoundError
from rightreasons.errors import UserError

W, H = 12, 8


def png(array, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def mask_png(mask) -> bytes:
    return png(np.where(mask, 255, 0).astype(np.uint8))


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L"
        return np.asarray(im) == 255


def rows_of(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))


def make_folder(root: Path, labels: str, n: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / "images" / f"{i}.png").write_bytes(png(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)))
    (root / "labels.csv").write_text(labels, encoding="utf-8")
    return root


@pytest.fixture
def folder(tmp_path):
    """Four images, no mask column, an extra column with a quoted comma."""
    return make_folder(tmp_path / "data", 'file,label,group,split\nimages/0.png,cat,"a,b",train\n'
                                          "images/1.png,dog,b,val\nimages/2.png,dog,a,train\n"
                                          "images/3.png,cat,a,test\n", n=4)


def stroke() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[3, 2:9] = True
    return m


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_save_adds_the_mask_column_and_keeps_every_other_column_and_row(folder):
    before = rows_of(folder / "labels.csv")
    store = MaskStore(folder)
    out = store.save("images/1.png", mask_png(stroke()), store.version("images/1.png"))
    assert out["mask"] == "masks/1.png"
    assert np.array_equal(read_mask(folder / "masks/1.png"), stroke())
    after = rows_of(folder / "labels.csv")
    assert after[0] == [*before[0], "mask"]
    assert [r[:-1] for r in after[1:]] == before[1:]  # the quoted "a,b" cell too
    assert [r[-1] for r in after[1:]] == ["", "masks/1.png", "", ""]
    assert out["version"] == store.version("images/1.png")
    # the earlier labels.csv is kept
    kept = folder / HISTORY_DIR / "labels.1.csv"
    assert rows_of(kept) == before
    assert no_temp_files(folder)
    # the folder loader reads the result
    from rightreasons import load_dataset

    data = load_dataset(f"folder:{folder}")
    assert int(data.val.has_mask.sum()) == 1


def test_save_keeps_bom_crlf_and_blank_lines_out(tmp_path):
    root = make_folder(tmp_path / "d", "", n=2)
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbffile,label,mask\r\nimages/0.png,a,\r\n\r\nimages/1.png,b,\r\n")
    store = MaskStore(root)
    store.save("images/0.png", mask_png(stroke()), store.version("images/0.png"))
    raw = (root / "labels.csv").read_bytes()
    assert raw == b"\xef\xbb\xbffile,label,mask\r\nimages/0.png,a,masks/0.png\r\nimages/1.png,b,\r\n"


def test_save_is_atomic_when_the_rename_fails(folder, monkeypatch):
    store = MaskStore(folder)
    store.save("images/0.png", mask_png(stroke()), store.version("images/0.png"))
    mask_before = (folder / "masks/0.png").read_bytes()
    labels_before = (folder / "labels.csv").read_bytes()
    import rightreasons.files as files

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(UserError, match="cannot save.*No space left"):
        store.save("images/0.png", mask_png(~stroke()), store.version("images/0.png"))
    monkeypatch.undo()
    assert (folder / "masks/0.png").read_bytes() == mask_before
    assert (folder / "labels.csv").read_bytes() == labels_before
    assert no_temp_files(folder)


def test_history_keeps_every_version_and_undo_restores_them(folder):
    store = MaskStore(folder)
    file = "images/0.png"
    first, second = stroke(), np.zeros((H, W), bool)
    second[0:2, 0:3] = True
    v1 = store.save(file, mask_png(first), store.version(file))["version"]
    out = store.save(file, mask_png(second), v1)
    assert out["undo"] == 2
    # the first version is kept beside the history record of the second save
    assert np.array_equal(read_mask(folder / HISTORY_DIR / "masks" / f"0.{out['saved']}.png"), first)
    assert store.undo_count(file) == 2

    back = store.undo(file, out["version"])
    assert np.array_equal(read_mask(folder / "masks/0.png"), first)
    assert back["version"] == store.version(file) == v1
    assert back["undo"] == 1
    # what the undo replaced is kept too
    assert any(np.array_equal(read_mask(p), second) for p in (folder / HISTORY_DIR / "masks").glob("*.png"))

    store.undo(file, store.version(file))  # the first save created the file and the cell
    assert not (folder / "masks/0.png").exists()
    assert [r[-1] for r in rows_of(folder / "labels.csv")[1:]] == ["", "", "", ""]
    with pytest.raises(NotFoundError, match="no saved change"):
        store.undo(file, store.version(file))
    # a fresh store (the page reloaded, the command restarted) reads the same history
    assert MaskStore(folder).undo_count(file) == 0


def test_stale_versions_are_refused_and_other_rows_do_not_conflict(folder):
    store = MaskStore(folder)
    tab_a, tab_b = store.version("images/0.png"), store.version("images/0.png")
    other = store.version("images/2.png")
    store.save("images/0.png", mask_png(stroke()), tab_a)
    with pytest.raises(ConflictError, match="changed since this page loaded it"):
        store.save("images/0.png", mask_png(~stroke()), tab_b)
    assert np.array_equal(read_mask(folder / "masks/0.png"), stroke())  # tab A's work is intact
    with pytest.raises(ConflictError):
        store.undo("images/0.png", tab_b)
    # a save to another row, based on its own (unchanged) version, is fine although labels.csv changed
    store.save("images/2.png", mask_png(stroke()), other)
    assert [r[-1] for r in rows_of(folder / "labels.csv")[1:]] == ["masks/0.png", "", "masks/2.png", ""]


def test_a_change_made_outside_the_page_is_a_conflict(folder):
    store = MaskStore(folder)
    version = store.save("images/0.png", mask_png(stroke()), store.version("images/0.png"))["version"]
    (folder / "masks/0.png").write_bytes(mask_png(np.ones((H, W), bool)))  # another program
    with pytest.raises(ConflictError):
        store.save("images/0.png", mask_png(stroke()), version)
    with pytest.raises(ConflictError, match="changed outside this page"):
        store.undo("images/0.png", store.version("images/0.png"))
    assert read_mask(folder / "masks/0.png").all()


@pytest.mark.parametrize("file", ["../outside.png", "/etc/passwd", "images/../labels.csv", "images/9.png", "",
                                  "images/0.png\n"])
def test_only_rows_of_labels_csv_are_accepted(folder, file):
    store = MaskStore(folder)
    with pytest.raises(NotFoundError, match="not a row"):
        store.save(file, mask_png(stroke()), "x")
    with pytest.raises(NotFoundError):
        store.read_mask(file)
    assert not (folder.parent / "outside.png").exists()


def test_rows_pointing_outside_the_folder_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (W, H)).save(outside / "x.png")
    root = make_folder(tmp_path / "d", "file,label,mask\nimages/0.png,a,../outside/m.png\n../outside/x.png,b,\n"
                                       "images/1.png,a,links/m.png\n", n=2)
    (root / "links").symlink_to(outside)
    store = MaskStore(root)
    for file in ("images/0.png", "images/1.png"):
        with pytest.raises(UserError, match="outside the folder"):
            store.save(file, mask_png(stroke()), store.version(file))
    with pytest.raises(UserError, match="outside the folder"):
        store.image_bytes("../outside/x.png")
    assert sorted(p.name for p in outside.iterdir()) == ["x.png"]


def test_a_history_folder_leading_outside_is_refused(tmp_path, folder):
    (tmp_path / "elsewhere").mkdir()
    (folder / ".annotate").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="outside the folder"):
        MaskStore(folder)


def _bad_pngs():
    good = np.where(stroke(), 255, 0).astype(np.uint8)
    grey = good.copy()
    grey[0, 0] = 128
    rgba = np.dstack([good, good, good, np.full_like(good, 255)])
    transparent = rgba.copy()
    transparent[1, 1, 3] = 0
    coloured = rgba.copy()
    coloured[2, 2, 0] = 0
    coloured[2, 2, 1] = 255
    jpeg = io.BytesIO()
    Image.fromarray(good).save(jpeg, format="JPEG")
    return {
        "wrong size": (mask_png(np.zeros((H + 1, W), bool)), "mask is 12x9"),
        "grey value": (png(grey), "other than 0 and 255"),
        "transparent": (png(transparent, "RGBA"), "transparent"),
        "coloured": (png(coloured, "RGBA"), "coloured"),
        "sixteen bit": (png(good.astype(np.uint16) * 257), "mode I;16 not accepted"),
        "jpeg": (jpeg.getvalue(), "not a readable PNG"),
        "truncated": (mask_png(stroke())[:45], "not a readable PNG"),
        "empty": (b"", "no PNG data"),
    }


@pytest.mark.parametrize("case", sorted(_bad_pngs()))
def test_bad_pngs_are_refused_and_nothing_is_written(folder, case):
    data, message = _bad_pngs()[case]
    store = MaskStore(folder)
    labels = (folder / "labels.csv").read_bytes()
    with pytest.raises(UserError, match=message):
        store.save("images/0.png", data, store.version("images/0.png"))
    assert (folder / "labels.csv").read_bytes() == labels
    assert not (folder / "masks").exists()


def test_an_rgba_png_of_white_and_black_is_accepted(folder):
    good = np.where(stroke(), 255, 0).astype(np.uint8)
    rgba = np.dstack([good, good, good, np.full_like(good, 255)])
    store = MaskStore(folder)
    store.save("images/0.png", png(rgba, "RGBA"), store.version("images/0.png"))
    assert np.array_equal(read_mask(folder / "masks/0.png"), stroke())


def test_a_mask_shared_by_two_rows_is_not_overwritten(tmp_path):
    root = make_folder(tmp_path / "d", "file,label,mask\nimages/0.png,a,masks/blank.png\n"
                                       "images/1.png,b,masks/blank.png\n", n=2)
    (root / "masks").mkdir()
    (root / "masks/blank.png").write_bytes(mask_png(np.zeros((H, W), bool)))
    (root / "masks/0.png").write_bytes(b"a file the user has, listed nowhere")
    store = MaskStore(root)
    out = store.save("images/0.png", mask_png(stroke()), store.version("images/0.png"))
    assert out["mask"] == "masks/0-2.png"  # neither the shared file nor the unlisted one
    assert not read_mask(root / "masks/blank.png").any()
    assert (root / "masks/0.png").read_bytes() == b"a file the user has, listed nowhere"
    assert [r[2] for r in rows_of(root / "labels.csv")[1:]] == ["masks/0-2.png", "masks/blank.png"]
    store.undo("images/0.png", out["version"])
    assert [r[2] for r in rows_of(root / "labels.csv")[1:]] == ["masks/blank.png", "masks/blank.png"]
    assert not (root / "masks/0-2.png").exists()


def test_read_mask_shows_grey_or_missized_masks_binarised(tmp_path):
    root = make_folder(tmp_path / "d", "file,label,mask\nimages/0.png,a,masks/0.png\nimages/1.png,b,masks/gone.png\n",
                       n=2)
    (root / "masks").mkdir()
    grey = np.full((H // 2, W // 2), 200, np.uint8)
    (root / "masks/0.png").write_bytes(png(grey))
    store = MaskStore(root)
    got = store.read_mask("images/0.png")
    assert "resized" in got["note"] and got["state"] == "saved"
    with Image.open(io.BytesIO(got["png"])) as im:
        assert im.size == (W, H) and set(np.unique(np.asarray(im))) == {255}
    missing = store.read_mask("images/1.png")
    assert missing["state"] == "missing"
    # saving over a missing file creates it; undo removes it again
    out = store.save("images/1.png", mask_png(stroke()), missing["version"])
    assert out["mask"] == "masks/gone.png" and (root / "masks/gone.png").is_file()
    store.undo("images/1.png", out["version"])
    assert not (root / "masks/gone.png").exists()


def test_labels_csv_problems_are_one_line_errors(tmp_path):
    root = make_folder(tmp_path / "d", "file,label\nimages/0.png,a\nimages/0.png,b\n", n=1)
    with pytest.raises(UserError, match="already listed in row 2"):
        MaskStore(root)
    (root / "labels.csv").write_text("name,label\nimages/0.png,a\n")
    with pytest.raises(UserError, match="missing column 'file'"):
        MaskStore(root)
    with pytest.raises(UserError, match="no labels.csv"):
        MaskStore(tmp_path)
    with pytest.raises(UserError, match="no such directory"):
        MaskStore(tmp_path / "nope")


def test_writes_happen_only_inside_the_folder(folder):
    store = MaskStore(folder)
    version = store.version("images/0.png")
    seen_before = set(os.listdir(folder.parent))
    store.save("images/0.png", mask_png(stroke()), version)
    store.undo("images/0.png", store.version("images/0.png"))
    assert set(os.listdir(folder.parent)) == seen_before
