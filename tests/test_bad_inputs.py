"""Bad input, one case each: image folders, CSV tables, tensors, config files and CLI flags. Every case
asserts its specific one-line message (naming the file, row, column, field or shape); CLI cases also
assert exit code 2, exactly one line on stderr, no traceback, and an untouched --out."""

from pathlib import Path

import numpy as np
import pytest
import torch

from own_data_fixtures import make_folder, make_table, png_bytes, set_row
from rightreasons import ExplanationDataset, TrainConfig, load_dataset
from rightreasons.cli import main
from rightreasons.errors import UserError


def _folder(tmp: Path) -> Path:
    return make_folder(tmp / "f", n=8)


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


# Each case: (id, setup(tmp) -> (dataset name, options), the expected part of the message).
def f_missing_dir(t):
    return f"folder:{t / 'nope'}", {}


def f_no_labels(t):
    (t / "empty").mkdir()
    return f"folder:{t / 'empty'}", {}


def f_empty_csv(t):
    r = _folder(t)
    (r / "labels.csv").write_text("")
    return f"folder:{r}", {}


def f_header_only(t):
    r = _folder(t)
    (r / "labels.csv").write_text("file,label\n")
    return f"folder:{r}", {}


def f_unknown_column(t):
    r = _folder(t)
    _edit(r / "labels.csv", "file,label", "file,colour")
    return f"folder:{r}", {}


def f_missing_label_column(t):
    r = _folder(t)
    lines = [",".join(c for i, c in enumerate(line.split(",")) if i != 1)
             for line in (r / "labels.csv").read_text().splitlines()]
    (r / "labels.csv").write_text("\n".join(lines) + "\n")
    return f"folder:{r}", {}


def f_field_count(t):
    r = _folder(t)
    set_row(r, 3, "label", "1,extra")
    return f"folder:{r}", {}


def f_missing_label(t):
    r = _folder(t)
    set_row(r, 4, "label", "")
    return f"folder:{r}", {}


def f_label_out_of_range(t):
    r = _folder(t)
    set_row(r, 3, "label", "5")
    return f"folder:{r}", {"num_classes": 2}


def f_negative_label(t):
    r = _folder(t)
    set_row(r, 5, "label", "-1")
    return f"folder:{r}", {}


def f_mixed_labels(t):
    r = _folder(t)
    set_row(r, 7, "label", "cat?")
    return f"folder:{r}", {}


def f_label_not_a_class(t):
    r = make_folder(t / "f", n=8, labels=("cat", "dog"))
    set_row(r, 6, "label", "bird")
    return f"folder:{r}", {"classes": "cat,dog"}


def f_image_missing(t):
    r = _folder(t)
    (r / "img" / "003.png").unlink()
    return f"folder:{r}", {}


def f_truncated_image(t):
    r = _folder(t)
    p = r / "img" / "003.png"
    p.write_bytes(png_bytes(np.full((64, 64, 3), 7)))
    p.write_bytes(p.read_bytes()[:-40])
    return f"folder:{r}", {"size": 8}


def f_not_an_image(t):
    r = _folder(t)
    (r / "img" / "002.png").write_text("this is not a picture\n")
    return f"folder:{r}", {}


def f_mask_size(t):
    r = _folder(t)
    (r / "masks" / "003.png").write_bytes(png_bytes(np.zeros((4, 4))))
    return f"folder:{r}", {}


def f_grey_mask(t):
    r = _folder(t)
    (r / "masks" / "004.png").write_bytes(png_bytes(np.full((8, 8), 128)))
    return f"folder:{r}", {}


def f_mask_unreadable(t):
    r = _folder(t)
    (r / "masks" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return f"folder:{r}", {}


def f_odd_size(t):
    r = _folder(t)
    (r / "img" / "005.png").write_bytes(png_bytes(np.zeros((6, 6, 3))))
    return f"folder:{r}", {}


def f_duplicate_file(t):
    r = _folder(t)
    set_row(r, 4, "file", "img/001.png")
    return f"folder:{r}", {}


def f_bad_split(t):
    r = _folder(t)
    set_row(r, 2, "split", "training")
    return f"folder:{r}", {}


def f_empty_test_split(t):
    r = _folder(t)
    (r / "labels.csv").write_text((r / "labels.csv").read_text().replace(",test,", ",train,"))
    return f"folder:{r}", {}


def f_unknown_option(t):
    return f"folder:{_folder(t)}", {"colour": "red"}


def f_bad_size(t):
    return f"folder:{_folder(t)}", {"size": "big"}


def f_bad_channels(t):
    return f"folder:{_folder(t)}", {"channels": 4}


def f_bad_normalize(t):
    return f"folder:{_folder(t)}", {"normalize": "zscore"}


def f_imagenet_gray(t):
    return f"folder:{_folder(t)}", {"channels": 1, "normalize": "imagenet"}


def f_bad_threshold(t):
    return f"folder:{_folder(t)}", {"mask_threshold": 1.5}


def f_not_utf8(t):
    r = _folder(t)
    (r / "labels.csv").write_bytes(b"file,label\nimg/\xff.png,0\n")
    return f"folder:{r}", {}


def f_nul_byte(t):
    r = _folder(t)
    (r / "labels.csv").write_bytes(b"file,label\nimg/000.png,0\x00\n")
    return f"folder:{r}", {}


def f_missing_file_cell(t):
    r = _folder(t)
    set_row(r, 6, "file", "")
    return f"folder:{r}", {}


def f_duplicate_column(t):
    r = _folder(t)
    _edit(r / "labels.csv", "file,label,split", "file,label,label")
    return f"folder:{r}", {}


def f_fractions(t):
    return f"folder:{_folder(t)}", {"val_fraction": 0.5, "test_fraction": 0.5}


def f_header_line_break(t):
    r = _folder(t)
    _edit(r / "labels.csv", "file,label", 'file,"la\nbel"')
    return f"folder:{r}", {}


def f_file_name_line_break(t):
    r = _folder(t)
    set_row(r, 2, "file", '"img/0\n00.png"')
    return f"folder:{r}", {}


def _table(t, **kw):
    return make_table(t / "data.csv", n=40, **kw)


def _table_with_line(t, index, line):
    """A valid table whose line ``index`` (0 = header) is replaced by ``line``."""
    p = _table(t)
    lines = p.read_text().splitlines()
    lines[index] = line
    p.write_text("\n".join(lines) + "\n")
    return f"csv:{p}", {}


def t_nan(t):
    return _table_with_line(t, 2, "0.1,nan,0.3,1,0")


def t_empty_cell(t):
    return _table_with_line(t, 2, ",0.2,0.3,1,0")


def t_not_number(t):
    return _table_with_line(t, 4, "0.1,0.2,abc,1,0")


def t_inf(t):
    return _table_with_line(t, 3, "inf,0.2,0.3,1,0")


def t_unknown_feature(t):
    return f"csv:{_table(t)}", {"features": "a,zz"}


def t_unknown_group(t):
    return f"csv:{_table(t)}", {"group": "team"}


def t_no_label(t):
    return f"csv:{_table(t)}", {"label": "target"}


def t_mask_column_not_feature(t):
    return f"csv:{_table(t)}", {"mask_columns": "label"}


def t_mask_file_columns(t):
    (t / "m.csv").write_text("a,b\n" + "0,1\n" * 40)
    return f"csv:{_table(t)}", {"features": "a,b,c", "mask_file": str(t / "m.csv")}


def t_mask_file_rows(t):
    (t / "m.csv").write_text("a,b,c\n" + "0,1,0\n" * 39)
    return f"csv:{_table(t)}", {"features": "a,b,c", "mask_file": str(t / "m.csv")}


def t_mask_file_value(t):
    (t / "m.csv").write_text("a,b,c\n" + "0,1,0\n" * 5 + "0,2,0\n" + "0,1,0\n" * 34)
    return f"csv:{_table(t)}", {"features": "a,b,c", "mask_file": str(t / "m.csv")}


def t_missing_file(t):
    return f"csv:{t / 'nope.csv'}", {}


def t_bad_bool(t):
    return f"csv:{_table(t)}", {"standardize": "maybe"}


def t_feature_is_label(t):
    return f"csv:{_table(t)}", {"features": "a,label"}


def t_missing_label_value(t):
    p = _table(t)
    lines = p.read_text().splitlines()
    lines[9] = "0.1,0.2,0.3,,0"
    p.write_text("\n".join(lines) + "\n")
    return f"csv:{p}", {}


def t_bad_split_column(t):
    p = _table(t, split=True)
    _edit(p, ",val", ",validation")
    return f"csv:{p}", {"split": "part"}


def d_unknown_prefix_path(t):
    return "folder:", {}


CASES = [
    (f_missing_dir, "nope: no such directory"),
    (f_no_labels, "empty: no labels.csv (expected a header file,label[,group][,split][,mask])"),
    (f_empty_csv, "labels.csv: empty file, expected a header row"),
    (f_header_only, "labels.csv: no examples (only a header)"),
    (f_unknown_column, "labels.csv: unknown column 'colour'; known: file, label, group, split, mask"),
    (f_missing_label_column, "labels.csv: missing column 'label' (header: file, split, mask)"),
    (f_field_count, "labels.csv row 3: 5 fields, expected 4 (file, label, split, mask)"),
    (f_missing_label, "labels.csv row 4: missing label"),
    (f_label_out_of_range, "labels.csv row 3: label 5 out of range for num_classes=2"),
    (f_negative_label, "labels.csv row 5: label -1 is negative"),
    (f_mixed_labels, "labels.csv row 7: label 'cat?' is not an integer, but row 2 is ('0')"),
    (f_label_not_a_class, "labels.csv row 6: label 'bird' is not one of the classes cat, dog"),
    (f_image_missing, "img/003.png (labels.csv row 5): no such file"),
    (f_truncated_image, "img/003.png (labels.csv row 5): cannot read image (truncated)"),
    (f_not_an_image, "img/002.png (labels.csv row 4): cannot read image (cannot identify image file"),
    (f_mask_size, "masks/003.png (labels.csv row 5): mask is 4x4 but image is 8x8"),
    (f_grey_mask, "masks/004.png (labels.csv row 6): mask has values other than (near) 0 and 255 (e.g. 128 at "
                  "row 0, column 0); use mask_threshold=0.5"),
    (f_mask_unreadable, "masks/001.png (labels.csv row 3): cannot read image"),
    (f_odd_size, "img/005.png (labels.csv row 7): image is 6x6 but img/000.png is 8x8; pass size=H,W to resize "
                 "every image"),
    (f_duplicate_file, "labels.csv row 4: file 'img/001.png' already listed in row 3"),
    (f_bad_split, "labels.csv row 2: split value 'training' is not one of train, val, test"),
    (f_empty_test_split, "labels.csv: the test split is empty (the split column has no such rows)"),
    (f_unknown_option, "unknown option(s) colour; known: allow_outside, cache, channels, classes, mask_invert"),
    (f_bad_size, "option size must be N or H,W (positive integers), got 'big'"),
    (f_bad_channels, "option channels must be 1 or 3, got 4"),
    (f_bad_normalize, "option normalize must be none, imagenet or MEAN,STD, got 'zscore'"),
    (f_imagenet_gray, "normalize=imagenet needs channels=3, got channels=1"),
    (f_bad_threshold, "option mask_threshold must be a number in (0, 1], got 1.5"),
    (f_not_utf8, "labels.csv: not UTF-8 text (byte 0xff at offset 15)"),
    (f_nul_byte, "labels.csv row 2: NUL byte (binary file?)"),
    (f_missing_file_cell, "labels.csv row 6: missing file"),
    (f_duplicate_column, "labels.csv: column 'label' appears twice in the header"),
    (f_header_line_break, "labels.csv: column 2 of the header, 'la\\nbel', contains a line break or control character"),
    (f_file_name_line_break, "img/0\\n00.png (labels.csv row 3): no such file"),
    (f_fractions, "val_fraction + test_fraction must be < 1, got 1"),
    (t_nan, "data.csv row 3, column 'b': NaN (impute or drop missing values first)"),
    (t_empty_cell, "data.csv row 3, column 'a': empty cell (impute or drop missing values first)"),
    (t_not_number, "data.csv row 5, column 'c': 'abc' is not a number"),
    (t_inf, "data.csv row 4, column 'a': 'inf' is not a finite number"),
    (t_unknown_feature, "data.csv: unknown column 'zz' (option features); columns: a, b, c, label, grp"),
    (t_unknown_group, "data.csv: unknown column 'team' (option label/group/split); columns: a, b, c, label, grp"),
    (t_no_label, "data.csv: no label column 'target' (set option label=COLUMN); columns: a, b, c, label, grp"),
    (t_mask_column_not_feature, "mask column 'label' is not a feature; features: a, b, c, grp"),
    (t_mask_file_columns, "m.csv: mask columns must be the feature columns (a, b, c); missing c"),
    (t_mask_file_rows, "m.csv: 39 rows but the data has 40; one mask row per data row"),
    (t_mask_file_value, "m.csv row 7, column 'b': mask value '2' is not 0 or 1"),
    (t_missing_file, "nope.csv: no such file"),
    (t_bad_bool, "option standardize must be true or false, got 'maybe'"),
    (t_feature_is_label, "column 'label' cannot be both a feature and the label/group/split"),
    (t_missing_label_value, "data.csv row 10: missing label (column 'label')"),
    (t_bad_split_column, "data.csv row 4: split (column 'part') value 'validation' is not one of train, val, test"),
    (d_unknown_prefix_path, "dataset 'folder:': give a path after 'folder:'"),
]


@pytest.mark.parametrize("setup, expected", CASES, ids=[c[0].__name__ for c in CASES])
def test_loader_rejects_bad_input_with_one_line(tmp_path, setup, expected):
    name, options = setup(tmp_path)
    with pytest.raises(UserError) as info:
        load_dataset(name, **options)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


TENSOR_CASES = [
    (lambda: ExplanationDataset(torch.rand(5, 1, 4, 4), torch.zeros(5, dtype=torch.long), torch.zeros(5, 1, 3, 3)),
     "tensors: mask shape (5, 1, 3, 3) does not match x shape (5, 1, 4, 4)"),
    (lambda: ExplanationDataset(torch.rand(5, 3), torch.zeros(5, dtype=torch.long), torch.full((5, 3), 0.5)),
     "tensors: mask must be binary (0/1); found other values"),
    (lambda: ExplanationDataset(torch.rand(5, 3), torch.zeros(5)),
     "tensors: y must be integer class labels, got torch.float32"),
    (lambda: ExplanationDataset(torch.rand(5, 3), torch.tensor([0, 1, 2, 3, 1]), num_classes=3),
     "tensors: label 3 out of range for 3 classes"),
    (lambda: ExplanationDataset(torch.rand(4, 3), torch.tensor([0, -1, 1, 0])), "tensors: negative label -1 in y"),
    (lambda: ExplanationDataset(torch.rand(4, 3), torch.zeros(5, dtype=torch.long)),
     "tensors: y has shape (5,); expected (4,) to match x (4, 3)"),
    (lambda: ExplanationDataset(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
     "tensors: x must be a float tensor, got torch.int64"),
    (lambda: ExplanationDataset(torch.tensor([[0.0, 1.0], [0.5, float("nan")], [1.0, float("inf")]]),
                                torch.zeros(3, dtype=torch.long)),
     "tensors: x has a NaN or infinite value (first in example 1)"),
]


@pytest.mark.parametrize("build, expected", TENSOR_CASES, ids=[f"tensor{i}" for i in range(len(TENSOR_CASES))])
def test_tensors_rejected_with_shapes_named(build, expected):
    with pytest.raises(UserError, match=None) as info:
        build()
    assert expected in str(info.value)


CONFIG_CASES = [
    ('{"epoch": 3}', "unknown field 'epoch'; known fields: augment, batch_size, compare_selections, data,"),
    ('{"epochs": "3"}', "config field 'epochs' must be a positive integer or null, got '3'"),
    ('{"data_options": [1]}', "config field 'data_options' must be dict, got [1]"),
    ('{"epochs": 3,}', "invalid JSON at line 1 column"),
    ('[1, 2]', "expected a JSON object, got list"),
    ('{"optimizer": "adagrad"}', "config field 'optimizer' must be one of adam, adamw, sgd, got 'adagrad'"),
]


@pytest.mark.parametrize("text, expected", CONFIG_CASES, ids=[f"config{i}" for i in range(len(CONFIG_CASES))])
def test_config_files_rejected_naming_the_field(tmp_path, text, expected):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        TrainConfig.load(path)
    assert expected in str(info.value) and str(path) in str(info.value)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """A real (tiny) run trained on a table, shared by the audit cases, and the bad inputs."""
    tmp = tmp_path_factory.mktemp("cli")
    table = make_table(tmp / "data.csv", n=40)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # fast on a crowded machine
        assert main(["train", "--data", f"csv:{table}", "--data-option", "mask_columns=b", "--method", "erm",
                     "--epochs", "1", "--out", str(tmp / "run"), "--quiet"]) == 0
    return tmp, _cli_cases(tmp, tmp / "run")


def _cli_cases(tmp: Path, run: Path):
    folder = make_folder(tmp / "f", n=8)
    set_row(folder, 4, "label", "")
    table = make_table(tmp / "t.csv", n=40)
    lines = table.read_text().splitlines()
    lines[5] = "0.1,NaN,0.3,1,0"
    table.write_text("\n".join(lines) + "\n")
    config = tmp / "config.json"
    config.write_text('{"epochs": 2, "lr": "fast"}')
    out = str(tmp / "out")
    return [
        (["train", "--data", f"folder:{folder}", "--out", out], "labels.csv row 4: missing label"),
        (["train", "--data", f"csv:{table}", "--out", out], "t.csv row 6, column 'b': NaN"),
        (["train", "--data", f"folder:{tmp / 'none'}", "--out", out], "none: no such directory"),
        (["train", "--config", str(config), "--out", out], "config field 'lr' must be float, got 'fast'"),
        (["train", "--data", f"csv:{table}", "--param", "lam=abc", "--out", out],
         "method 'rrr': parameter 'lam' must be float, got 'abc'"),
        (["train", "--data", f"csv:{table}", "--data-option", "standardize", "--out", out],
         "--data-option 'standardize': expected KEY=VALUE"),
        (["train", "--data", f"csv:{table}", "--epochs", "many", "--out", out], "'many' is not a valid integer"),
        (["train", "--data", f"folder:{folder}", "--data-option", "size=0", "--out", out], "option size must be"),
        (["audit", str(tmp / "norun")], "norun: no such run directory"),
        (["audit", str(run), "--eps", "-1"], "audit: eps must be a finite number >= 0, got -1.0"),
        (["audit", str(run), "--data-option", "features=a,zz"], "unknown column 'zz' (option features)"),
        (["audit", str(run), "--steps", "-2"], "Invalid value for '--steps'"),
        (["data", "example", "patches", "--out", str(table)], "Invalid value for '--out': Directory"),
        (["data", "example", "patches", "--out", out, "--size", "2"], "patches: size must be an integer >= 8, got 2"),
    ]


N_CLI_CASES = 14


@pytest.mark.parametrize("index", range(N_CLI_CASES))
def test_cli_bad_input_one_line_exit_2_and_nothing_written(cli_env, index, capsys):
    tmp, cases = cli_env
    assert len(cases) == N_CLI_CASES
    argv, expected = cases[index]
    run = tmp / "run"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    assert expected in lines[0], (argv, lines[0])
    assert "Traceback" not in err
    assert not (tmp / "out").exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
