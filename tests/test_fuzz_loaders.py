"""Fuzzing: random CSV bytes and cells, random image bytes, random options and random config JSON go into
the loaders and the config parser. Each either loads or raises UserError (DataError) with a one-line
message; any other exception is a bug."""

import io
import json
import os
import string
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from own_data_fixtures import make_folder, png_bytes
from rightreasons import TrainConfig, load_dataset
from rightreasons.errors import UserError

# RR_FUZZ_EXAMPLES=2000 for a long hunt; the default keeps the suite fast
FUZZ = settings(max_examples=int(os.environ.get("RR_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def loads_or_user_error(name, **options):
    try:
        data = load_dataset(name, **options)
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return None
    assert len(data.train) > 0 and len(data.val) > 0 and len(data.test) > 0
    assert data.train.x.dtype.is_floating_point
    return data


CELLS = st.one_of(
    st.sampled_from(["", "0", "1", "2", "-1", "nan", "inf", "1e999", "cat", "train", "val", "test", "TEST",
                     "img/000.png", "img/001.png", "masks/000.png", "masks/001.png", "../labels.csv", "img",
                     '"', '"a,b"', " 1 ", "\t", "99999999999999999999999", "0.5", "\u00e9t\u00e9"]),
    st.text(alphabet=string.printable, max_size=6),
)
HEADERS = st.lists(st.sampled_from(["file", "label", "group", "split", "mask", "a", "b", "c", "grp", "", "file"]),
                   min_size=0, max_size=6)


def csv_text(header, rows) -> str:
    return "\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n"


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_labels_csv(data):
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp) / "f", n=4, size=4)
        (root / "labels.csv").write_bytes(data)
        loads_or_user_error(f"folder:{root}")


@FUZZ
@given(header=HEADERS, rows=st.lists(st.lists(CELLS, min_size=0, max_size=6), min_size=0, max_size=10))
def test_random_labels_csv_cells(header, rows):
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp) / "f", n=4, size=4)
        (root / "labels.csv").write_text(csv_text(header, rows))
        loads_or_user_error(f"folder:{root}")


@FUZZ
@given(image=st.one_of(st.binary(max_size=200),
                       st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
                       st.integers(0, 60).map(lambda k: png_bytes(np.full((4, 4, 3), 9))[:k]),
                       st.integers(0, 200).map(lambda k: png_bytes(np.full((8, 8), 200), "JPEG")[:k])),
       which=st.sampled_from(["img/001.png", "masks/002.png"]))
def test_random_bytes_as_image_or_mask(image, which):
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp) / "f", n=8, size=4)
        (root / which).write_bytes(image)
        loads_or_user_error(f"folder:{root}")


@FUZZ
@given(array=st.lists(st.integers(0, 255), min_size=16, max_size=16),
       mode=st.sampled_from(["L", "RGB", "P", "RGBA", "1", "I;16", "LA"]))
def test_masks_in_any_image_mode(array, mode):
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp) / "f", n=8, size=4)
        im = Image.fromarray(np.array(array, dtype=np.uint8).reshape(4, 4)).convert(mode)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        (root / "masks" / "003.png").write_bytes(buf.getvalue())
        loads_or_user_error(f"folder:{root}", mask_threshold=None if array[0] % 2 else 0.5)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True) |
                       st.text(max_size=8), lambda inner: st.lists(inner, max_size=3), max_leaves=4)
FOLDER_KEYS = ["size", "channels", "normalize", "mask_invert", "mask_threshold", "classes", "num_classes",
               "val_fraction", "test_fraction", "colour"]


@FUZZ
@given(options=st.dictionaries(st.sampled_from(FOLDER_KEYS), JSONISH | st.sampled_from(
    ["8", "4,6", "imagenet", "0.5,0.5", "none", "true", "0,1", "0.9"]), max_size=3))
def test_random_folder_options(options):
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp) / "f", n=8, size=4)
        loads_or_user_error(f"folder:{root}", **options)


TABLE_CELLS = st.one_of(st.sampled_from(["", "0", "1", "nan", "NaN", "-inf", "1e40", "x", "train", "val", "test"]),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.text(alphabet=string.printable, max_size=5))
TABLE_KEYS = ["label", "group", "split", "features", "mask_columns", "standardize", "classes", "num_classes",
              "val_fraction", "test_fraction", "mask_file"]


@FUZZ
@given(header=st.lists(st.sampled_from(["a", "b", "c", "label", "grp", "part", "", "a"]), max_size=5),
       rows=st.lists(st.lists(TABLE_CELLS, min_size=0, max_size=5), max_size=12),
       options=st.dictionaries(st.sampled_from(TABLE_KEYS), st.sampled_from(
           ["a", "b", "label", "grp", "part", "a,b", "zz", "true", "false", 3, 0.2, None, ["a"], "mask.csv"]),
           max_size=3),
       mask_rows=st.lists(st.lists(st.sampled_from(["", "0", "1", "2"]), min_size=2, max_size=2), max_size=12))
def test_random_tables(header, rows, options, mask_rows):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        path.write_text(csv_text(header, rows))
        (Path(tmp) / "mask.csv").write_text(csv_text(["a", "b"], mask_rows))
        if options.get("mask_file") == "mask.csv":
            options["mask_file"] = str(Path(tmp) / "mask.csv")
        loads_or_user_error(f"csv:{path}", **options)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_table(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        path.write_bytes(data)
        loads_or_user_error(f"csv:{path}")


CONFIG_KEYS = ["data", "data_options", "model", "model_options", "method", "params", "epochs", "batch_size", "lr",
               "optimizer", "weight_decay", "seed", "select", "threads", "on_nonfinite", "epoch", ""]


@FUZZ
@given(raw=st.one_of(st.dictionaries(st.sampled_from(CONFIG_KEYS), JSONISH, max_size=5), JSONISH))
def test_random_config_objects(raw):
    try:
        TrainConfig.from_dict(raw)
    except UserError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1"))))
def test_random_config_files(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            TrainConfig.load(path)
        except UserError as exc:
            assert "\n" not in str(exc)


def test_a_valid_fuzz_baseline_loads():
    """The fuzzers' starting points load, so the tests above do exercise the success path."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp) / "f", n=8, size=4)
        assert loads_or_user_error(f"folder:{root}") is not None
        assert TrainConfig.from_dict(json.loads('{"epochs": 2}')).epochs == 2
