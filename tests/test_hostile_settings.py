"""Hostile and careless settings: flags, config files, method hyperparameters, search spaces, tensors and
the files they come from. Every CLI case asserts exit code 2, exactly one stderr line starting with
``error:`` that names the field (or file) at fault, no traceback, and that --out was never written;
library cases assert the one-line UserError / DataError and its message."""

import json
import math
import os
import warnings
from pathlib import Path

import pytest
import torch

from rightreasons import DataSplits, ExplanationDataset, TrainConfig
from rightreasons.cli import main
from rightreasons.data.registry import DATASETS
from rightreasons.errors import DataError, UserError
from rightreasons.files import read_json, read_text
from rightreasons.methods import METHODS, create_method
from rightreasons.sweep.space import parse_space

TRAIN = ["train", "--data", "toy-colors", "--epochs", "1", "--quiet"]
BIG = 20 * 2**20  # a 20 MB settings file (the limit is 16 MiB)


def refused(capsys, args, expected, out):
    """Run the CLI; assert exit 2, one ``error:`` line containing ``expected``, no traceback, no ``out``."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not Path(out).exists(), f"{out} was written"
    return lines[0]


# ------------------------------------------------------------------------------------------ flags

FLAG_CASES = [
    ("lr-inf", ["--lr", "inf"], "'lr' must be a finite number, got inf"),
    ("lr-nan", ["--lr", "nan"], "'lr' must be a finite number, got nan"),
    ("lr-minus-inf", ["--lr", "-inf"], "'lr' must be a finite number"),
    ("lr-overflow", ["--lr", "1e309"], "'lr' must be a finite number"),
    ("lr-zero", ["--lr", "0"], "'lr' must be > 0 and at most 10"),
    ("lr-negative", ["--lr", "-1"], "'lr' must be > 0"),
    ("lr-absurd", ["--lr", "11"], "'lr' must be > 0 and at most 10"),
    ("seed-negative", ["--seed", "-1"], "'seed' must be an integer in [0, 2**62)"),
    ("seed-huge", ["--seed", "99999999999999999999999"], "'seed' must be an integer in [0, 2**62)"),
    ("seed-2**62", ["--seed", str(2**62)], "'seed' must be an integer in [0, 2**62)"),
    ("epochs-absurd", ["--epochs", "100001"], "'epochs' must be a positive integer or null"),
    ("batch-absurd", ["--batch-size", str(2**24 + 1)], "'batch_size' must be a positive integer or null"),
    ("threads-absurd", ["--threads", "1025"], "'threads' must be a positive integer or null"),
    ("param-nan", ["--param", "lam=nan"], "method 'rrr': parameter 'lam' must be a finite number, got nan"),
    ("param-NaN", ["--param", "lam=NaN"], "params['lam'] is NaN"),
    ("param-inf", ["--param", "lam=inf"], "method 'rrr': parameter 'lam' must be a finite number, got inf"),
    ("param-overflow", ["--param", "lam=1e309"], "parameter 'lam' must be a finite number, got inf"),
    ("param-minus-Infinity", ["--param", "lam=-Infinity"], "parameter 'lam' must be a finite number, got -inf"),
    ("param-400-digits", ["--param", "lam=1" + "0" * 400], "method 'rrr': parameter 'lam' must be float"),
    ("param-list", ["--param", "lam=[1]"], "method 'rrr': parameter 'lam' must be float"),
    ("param-int-huge", ["--method", "pgd_ex", "--param", "steps=1e20"], "parameter 'steps' must be an integer"),
    ("param-int-inf", ["--method", "avg_ex", "--param", "samples=inf"], "parameter 'samples' must be int"),
    ("param-int-overflow", ["--method", "avg_ex", "--param", "samples=1e309"], "parameter 'samples' must be int"),
    ("group-dro-num-groups", ["--method", "group_dro", "--param", "num_groups=1000000000000"],
     "parameter 'num_groups' must be an integer"),
    ("group-dro-step-inf", ["--method", "group_dro", "--param", "step_size=Infinity"],
     "method 'group_dro': parameter 'step_size' must be a finite number"),
    ("cdep-lam-minus-inf", ["--method", "cdep", "--param", "lam=-inf"], "method 'cdep': parameter 'lam'"),
    ("feature-kl-baseline-nan", ["--method", "feature_kl", "--param", "baseline=nan"],
     "method 'feature_kl': parameter 'baseline' must be a finite number"),
    ("ibp-clip-nan", ["--method", "ibp_ex", "--param", "clip_min=nan"],
     "method 'ibp_ex': parameter 'clip_min' must be a finite number, -inf or inf, got nan"),
    ("ibp-clip-min-inf", ["--method", "ibp_ex", "--param", "clip_min=inf"], "method 'ibp_ex': clip_min=inf"),
    ("ibp-clip-max-minus-inf", ["--method", "ibp_ex", "--param", "clip_max=-inf"], "method 'ibp_ex': clip_max=-inf"),
    ("pgd-clip-min-inf", ["--method", "pgd_ex", "--param", "clip_min=inf"], "method 'pgd_ex': clip_min=inf"),
    ("combined-clip-nan", ["--method", "pgd_ex+rrr", "--param", "clip_max=nan"],
     "method 'pgd_ex+rrr': parameter 'clip_max' must be a finite number, -inf or inf"),
    ("combined-eps-inf", ["--method", "pgd_ex+rrr", "--param", "eps=inf"],
     "method 'pgd_ex+rrr': parameter 'eps' must be a finite number"),
    ("combined-lam-nan", ["--method", "ibp_ex+rrr", "--param", "lam=nan"], "method 'ibp_ex+rrr': parameter 'lam'"),
    ("ig-norm-clip-nan", ["--method", "ig_norm", "--param", "clip_min=nan"], "method 'ig_norm': parameter 'clip_min'"),
    ("ig-sum-norm-beta-inf", ["--method", "ig_sum_norm", "--param", "beta=inf"], "parameter 'beta' must be a finite"),
    ("data-option-NaN", ["--data-option", "n_train=NaN"], "field 'data_options': data_options['n_train'] is NaN"),
    ("model-option-NaN", ["--model-option", "hidden=[NaN]"], "model_options['hidden'][0] is NaN"),
    ("param-5000-digits", ["--param", "lam=1" + "0" * 5000], "lam"),
]
#: cases whose fix belongs to a module outside these surfaces (see the reason)
@pytest.mark.parametrize("name, flags, expected", [pytest.param(*c, id=c[0]) for c in FLAG_CASES])
def test_flags_that_cannot_train_are_refused(tmp_path, capsys, name, flags, expected):
    out = tmp_path / "run"
    refused(capsys, [*TRAIN, "--out", out, *flags], expected, out)


# ------------------------------------------------------------------------------------------ config files

CONFIG_CASES = [
    ("lr-Infinity", '{"lr": Infinity}', "'lr' must be a finite number, got inf"),
    ("lr-NaN", '{"lr": NaN}', "'lr' must be a finite number, got nan"),
    ("lr-minus-Infinity", '{"lr": -Infinity}', "'lr' must be a finite number"),
    ("lr-1e999", '{"lr": 1e999}', "'lr' must be a finite number"),
    ("lr-400-digit-int", '{"lr": 1' + "0" * 400 + "}", "'lr' must be a finite number, got an integer too large"),
    ("lr-string", '{"lr": "0.1"}', "'lr' must be float"),
    ("lr-absurd", '{"lr": 1000}', "'lr' must be > 0 and at most 10"),
    ("weight-decay-NaN", '{"weight_decay": NaN}', "'weight_decay' must be a finite number, got nan"),
    ("weight-decay-Infinity", '{"weight_decay": Infinity}', "'weight_decay' must be a finite number"),
    ("weight-decay-absurd", '{"weight_decay": 2}', "'weight_decay' must be >= 0 and at most 1"),
    ("weight-decay-negative", '{"weight_decay": -0.1}', "'weight_decay' must be >= 0"),
    ("epochs-fraction", '{"epochs": 1.5}', "'epochs' must be a positive integer or null, got 1.5"),
    ("epochs-float-int", '{"epochs": 2.0}', "'epochs' must be a positive integer or null"),
    ("epochs-1e400", '{"epochs": 1e400}', "'epochs' must be a positive integer or null, got inf"),
    ("epochs-true", '{"epochs": true}', "'epochs' must be a positive integer or null, got True"),
    ("epochs-absurd", '{"epochs": 1000000000}', "'epochs' must be a positive integer or null"),
    ("seed-true", '{"seed": true}', "'seed' must be int, got True"),
    ("seed-float", '{"seed": 1.0}', "'seed' must be int"),
    ("seed-negative", '{"seed": -1}', "'seed' must be an integer in [0, 2**62)"),
    ("seed-2**62", '{"seed": %d}' % 2**62, "'seed' must be an integer in [0, 2**62)"),
    ("seed-5000-digits", '{"seed": 1' + "0" * 5000 + "}", "a number in it has too many digits"),
    ("threads-absurd", '{"threads": 5000}', "'threads' must be a positive integer or null"),
    ("batch-zero", '{"batch_size": 0}', "'batch_size' must be a positive integer or null"),
    ("batch-absurd", '{"batch_size": 1073741824}', "'batch_size' must be a positive integer or null"),
    ("data-number", '{"data": 5}', "'data' must be str"),
    ("method-null", '{"method": null}', "'method' must be str"),
    ("data-options-NaN", '{"data_options": {"n_train": NaN}}', "data_options['n_train'] is NaN"),
    ("params-NaN", '{"params": {"lam": NaN}}', "params['lam'] is NaN"),
    ("params-Infinity", '{"params": {"lam": Infinity}}', "method 'rrr': parameter 'lam' must be a finite number"),
    ("model-options-deep", '{"model_options": {"hidden": ' + "[" * 200 + "]" * 200 + "}}",
     "config field 'model_options' is nested more than 32 levels deep"),
    ("a-list", "[1, 2]", "expected a JSON object, got list"),
    ("a-string", '"lr"', "expected a JSON object, got str"),
    ("null", "null", "expected a JSON object, got NoneType"),
    ("empty", "", "invalid JSON at line 1 column 1"),
    ("deep-list", "[" * 100000, "JSON nested too deeply"),
    ("deep-object", '{"a": ' * 100000, "JSON nested too deeply"),
    ("not-utf8", b'{"data": "\xff"}', "not UTF-8 text: byte 0xff at offset 10"),
    ("utf16", '{"epochs": 1}'.encode("utf-16"), "not UTF-8 text"),
    ("twenty-megabytes", '{"data_options": {"x": "' + "a" * BIG + '"}}', "the limit is 16 MiB"),
]


@pytest.mark.parametrize("name, text, expected", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_files_that_cannot_train_are_refused(tmp_path, capsys, name, text, expected):
    path = tmp_path / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "run"
    line = refused(capsys, [*TRAIN, "--config", path, "--out", out], expected, out)
    assert str(path) in line or line.startswith("error: method ")  # hyperparameters: the method names itself


def _fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


def test_a_named_pipe_as_config_is_refused_not_waited_on(tmp_path, capsys):
    out = tmp_path / "run"
    refused(capsys, [*TRAIN, "--config", _fifo(tmp_path), "--out", out], "it is a named pipe, not a file", out)


def test_a_symlink_to_a_named_pipe_is_refused(tmp_path, capsys):
    link = tmp_path / "link.json"
    link.symlink_to(_fifo(tmp_path))
    out = tmp_path / "run"
    refused(capsys, [*TRAIN, "--config", link, "--out", out], "named pipe", out)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_an_endless_device_as_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    refused(capsys, [*TRAIN, "--config", "/dev/zero", "--out", out], "a character device, not a file", out)


def test_a_directory_as_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    refused(capsys, [*TRAIN, "--config", tmp_path, "--out", out], "is a directory", out)


def test_a_byte_order_mark_is_not_an_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"epochs": 3}).encode())
    assert TrainConfig.load(path).epochs == 3


# ------------------------------------------------------------------------------------------ search spaces

SPACE_CASES = [
    ("low-minus-Infinity", '{"lr": {"type": "float", "low": -Infinity, "high": 1}}',
     "key 'lr': low must be a finite number, got -inf"),
    ("high-NaN", '{"lr": {"type": "float", "low": 0.1, "high": NaN}}', "key 'lr': high must be a finite number"),
    ("step-zero", '{"lr": {"type": "float", "low": 0.1, "high": 1, "step": 0}}', "key 'lr': step must be > 0"),
    ("step-larger-than-range", '{"lr": {"type": "float", "low": 0.1, "high": 1, "step": 5}}',
     "key 'lr': step 5.0 is larger than the range"),
    ("int-log-with-step", '{"epochs": {"type": "int", "low": 1, "high": 9, "log": true, "step": 2}}',
     "key 'epochs': step and log cannot be combined for an int"),
    ("int-400-digits", '{"epochs": {"type": "int", "low": 1, "high": 1' + "0" * 400 + "}}",
     "key 'epochs': high must be of magnitude below 2**62"),
    ("low-true", '{"lr": {"type": "float", "low": true, "high": 1}}', "key 'lr': low must be a finite number"),
    ("lr-absurd-high", '{"lr": {"type": "float", "low": 0.001, "high": 1000000, "log": true}}',
     "key 'lr': value 1000000.0 is not allowed"),
    ("epochs-absurd-high", '{"epochs": {"type": "int", "low": 1, "high": 1000000000}}',
     "key 'epochs': value 1000000000 is not allowed"),
    ("batch-size-zero", '{"batch_size": {"type": "int", "low": 0, "high": 64}}', "key 'batch_size': value 0"),
    ("weight-decay-absurd", '{"weight_decay": {"type": "float", "low": 0, "high": 5}}', "key 'weight_decay'"),
    ("choice-NaN", '{"params.lam": {"type": "categorical", "choices": [NaN, 10.0]}}',
     "key 'params.lam': choice NaN is not a value"),
    ("optimizer-unknown", '{"optimizer": {"type": "categorical", "choices": ["adam", "lbfgs"]}}',
     "key 'optimizer': value 'lbfgs' is not allowed"),
    ("a-list", "[]", "expected a non-empty JSON object"),
    ("deep", "[" * 100000, "JSON nested too deeply"),
    ("not-utf8", b"\xfe\xff\x00{", "not UTF-8 text"),
    ("twenty-megabytes", '{"lr": "' + "a" * BIG + '"}', "the limit is 16 MiB"),
]


@pytest.mark.parametrize("name, text, expected", SPACE_CASES, ids=[c[0] for c in SPACE_CASES])
def test_search_spaces_that_cannot_sweep_are_refused(tmp_path, capsys, name, text, expected):
    pytest.importorskip("optuna")
    path = tmp_path / "space.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "sweep"
    line = refused(capsys, ["sweep", "--data", "toy-colors", "--epochs", "1", "--trials", "1", "--quiet",
                            "--space", path, "--out", out], expected, out)
    assert str(path) in line


def test_a_named_pipe_or_directory_as_space_is_refused(tmp_path, capsys):
    pytest.importorskip("optuna")
    out = tmp_path / "sweep"
    base = ["sweep", "--data", "toy-colors", "--trials", "1", "--out", out]
    refused(capsys, [*base, "--space", _fifo(tmp_path)], "cannot read search space (it is a named pipe", out)
    refused(capsys, [*base, "--space", tmp_path], "is a directory", out)


def test_an_infinite_choice_is_judged_by_the_method():
    from rightreasons.sweep.space import check_space

    base = TrainConfig(data="toy-colors", method="pgd_ex+rrr")
    space = parse_space({"params.clip_max": {"type": "categorical", "choices": [math.inf, 1.0]}}, "s.json")
    assert check_space(space, base, "s.json") == {"params.clip_max": math.inf}  # inf: no clamp, allowed
    space = parse_space({"params.lam": {"type": "categorical", "choices": [1.0, math.inf]}}, "s.json")
    with pytest.raises(UserError, match="key 'params.lam': value inf is not allowed .*'lam' must be a finite"):
        check_space(space, base, "s.json")


# ------------------------------------------------------------------------------------------ the library API

CONFIG_API_CASES = [
    (dict(lr=math.nan), "'lr' must be a finite number"),
    (dict(lr=math.inf), "'lr' must be a finite number"),
    (dict(lr=10**400), "'lr' must be a finite number, got an integer too large for a float"),
    (dict(weight_decay=math.nan), "'weight_decay' must be a finite number"),
    (dict(seed=True), "'seed' must be int"),
    (dict(seed=-5), "'seed' must be an integer in"),
    (dict(seed=10**5000), "'seed' must be an integer in [0, 2**62), got an integer of about 5001 digits"),
    (dict(epochs=True), "'epochs' must be a positive integer"),
    (dict(threads=2.0), "'threads' must be a positive integer"),
    (dict(data_options={1: 2}), "config field 'data_options': key 1 must be a string"),
    (dict(model_options={"a": (math.nan,)}), "model_options['a'][0] is NaN"),
]


@pytest.mark.parametrize("fields, expected", CONFIG_API_CASES, ids=[f"config{i}" for i in range(len(CONFIG_API_CASES))])
def test_train_config_refuses_what_cannot_train(fields, expected):
    with pytest.raises(UserError, match=None) as info:
        TrainConfig(**fields)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_config_limits_are_inclusive_where_they_say_so():
    config = TrainConfig(lr=10, weight_decay=1, seed=2**62 - 1, epochs=100_000, batch_size=2**24, threads=1024)
    assert config.lr == 10.0 and isinstance(config.lr, float) and config.weight_decay == 1.0
    assert TrainConfig(params={"clip_max": math.inf}).params == {"clip_max": math.inf}  # for the method to judge


METHOD_CASES = [
    ("rrr", {"lam": math.nan}, "method 'rrr': parameter 'lam' must be a finite number, got nan"),
    ("rrr", {"lam": "nan"}, "method 'rrr': parameter 'lam' must be a finite number"),
    ("rrr", {"lam": math.inf}, "method 'rrr': parameter 'lam' must be a finite number, got inf"),
    ("rrr", {"lam": 10**400}, "method 'rrr': parameter 'lam' must be float"),
    ("avg_ex", {"samples": 2**40}, "method 'avg_ex': parameter 'samples' must be an integer"),
    ("pgd_ex", {"steps": 10**5000}, "parameter 'steps' must be an integer of magnitude below 2**31, got an integer of"),
    ("pgd_ex", {"clip_min": 10**5000}, "method 'pgd_ex': parameter 'clip_min' must be a number or none"),
    ("avg_ex", {"eps": -math.inf}, "method 'avg_ex': parameter 'eps' must be a finite number"),
    ("ibp_ex", {"kappa_end": math.inf}, "method 'ibp_ex': parameter 'kappa_end' must be a finite number"),
    ("ibp_ex", {"clip_min": math.nan}, "method 'ibp_ex': parameter 'clip_min' must be a finite number, -inf or inf"),
    ("pgd_ex", {"clip_max": "nan"}, "method 'pgd_ex': parameter 'clip_max' must be a number or none"),
    ("pgd_ex", {"clip_max": -math.inf}, "method 'pgd_ex': clip_max=-inf"),
    ("pgd_ex", {"warmup_epochs": math.inf}, "method 'pgd_ex': parameter 'warmup_epochs' must be a finite number"),
    ("ig_norm", {"clip_min": math.inf}, "method 'ig_norm': clip_min=inf"),
    ("pgd_ex+rrr", {"clip_min": math.nan}, "method 'pgd_ex+rrr': parameter 'clip_min'"),
    ("ibp_ex+rrr", {"eps": math.inf}, "method 'ibp_ex+rrr': parameter 'eps' must be a finite number"),
    ("group_dro", {"adjustment": math.nan}, "method 'group_dro': parameter 'adjustment' must be a finite number"),
]


@pytest.mark.parametrize("method, params, expected", METHOD_CASES, ids=[f"{m}-{next(iter(p))}-{i}" for i, (m, p, _)
                                                                          in enumerate(METHOD_CASES)])
def test_method_hyperparameters_must_be_finite_unless_declared(method, params, expected):
    with pytest.raises(UserError, match=None) as info:
        create_method(method, **params)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("method", ["ibp_ex", "pgd_ex", "ig_norm", "ig_sum_norm", "pgd_ex+rrr", "ibp_ex+rrr"])
def test_clip_ends_may_be_infinite_where_declared(method):
    m = create_method(method, clip_min=-math.inf, clip_max="inf")
    assert (m.clip_min, m.clip_max) == (-math.inf, math.inf)
    assert {"clip_min", "clip_max"} <= METHODS.get(method).infinite


def test_every_infinite_default_is_declared_and_combinations_merge_the_declarations():
    for name in METHODS.names():
        cls = METHODS.get(name)
        for key, value in cls.defaults.items():
            if isinstance(value, float) and math.isinf(value):
                assert key in cls.infinite, f"{name}.{key} defaults to {value} but is not in its `infinite`"
        create_method(name)  # the defaults themselves pass the checks
    assert METHODS.get("pgd_ex+rrr").infinite == METHODS.get("pgd_ex").infinite | METHODS.get("rrr").infinite
    assert "lam" not in METHODS.get("ibp_ex+rrr").infinite


# ------------------------------------------------------------------------------------------ data

def _x(n=6):
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(0))


def _two_classes(n=6, **kwargs):
    return ExplanationDataset(_x(n), torch.arange(n) % 2, **kwargs)


DATA_CASES = [
    (lambda: ExplanationDataset(_x(), torch.tensor([0, 1, 0, 1, 0, 1]), group=torch.tensor([0, -1, 0, 1, 0, 1])),
     "tensors: negative group id -1 (example 1)"),
    (lambda: ExplanationDataset(_x(), torch.tensor([0, 1, 0, 1, 0, 1]), group=torch.tensor([0, 1, 2, 3, 0, 1]),
                                num_groups=2), "tensors: group id 3 (example 3) out of range for num_groups=2"),
    (lambda: _two_classes(group=torch.ones(6, dtype=torch.bool)), "group must be integer group ids"),
    (lambda: _two_classes(num_classes=-1), "tensors: num_classes must be a non-negative integer, got -1"),
    (lambda: _two_classes(num_classes=True), "num_classes must be a non-negative integer, got True"),
    (lambda: _two_classes(num_classes=2.5), "num_classes must be a non-negative integer, got 2.5"),
    (lambda: _two_classes(num_groups=1.5), "num_groups must be a non-negative integer, got 1.5"),
    (lambda: ExplanationDataset(_x(), torch.tensor([0, 1, 10**9, 0, 1, 1])),
     "largest label 1000000000 would mean 1000000001 classes"),
    (lambda: _two_classes(has_mask=torch.tensor([0.5, 1, 0, 1, 0, 1])), "has_mask must be binary"),
    (lambda: _two_classes(input_range=(math.nan, 1.0)), "input_range must be numbers with low <= high"),
    (lambda: _two_classes(input_range=(1.0, 0.0)), "input_range must be numbers with low <= high"),
    (lambda: DataSplits(ExplanationDataset(_x(), torch.zeros(6, dtype=torch.long), name="mine/train"),
                        _two_classes(), _two_classes()), "mine/train: every training example has label 0"),
]


@pytest.mark.parametrize("build, expected", DATA_CASES, ids=[f"data{i}" for i in range(len(DATA_CASES))])
def test_data_that_cannot_mean_what_the_user_thinks_is_refused(build, expected):
    with pytest.raises(DataError) as info:
        build()
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_val_and_test_splits_may_lack_a_class():
    one = ExplanationDataset(_x(), torch.ones(6, dtype=torch.long), num_classes=2, name="small/test")
    splits = DataSplits(_two_classes(), one, one)
    assert splits.num_classes == 2


def test_labels_with_gaps_warn_naming_the_missing_classes():
    with pytest.warns(UserWarning, match=r"^gappy: the labels leave 3 of 6 classes without examples \(class 1, 3, 4\)"):
        data = ExplanationDataset(_x(), torch.tensor([0, 2, 5, 0, 2, 5]), name="gappy")
    assert data.num_classes == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared: no warning
        ExplanationDataset(_x(), torch.tensor([0, 2, 5, 0, 2, 5]), num_classes=6, name="declared")
        ExplanationDataset(_x(), torch.tensor([0, 1, 2, 0, 1, 2]), name="dense")


def _register(monkeypatch, name, labels, num_classes=None):
    def factory(seed=0, **options):
        def split(part):
            x = torch.rand(len(labels), 1, 2, 2, generator=torch.Generator().manual_seed(len(part)))
            return ExplanationDataset(x, torch.tensor(labels), num_classes=num_classes, name=f"{name}/{part}")

        return DataSplits(split("train"), split("val"), split("test"))

    monkeypatch.setitem(DATASETS._items, name, factory)


def test_the_cli_prints_the_gap_warning_in_one_line(tmp_path, capsys, monkeypatch):
    _register(monkeypatch, "hostile-gaps", [0, 2, 5] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code = main(["train", "--data", "hostile-gaps", "--method", "erm", "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 0, err
    gaps = [line for line in err.splitlines() if "classes without examples" in line]
    assert gaps and all(line.startswith("warning: hostile-gaps/") for line in gaps)
    assert "(class 1, 3, 4)" in gaps[0] and "Traceback" not in err


def test_the_cli_refuses_a_single_class_training_split(tmp_path, capsys, monkeypatch):
    _register(monkeypatch, "hostile-one-class", [1] * 8, num_classes=2)
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", "hostile-one-class", "--method", "erm", "--epochs", "1", "--quiet",
                     "--out", out], "hostile-one-class/train: every training example has label 1", out)


# ------------------------------------------------------------------------------------------ files

def test_read_text_and_read_json_refuse_what_is_not_a_small_regular_file(tmp_path):
    with pytest.raises(UserError, match="it is a named pipe, not a file"):
        read_json(_fifo(tmp_path), "config")
    with pytest.raises(UserError, match="cannot read results .it is a directory, not a file."):
        read_text(tmp_path, "results")
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 100 + "0]")
    with pytest.raises(UserError, match=r"big.json: cannot read metrics \(203 bytes; the limit is 100 bytes\)"):
        read_json(big, "metrics", limit=100)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000)
    with pytest.raises(UserError, match="deep.json: cannot read metrics .JSON nested too deeply."):
        read_json(deep, "metrics")
    digits = tmp_path / "digits.json"
    digits.write_text("1" * 5000)
    with pytest.raises(UserError, match="digits.json: cannot read metrics .a number in it has too many digits"):
        read_json(digits, "metrics")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"ok\x80")
    with pytest.raises(UserError, match=r"binary.txt: cannot read file \(not UTF-8 text: byte 0x80 at offset 2\)"):
        read_text(binary)
    newline = tmp_path / "a\nb.json"
    with pytest.raises(UserError) as info:
        read_json(newline)
    assert "\n" not in str(info.value) and "a\\nb.json" in str(info.value)
    assert read_json(big) == [0] * 101  # the default limit is far larger
