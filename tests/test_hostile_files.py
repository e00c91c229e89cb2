"""Hostile and careless files for the readers of your own data: paths in labels.csv leading out of the
dataset folder, named pipes, devices, directories and symlink loops where a file is expected, oversized
and endless files, decompression bombs (PNG, gzip'd IDX), numbers Python's float() reads but a table
must not, odd encodings. Each is refused with one line naming the file, row, column or option (through
the CLI: exit 2, one ``error:`` line, no --out, every file there before byte-identical after), or, where
the input is odd but fine (a BOM, CRLF, a lying extension), loads correctly.

Nothing here may hang: loads run in a thread with a timeout, and a FIFO left blocked is released."""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
import stat
import struct
import threading
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    import resource
except ImportError:  # not POSIX
    resource = None

from data_fixtures import idx_bytes, make_idx_dir
from own_data_fixtures import make_table, png_bytes
from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data import csv_common, mnist_source
from rightreasons.data.examples import EXAMPLES
from rightreasons.data.mnist_source import load_mnist, read_idx
from rightreasons.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")
TIMEOUT = 20.0
MEMORY_HEADROOM = 1 << 30
PASSWD = Path("/etc/passwd")


# ------------------------------------------------------------------------------------------ helpers


def _vm_size() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return None


def in_thread(fn, fifos=()):
    """``fn()`` in a daemon thread; fails (instead of hanging the suite) if it takes longer than TIMEOUT,
    after opening each FIFO in ``fifos`` for writing, which lets a reader blocked on it go. Meanwhile the
    process may grow by at most MEMORY_HEADROOM (soft RLIMIT_AS), so a reader that regressed to reading
    /dev/zero or inflating a bomb fails with MemoryError instead of exhausting a shared machine."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    limits = resource.getrlimit(resource.RLIMIT_AS) if resource else None
    vm = _vm_size()
    if limits and vm:
        cap = vm + MEMORY_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (cap if limits[1] == resource.RLIM_INFINITY else min(cap, limits[1]),
                                                limits[1]))
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if limits and vm and not thread.is_alive():
        resource.setrlimit(resource.RLIMIT_AS, limits)
    if thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(5)
        pytest.fail(f"still running after {TIMEOUT:.0f} s: a FIFO or device was opened and read")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def snapshot(*roots: Path) -> dict:
    """Every entry under ``roots`` without following links or opening anything but regular files: bytes of
    regular files (size and mtime of huge sparse ones), link targets, and the type of anything else."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    out[path] = ("link", os.readlink(path))
                elif stat.S_ISREG(info.st_mode):
                    out[path] = ("file", path.read_bytes() if info.st_size < 1 << 24
                                 else (info.st_size, info.st_mtime_ns))
                else:
                    out[path] = ("other", stat.S_IFMT(info.st_mode), info.st_mtime_ns)
    return out


def cli_refuses(capsys, argv, tmp: Path, expected, fifos=()):
    """``main(argv)`` exits 2 with one line ``error: ...`` holding every string of ``expected``, creates no
    ``tmp/out``, and changes nothing under ``tmp``. Returns the line."""
    before = snapshot(tmp)
    capsys.readouterr()
    code = in_thread(lambda: main(argv), fifos)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for part in [expected] if isinstance(expected, str) else expected:
        assert part in lines[0], (part, lines[0])
    assert not (tmp / "out").exists()
    assert snapshot(tmp) == before
    return lines[0]


def train_argv(data: str, tmp: Path, *options: str) -> list[str]:
    argv = ["train", "--data", data, "--epochs", "1", "--out", str(tmp / "out"), "--quiet"]
    for option in options:
        argv += ["--data-option", option]
    return argv


def read_rows(root: Path) -> list[list[str]]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.reader(fh))


def write_rows(root: Path, rows) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    (root / "labels.csv").write_text(buf.getvalue())


def set_cell(root: Path, row: int, column: str, value: str) -> None:
    """Set one cell of labels.csv; ``row`` as error messages count (the header is row 1)."""
    rows = read_rows(root)
    rows[row - 1][rows[0].index(column)] = value
    write_rows(root, rows)


def png_with_header(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` grey pixels, with a token IDAT (never decodable)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def ztxt_bomb() -> bytes:
    """A zTXt chunk that inflates to 64 MiB of text (the compressed chunk is ~64 KiB)."""
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(bytes(1 << 20)) for _ in range(64)) + comp.flush()
    body = b"Comment\x00\x00" + data
    return struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


@pytest.fixture(scope="module")
def patches_master(tmp_path_factory):
    root = tmp_path_factory.mktemp("master") / "patches"
    EXAMPLES["patches"](root, size=16, n_train=24, n_val=8, n_test=8)
    return root


@pytest.fixture
def ds(patches_master, tmp_path):
    """A fresh copy of the example folder (tmp/data) and, beside it, tmp/secret with files the dataset
    must not be able to read."""
    root = tmp_path / "data"
    shutil.copytree(patches_master, root, symlinks=True)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "secret.png").write_bytes((root / "images" / "0000.png").read_bytes())
    (secret / "mask.png").write_bytes((root / "masks" / "0000.png").read_bytes())
    (secret / "labels.csv").write_text((root / "labels.csv").read_text())
    return root


def _mask_row(root: Path) -> int:
    """A row of labels.csv (header = 1) that has a mask."""
    rows = read_rows(root)
    return next(i + 1 for i, r in enumerate(rows) if i and r[rows[0].index("mask")])


# ------------------------------------------------------------------ image folders through the CLI
# Each: setup(root, tmp) -> (extra --data-option values, strings the one error line must hold).


def h_dotdot_file(root, tmp):
    set_cell(root, 3, "file", "../secret/secret.png")
    return [], ["labels.csv row 3, column 'file'", "'../secret/secret.png' is outside the dataset folder",
                "allow_outside=true"]


def h_absolute_file(root, tmp):
    set_cell(root, 4, "file", str(tmp / "secret" / "secret.png"))
    return [], ["labels.csv row 4, column 'file'", "is outside the dataset folder"]


def h_symlink_file_out(root, tmp):
    (root / "images" / "0002.png").unlink()
    (root / "images" / "0002.png").symlink_to(tmp / "secret" / "secret.png")
    return [], ["labels.csv row 4, column 'file'", "'images/0002.png' is outside", "resolves to"]


def h_symlink_dir_on_the_way(root, tmp):
    (root / "more").symlink_to(tmp / "secret", target_is_directory=True)
    set_cell(root, 2, "file", "more/secret.png")
    return [], ["labels.csv row 2, column 'file'", "'more/secret.png' is outside", "resolves to"]


def h_dotdot_through_subdir(root, tmp):
    set_cell(root, 5, "file", "images/../../secret/secret.png")
    return [], ["labels.csv row 5, column 'file'", "is outside the dataset folder"]


def h_sibling_prefix(root, tmp):
    """tmp/data-evil is not inside tmp/data, although its name starts with it."""
    (tmp / "data-evil").mkdir()
    shutil.copy(tmp / "secret" / "secret.png", tmp / "data-evil" / "x.png")
    set_cell(root, 2, "file", "../data-evil/x.png")
    return [], ["labels.csv row 2, column 'file'", "is outside"]


def h_outside_missing(root, tmp):
    """Outside and missing: refused as outside (the loader says nothing about files out there)."""
    set_cell(root, 2, "file", "../secret/nothing-here.png")
    return [], ["labels.csv row 2, column 'file'", "is outside"]


def h_dotdot_mask(root, tmp):
    row = _mask_row(root)
    set_cell(root, row, "mask", "../secret/mask.png")
    return [], [f"labels.csv row {row}, column 'mask'", "'../secret/mask.png' is outside"]


def h_mask_symlink_passwd(root, tmp):
    if not PASSWD.is_file():
        pytest.skip("no /etc/passwd")
    row = _mask_row(root)
    name = read_rows(root)[row - 1][4]
    (root / name).unlink()
    (root / name).symlink_to(PASSWD)
    return [], [f"labels.csv row {row}, column 'mask'", "is outside", "resolves to /etc/passwd"]


def h_mask_passwd_allowed_outside(root, tmp):
    """Opted in, a text file as a mask is still just an unreadable image: nothing of it is echoed."""
    if not PASSWD.is_file():
        pytest.skip("no /etc/passwd")
    row = _mask_row(root)
    set_cell(root, row, "mask", str(PASSWD))
    return ["allow_outside=true"], [f"/etc/passwd (labels.csv row {row}): cannot read image (cannot identify image "
                                    "file; expected one of PNG, JPEG"]


def h_file_name_too_long(root, tmp):
    set_cell(root, 3, "file", "images/" + "a" * 5000 + ".png")
    return [], ["(labels.csv row 3): cannot read image file (File name too long)"]


def h_labels_symlink_out(root, tmp):
    (root / "labels.csv").unlink()
    (root / "labels.csv").symlink_to(tmp / "secret" / "labels.csv")
    return [], ["labels.csv: is a link to", "outside the dataset folder", "allow_outside=true"]


def h_fifo_image(root, tmp):
    (root / "images" / "0003.png").unlink()
    os.mkfifo(root / "images" / "0003.png")
    return [], ["images/0003.png (labels.csv row 5): is a named pipe (FIFO), not a regular file"]


def h_fifo_mask(root, tmp):
    row = _mask_row(root)
    name = read_rows(root)[row - 1][4]
    (root / name).unlink()
    os.mkfifo(root / name)
    return [], [f"{name} (labels.csv row {row}): is a named pipe (FIFO)"]


def h_fifo_labels(root, tmp):
    (root / "labels.csv").unlink()
    os.mkfifo(root / "labels.csv")
    return [], ["labels.csv: is a named pipe (FIFO), not a regular file, expected a labels CSV"]


def h_fifo_labels_via_link(root, tmp):
    os.mkfifo(root / "pipe")
    (root / "labels.csv").unlink()
    (root / "labels.csv").symlink_to("pipe")
    return [], ["labels.csv: is a named pipe (FIFO)"]


def h_device_image(root, tmp):
    set_cell(root, 2, "file", "/dev/zero")
    return ["allow_outside=true"], ["/dev/zero (labels.csv row 2): is a device, not a regular file"]


def h_labels_is_directory(root, tmp):
    (root / "labels.csv").unlink()
    (root / "labels.csv").mkdir()
    return [], ["labels.csv: is a directory, expected a labels CSV"]


def h_labels_symlink_loop(root, tmp):
    (root / "labels.csv").unlink()
    (root / "labels.csv").symlink_to("labels.csv")
    return [], ["labels.csv: cannot read labels CSV (Too many levels of symbolic links)"]


def h_image_symlink_loop(root, tmp):
    (root / "images" / "0001.png").unlink()
    (root / "images" / "0001.png").symlink_to("0001.png")
    return [], ["images/0001.png (labels.csv row 3): cannot read image file (Too many levels of symbolic links)"]


def h_image_dangling_symlink(root, tmp):
    (root / "images" / "0001.png").unlink()
    (root / "images" / "0001.png").symlink_to("gone.png")
    return [], ["images/0001.png (labels.csv row 3): no such file"]


def h_image_is_directory(root, tmp):
    set_cell(root, 6, "file", "images")
    return [], ["images (labels.csv row 6): is a directory, expected an image file"]


def h_image_is_the_folder(root, tmp):
    set_cell(root, 6, "file", ".")
    return [], ["(labels.csv row 6): is a directory"]


def h_image_is_labels_csv(root, tmp):
    set_cell(root, 3, "file", "labels.csv")
    return [], ["labels.csv (labels.csv row 3): cannot read image (cannot identify image file"]


def h_same_file_twice(root, tmp):
    set_cell(root, 5, "file", "./images/../images/0000.png")
    return [], ["labels.csv row 5: file './images/../images/0000.png' already listed in row 2 "
                "(as 'images/0000.png')"]


def h_empty_image(root, tmp):
    (root / "images" / "0004.png").write_bytes(b"")
    return [], ["images/0004.png (labels.csv row 6): cannot read image (cannot identify image file"]


def h_eps_as_png(root, tmp):
    """PostScript named .png: Pillow's EPS decoder would run Ghostscript, a program; it is never used."""
    (root / "images" / "0005.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n"
                                               b"0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n")
    return [], ["images/0005.png (labels.csv row 7): cannot read image (cannot identify image file; expected one "
                "of PNG, JPEG"]


def h_bomb_over_our_cap(root, tmp):
    (root / "images" / "0006.png").write_bytes(png_with_header(8000, 8000))
    return [], ["images/0006.png (labels.csv row 8): image is 8000x8000, more than 50000000 pixels"]


def h_bomb_pillow_warning(root, tmp):
    """100 M pixels: Pillow only warns (a second stderr line before); now one error line."""
    (root / "images" / "0006.png").write_bytes(png_with_header(10000, 10000))
    return [], ["images/0006.png (labels.csv row 8): image too large (decompression bomb guard"]


def h_bomb_pillow_error(root, tmp):
    (root / "images" / "0006.png").write_bytes(png_with_header(20000, 20000))
    return [], ["images/0006.png (labels.csv row 8): image too large (decompression bomb guard"]


def h_bomb_ztxt(root, tmp):
    (root / "images" / "0007.png").write_bytes(png_with_header(16, 16, ztxt_bomb()))
    return [], ["images/0007.png (labels.csv row 9): cannot read image"]


def h_labels_empty(root, tmp):
    (root / "labels.csv").write_bytes(b"")
    return [], ["labels.csv: empty file, expected a header row"]


def h_labels_only_bom(root, tmp):
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbf\r\n")
    return [], ["labels.csv: empty file, expected a header row"]


def h_labels_utf16(root, tmp):
    (root / "labels.csv").write_bytes((root / "labels.csv").read_text().encode("utf-16"))
    return [], ["labels.csv: not UTF-8 text (byte 0xff at offset 0; UTF-16? save it as UTF-8)"]


def h_header_repeated(root, tmp):
    rows = read_rows(root)
    write_rows(root, rows[:5] + [rows[0]] + rows[5:])
    return [], ["labels.csv row 6"]


def h_label_float(root, tmp):
    rows = read_rows(root)
    write_rows(root, [rows[0]] + [[r[0], str(i % 2) if i != 3 else "1.0"] + r[2:] for i, r in enumerate(rows[1:])])
    return [], ["labels.csv row 5: label '1.0' is a number but not a plain integer"]


def h_label_underscore(root, tmp):
    rows = read_rows(root)
    write_rows(root, [rows[0]] + [[r[0], "1_0" if i == 0 else str(i % 2)] + r[2:] for i, r in enumerate(rows[1:])])
    return [], ["labels.csv row 2: label '1_0' is a number but not a plain integer"]


def h_labels_all_floats(root, tmp):
    """0.0 / 1.0 throughout (a float export): refused, not silently taken as the names '0.0' and '1.0'."""
    rows = read_rows(root)
    write_rows(root, [rows[0]] + [[r[0], f"{i % 2}.0"] + r[2:] for i, r in enumerate(rows[1:])])
    return [], ["labels.csv row 2: label '0.0' is a number but not a plain integer"]


def h_label_fullwidth_digit(root, tmp):
    rows = read_rows(root)
    write_rows(root, [rows[0]] + [[r[0], "\uff11" if i == 2 else str(i % 2)] + r[2:] for i, r in enumerate(rows[1:])])
    return [], ["labels.csv row 4: label '\uff11' is a number but not a plain integer"]


def h_label_huge_integer(root, tmp):
    """5000 digits: int() itself refuses (ValueError) beyond 4300 digits."""
    rows = read_rows(root)
    write_rows(root, [rows[0]] + [[r[0], "9" * 5000 if i == 1 else str(i % 2)] + r[2:] for i, r in enumerate(rows[1:])])
    return [], ["labels.csv row 3: label '9999999999", "is too large (integer labels must be < 100000)"]


def h_group_float(root, tmp):
    set_cell(root, 7, "group", "2.5")
    return [], ["labels.csv row 7: group '2.5' is a number but not a plain integer"]


def h_huge_field(root, tmp):
    set_cell(root, 4, "group", "x" * 200_000)
    return [], ["labels.csv row 4: malformed CSV (field larger than field limit"]


def h_too_many_columns(root, tmp):
    (root / "labels.csv").write_text(",".join(f"c{i}" for i in range(csv_common.MAX_CSV_COLUMNS + 1)) + "\n")
    return [], ["labels.csv: 100001 columns in the header, more than 100000"]


def h_labels_sparse_huge(root, tmp):
    (root / "labels.csv").unlink()
    sparse_file(root / "labels.csv", (1 << 30) + 1)
    return [], ["labels.csv: larger than 1 GiB, the most a labels CSV may have (1073741825 bytes)"]


def h_allow_outside_bad_value(root, tmp):
    return ["allow_outside=perhaps"], ["option allow_outside must be true or false, got 'perhaps'"]


FOLDER_CASES = [v for k, v in sorted(globals().items()) if k.startswith("h_")]


@pytest.mark.parametrize("setup", FOLDER_CASES, ids=[f.__name__[2:] for f in FOLDER_CASES])
def test_folder_hostile_input_refused_in_one_line(ds, tmp_path, capsys, setup):
    options, expected = setup(ds, tmp_path)
    fifos = [p for p in ds.rglob("*") if p.is_fifo()]
    cli_refuses(capsys, train_argv(f"folder:{ds}", tmp_path, "size=16", *options), tmp_path, expected, fifos)


# --------------------------------------------------------- odd but valid folders: they load, correctly


def _load(root, **options):
    return in_thread(lambda: load_dataset(f"folder:{root}", size=16, **options))


def test_allow_outside_reads_outside_files(ds, tmp_path):
    set_cell(ds, 3, "file", "../secret/secret.png")
    (ds / "link").symlink_to(tmp_path / "secret", target_is_directory=True)
    set_cell(ds, 4, "file", "link/secret.png")
    with pytest.raises(DataError, match="is outside"):
        _load(ds)
    data = _load(ds, allow_outside=True)
    assert data.info["allow_outside"] is True and sum(data.info["sizes"].values()) == 40


def test_absolute_path_inside_and_folder_given_through_a_link(ds, tmp_path):
    set_cell(ds, 3, "file", str(ds / "images" / "0001.png"))
    (tmp_path / "alias").symlink_to(ds, target_is_directory=True)
    plain = _load(ds)
    via_link = _load(tmp_path / "alias")
    assert np.array_equal(plain.train.x.numpy(), via_link.train.x.numpy())


def test_symlinks_within_the_folder_are_fine(ds):
    (ds / "images" / "0001.png").unlink()
    (ds / "images" / "0001.png").symlink_to("0000.png")
    (ds / "shortcut").symlink_to("images", target_is_directory=True)
    set_cell(ds, 4, "file", "shortcut/0002.png")
    assert sum(_load(ds).info["sizes"].values()) == 40


def test_bom_and_crlf_labels_csv_load_like_the_plain_file(ds):
    plain = _load(ds)
    text = (ds / "labels.csv").read_text()
    (ds / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    odd = _load(ds)
    assert np.array_equal(plain.train.x.numpy(), odd.train.x.numpy())
    assert odd.info["classes"] == plain.info["classes"] == ["benign", "malignant"]


def test_cr_only_line_ends_load(ds):
    plain = _load(ds)
    (ds / "labels.csv").write_bytes((ds / "labels.csv").read_bytes().replace(b"\n", b"\r"))
    assert np.array_equal(plain.train.x.numpy(), _load(ds).train.x.numpy())


def test_lying_extensions_one_pixel_and_jpeg_images_load(ds):
    png = (ds / "images" / "0001.png").read_bytes()
    (ds / "images" / "0001.png").unlink()
    (ds / "images" / "0001.jpg").write_bytes(png)  # a PNG called .jpg
    set_cell(ds, 3, "file", "images/0001.jpg")
    (ds / "images" / "0002.png").write_bytes(png_bytes(np.full((16, 16, 3), 90), "JPEG"))  # a JPEG called .png
    (ds / "images" / "0005.png").write_bytes(png_bytes(np.full((1, 1, 3), 200)))  # one pixel
    set_cell(ds, 7, "mask", "")  # its mask would be 16x16
    data = _load(ds)
    assert tuple(data.train.x.shape[1:]) == (3, 16, 16)


# --------------------------------------------------------------------------- tables (csv:PATH)


def _table(tmp: Path) -> Path:
    return make_table(tmp / "t.csv", n=40)


def _table_cell(tmp: Path, line: int, column: int, value: str) -> Path:
    path = _table(tmp)
    lines = path.read_text().splitlines()
    cells = lines[line].split(",")
    cells[column] = value
    lines[line] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


BAD_NUMBERS = [
    ("1_000", "is not a number"), ("1__0", "is not a number"), ("0x10", "is not a number"),
    ("1e400", "is too large (beyond float32"), ("-1e39", "is too large (beyond float32"),
    ("nan", "NaN"), ("-NaN", "NaN"), ("inf", "is not a finite number"), ("-Infinity", "is not a finite number"),
    ("1 000", "is not a number"), ("\uff11\uff12", "is not a number"), ("\u0661", "is not a number"),
    ("1.5.2", "is not a number"), ("$5", "is not a number"), ("5%", "is not a number"), ("e5", "is not a number"),
    ("1e", "is not a number"), (".", "is not a number"), ("+-1", "is not a number"), ("0b1", "is not a number"),
    ('"1,5"', "is not a number"), ("1\u00a0000", "is not a number"),
]


@pytest.mark.parametrize("cell, expected", BAD_NUMBERS, ids=[repr(c) for c, _ in BAD_NUMBERS])
def test_table_cell_must_be_a_plain_decimal(tmp_path, cell, expected):
    path = _table_cell(tmp_path, 6, 1, cell)
    with pytest.raises(DataError) as info:
        load_dataset(f"csv:{path}")
    message = str(info.value)
    assert message.startswith(f"{path} row 7, column 'b': ") and expected in message, message
    assert "\n" not in message


def test_plain_decimals_with_spaces_around_are_read(tmp_path):
    values = [" 1.5 ", "+.5", "1.", "-0", "1E-3", "1e-400", "007", "-2e+2"]
    path = _table(tmp_path)
    lines = path.read_text().splitlines()
    for i, value in enumerate(values):
        cells = lines[i + 1].split(",")
        cells[1] = value
        lines[i + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    data = load_dataset(f"csv:{path}")
    x = np.concatenate([data.train.x.numpy(), data.val.x.numpy(), data.test.x.numpy()])
    b = sorted(x[:, 1].tolist())
    for expected in (1.5, 0.5, 1.0, 0.0, 0.001, 7.0, -200.0):
        assert any(abs(v - expected) < 1e-6 for v in b), expected


@pytest.mark.parametrize("label, expected", [
    ("1.0", "label (column 'label') '1.0' is a number but not a plain integer"),
    ("1_0", "'1_0' is a number but not a plain integer"),
    ("1e0", "'1e0' is a number but not a plain integer"),
    ("9" * 5000, "is too large (integer labels must be < 100000)"),
])
def test_table_integer_labels_are_plain_digits(tmp_path, label, expected):
    path = _table_cell(tmp_path, 9, 3, label)
    with pytest.raises(DataError) as info:
        load_dataset(f"csv:{path}")
    message = str(info.value)
    assert message.startswith(f"{path} row 10: label (column 'label') ") and expected in message, message


def test_table_header_repeated_names_the_row(tmp_path):
    path = _table(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:8] + [lines[0]] + lines[8:]) + "\n")
    with pytest.raises(DataError, match=r"t\.csv row 9: label \(column 'label'\) 'label' is not an integer"):
        load_dataset(f"csv:{path}")


def test_table_bom_and_crlf_load(tmp_path):
    path = _table(tmp_path)
    plain = load_dataset(f"csv:{path}")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_text().replace("\n", "\r\n").encode())
    odd = load_dataset(f"csv:{path}")
    assert odd.info["features"] == ["a", "b", "c", "grp"]
    assert np.array_equal(plain.train.x.numpy(), odd.train.x.numpy())


def t_fifo(tmp):
    os.mkfifo(tmp / "pipe.csv")
    return f"csv:{tmp / 'pipe.csv'}", [], "pipe.csv: is a named pipe (FIFO), not a regular file, expected a CSV table"


def t_dev_zero(tmp):
    return "csv:/dev/zero", [], "/dev/zero: is a device, not a regular file, expected a CSV table"


def t_directory(tmp):
    (tmp / "dir.csv").mkdir()
    return f"csv:{tmp / 'dir.csv'}", [], "dir.csv: is a directory, expected a CSV table"


def t_sparse_huge(tmp):
    sparse_file(tmp / "big.csv", 3 << 30)
    return f"csv:{tmp / 'big.csv'}", [], "big.csv: larger than 1 GiB, the most a CSV table may have"


def t_symlink_loop(tmp):
    (tmp / "loop.csv").symlink_to("loop.csv")
    return f"csv:{tmp / 'loop.csv'}", [], "loop.csv: cannot read CSV table (Too many levels of symbolic links)"


def t_mask_file_fifo(tmp):
    os.mkfifo(tmp / "mask.csv")
    return (f"csv:{_table(tmp)}", ["features=a,b,c", f"mask_file={tmp / 'mask.csv'}"],
            "mask.csv: is a named pipe (FIFO), not a regular file, expected a mask CSV")


def t_underscore_number(tmp):
    return f"csv:{_table_cell(tmp, 3, 0, '1_000')}", [], "t.csv row 4, column 'a': '1_000' is not a number"


def t_overflow_number(tmp):
    return f"csv:{_table_cell(tmp, 5, 2, '1e400')}", [], "t.csv row 6, column 'c': '1e400' is too large"


def t_empty_file(tmp):
    (tmp / "empty.csv").write_bytes(b"")
    return f"csv:{tmp / 'empty.csv'}", [], "empty.csv: empty file, expected a header row"


def t_unterminated_quote(tmp):
    (tmp / "q.csv").write_text('a,b,label\n1,"2,0\n3,4,1\n')
    return f"csv:{tmp / 'q.csv'}", [], "q.csv row 3: 2 fields, expected 3 (a, b, label)"


def t_folder_is_a_fifo(tmp):
    os.mkfifo(tmp / "pipe")
    return f"folder:{tmp / 'pipe'}", [], "pipe: not a directory"


def t_binary_file(tmp):
    (tmp / "x.csv").write_bytes(png_bytes(np.zeros((4, 4))))
    return f"csv:{tmp / 'x.csv'}", [], "x.csv: not UTF-8 text (byte 0x89 at offset 0)"


TABLE_CASES = [v for k, v in sorted(globals().items()) if k.startswith("t_")]


@pytest.mark.parametrize("setup", TABLE_CASES, ids=[f.__name__[2:] for f in TABLE_CASES])
def test_table_hostile_input_refused_in_one_line(tmp_path, capsys, setup):
    data, options, expected = setup(tmp_path)
    fifos = [p for p in tmp_path.rglob("*") if p.is_fifo()]
    cli_refuses(capsys, train_argv(data, tmp_path, *options), tmp_path, expected, fifos)


def test_read_is_capped_even_when_the_size_is_not_reported(tmp_path, monkeypatch):
    """/proc files stat as empty regular files: the cap still holds, reading at most cap + 1 bytes."""
    status = Path("/proc/self/status")
    if not status.is_file() or os.stat(status).st_size != 0:
        pytest.skip("needs Linux /proc")
    monkeypatch.setattr(csv_common, "MAX_CSV_BYTES", 64)
    with pytest.raises(DataError, match=r"^/proc/self/status: larger than 64 bytes, the most a CSV table may have$"):
        load_dataset(f"csv:{status}")


def test_cell_count_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_common, "MAX_CSV_CELLS", 100)
    with pytest.raises(DataError, match=r"t\.csv row 22: more than 100 cells in the file"):
        load_dataset(f"csv:{_table(tmp_path)}")


# ---------------------------------------------------------------------------- MNIST IDX files


def _idx_header(dims) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _gzip_bomb(header: bytes, inflated: int) -> bytes:
    """gzip of ``header`` followed by ``inflated`` zero bytes, compressed in 1 MiB pieces (~1 KiB per MiB)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as fh:
        fh.write(header)
        for _ in range(inflated >> 20):
            fh.write(bytes(1 << 20))
    return buf.getvalue()


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    directory, _, _ = make_idx_dir(tmp_path / "idx", gz=True)
    bomb = _gzip_bomb(_idx_header((20,)), 256 << 20)  # promises 20 labels, inflates to 256 MiB
    assert len(bomb) < 1 << 20
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(bomb)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            in_thread(lambda: load_mnist(source=directory))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (f"{directory / 't10k-labels-idx1-ubyte.gz'}: has trailing bytes: decompresses to "
                               "more than the 28 bytes its header promises for dims (20,) (corrupt, or a gzip bomb)")
    assert peak < 32 << 20, f"peak {peak >> 20} MiB while reading a 28-byte file"


@pytest.mark.parametrize("dims, expected", [
    ((4_000_000_000, 28, 28), "refusing more than 10000000 items or 4096 per side"),
    ((60, 100_000, 28), "refusing more than 10000000 items or 4096 per side"),
    ((10_000_000, 28, 28), "IDX header promises 7840000000 bytes for dims (10000000, 28, 28), more than the 1 GiB"),
])
@pytest.mark.parametrize("use_gz", [False, True], ids=["raw", "gz"])
def test_absurd_idx_dimensions_are_refused_from_the_header(tmp_path, dims, expected, use_gz):
    path = tmp_path / ("x.gz" if use_gz else "x")
    header = _idx_header(dims)
    path.write_bytes(gzip.compress(header + bytes(4096)) if use_gz else header + bytes(4096))
    with pytest.raises(DataError, match=None) as info:
        read_idx(path, 3)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


def test_idx_size_checked_against_the_header_before_reading(tmp_path, monkeypatch):
    """A raw file whose header promises 700 MB but holds 16 bytes: refused from its size, nothing read."""
    path = tmp_path / "x"
    path.write_bytes(_idx_header((900_000, 28, 28)))
    reads = []
    real = mnist_source.read_at_most
    monkeypatch.setattr(mnist_source, "read_at_most", lambda fh, n: reads.append(n) or real(fh, n))
    with pytest.raises(DataError, match=r"x: truncated: 16 bytes, expected 705600016 for dims \(900000, 28, 28\)"):
        read_idx(path, 3)
    assert max(reads) <= 12


def _gz_idx(directory: Path, name: str, data: bytes) -> Path:
    (directory / name).write_bytes(gzip.compress(data))
    return directory / name


def i_fifo(d):
    (d / "train-labels-idx1-ubyte").unlink()
    os.mkfifo(d / "train-labels-idx1-ubyte")
    return "train-labels-idx1-ubyte: is a named pipe (FIFO), not a regular file, expected an IDX file"


def i_directory(d):
    (d / "train-labels-idx1-ubyte").unlink()
    (d / "train-labels-idx1-ubyte").mkdir()
    return "train-labels-idx1-ubyte: is a directory, expected an IDX file"


def i_gz_bomb(d):
    (d / "t10k-labels-idx1-ubyte").unlink()
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(_gzip_bomb(_idx_header((20,)), 64 << 20))
    return "t10k-labels-idx1-ubyte.gz: has trailing bytes: decompresses to more than the 28 bytes"


def i_gz_short_body(d):
    (d / "t10k-labels-idx1-ubyte").unlink()
    _gz_idx(d, "t10k-labels-idx1-ubyte.gz", _idx_header((20,)) + bytes(5))
    return "t10k-labels-idx1-ubyte.gz: truncated: decompresses to 13 bytes, expected 28 for dims (20,)"


def i_not_gzip(d):
    (d / "t10k-labels-idx1-ubyte").unlink()
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(idx_bytes(np.zeros(20, np.uint8)))
    return "t10k-labels-idx1-ubyte.gz: cannot read (Not a gzipped file"


def i_empty_gz(d):
    (d / "t10k-labels-idx1-ubyte").unlink()
    _gz_idx(d, "t10k-labels-idx1-ubyte.gz", b"")
    return "t10k-labels-idx1-ubyte.gz: too short for an IDX header (0 bytes)"


def i_absurd_items(d):
    (d / "train-images-idx3-ubyte").write_bytes(_idx_header((0xFFFFFFFF, 28, 28)))
    return "train-images-idx3-ubyte: IDX header promises dims (4294967295, 28, 28); refusing"


def i_symlink_loop(d):
    (d / "train-images-idx3-ubyte").unlink()
    (d / "train-images-idx3-ubyte").symlink_to("train-images-idx3-ubyte")
    return "train-images-idx3-ubyte: cannot read IDX file (Too many levels of symbolic links)"


IDX_CASES = [v for k, v in sorted(globals().items()) if k.startswith("i_")]


@pytest.mark.parametrize("setup", IDX_CASES, ids=[f.__name__[2:] for f in IDX_CASES])
def test_mnist_source_hostile_idx_refused_in_one_line(tmp_path, capsys, setup):
    directory, _, _ = make_idx_dir(tmp_path / "idx")
    expected = setup(directory)
    fifos = [p for p in directory.iterdir() if p.is_fifo()]
    cli_refuses(capsys, train_argv("mnist", tmp_path, f"source={directory}"), tmp_path, expected, fifos)


# --------------------------------------------------------------- `rightreasons data example` output


def _example(out: Path, *extra: str) -> int:
    return main(["data", "example", "patches", "--out", str(out), "--size", "8", "--n-train", "4", "--n-val", "2",
                 "--n-test", "2", *extra])


def test_example_into_a_symlink_writes_its_target_and_keeps_the_link(tmp_path, capsys):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to("target", target_is_directory=True)
    assert _example(tmp_path / "link") == 0, capsys.readouterr().err
    assert os.readlink(tmp_path / "link") == "target"
    assert (tmp_path / "target" / "labels.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


def test_example_overwrite_leaves_a_users_dot_old_directory_alone(tmp_path, capsys):
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "stale.txt").write_text("old")
    (tmp_path / ".ex.old").mkdir()
    (tmp_path / ".ex.old" / "mine.txt").write_text("keep me")
    assert _example(tmp_path / "ex", "--overwrite") == 0, capsys.readouterr().err
    assert (tmp_path / ".ex.old" / "mine.txt").read_text() == "keep me"
    assert not (tmp_path / "ex" / "stale.txt").exists() and (tmp_path / "ex" / "labels.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ex.old", "ex"]


def test_images_are_decoded_from_the_checked_file_only(ds, monkeypatch):
    """Pillow gets an open file object (the fstat-ed one), never a path it would open again itself."""
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(fp) or real_open(fp, *a, **k))
    _load(ds)
    assert opened and not any(isinstance(fp, (str, os.PathLike)) for fp in opened)
