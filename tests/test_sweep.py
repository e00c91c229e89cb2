"""Hyperparameter sweeps: the space file and its one-line errors, a tiny sweep whose best config
`train --config` accepts, an objective that never reads the test split, and two processes sharing
one SQLite study. optuna is a test dependency: a missing optuna fails here, it is not skipped."""

import csv
import json
import os
import subprocess
import sys

import optuna  # noqa: F401  (the `test` extra installs it; fail loudly without it)
import pytest

from data_fixtures import make_idx_dir
from rightreasons.cli import main
from rightreasons.data import load_dataset
from rightreasons.data.dataset import DataSplits
from rightreasons.errors import UserError
from rightreasons.sweep import check_space, load_space, parse_space, run_sweep, sweep_data
from rightreasons.sweep import study as sweep_study
from rightreasons.train.config import TrainConfig
from rightreasons.train.run import resolved_config

SPACE = {"params.lam": {"type": "float", "low": 0.1, "high": 1000, "log": True},
         "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "epochs": {"type": "int", "low": 1, "high": 1},
         "params.target": {"type": "categorical", "choices": ["log_prob_sum", "loss"]}}


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("mnist"), n_train=300, n_test=100)[0]


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({k: v for k, v in SPACE.items() if k != "params.target"}))
    return path


def rrr_base(idx_dir=None, **changes):
    options = {"source": str(idx_dir)} if idx_dir else {}
    return resolved_config(TrainConfig(data="decoy-mnist", method="rrr", epochs=1, data_options=options, **changes))


def test_space_parses_and_gives_the_defaults_as_baseline():
    space = parse_space(SPACE)
    assert [d.key for d in space] == list(SPACE)
    lam = space[0]
    assert (lam.kind, lam.low, lam.high, lam.log) == ("float", 0.1, 1000.0, True)
    assert check_space(space, rrr_base()) == {"params.lam": 10.0, "lr": TrainConfig().lr, "epochs": 1,
                                              "params.target": "log_prob_sum"}


@pytest.mark.parametrize("raw, message", [
    ([], "expected a non-empty JSON object"),
    ({"params.lam": {"type": "float", "low": 5, "high": 1}}, "key 'params.lam': low 5.0 > high 1.0"),
    ({"params.lam": {"type": "normal", "low": 0, "high": 1}}, "key 'params.lam': type must be one of float"),
    ({"momentum": {"type": "float", "low": 0, "high": 1}}, "unknown key 'momentum'"),
    ({"seed": {"type": "int", "low": 0, "high": 3}}, "key 'seed': seed is fixed for a whole sweep"),
    ({"data_options.val": {"type": "categorical", "choices": ["train"]}}, "data_options is fixed"),
    ({"epochs": {"type": "float", "low": 1, "high": 5}}, "key 'epochs': type must be int, got float"),
    ({"epochs": {"type": "int", "low": 1.5, "high": 5}}, "key 'epochs': low must be a finite integer"),
    ({"lr": {"type": "float", "low": "a", "high": 1}}, "key 'lr': low must be a finite number"),
    ({"lr": {"type": "float", "high": 1}}, "key 'lr': missing 'low'"),
    ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "key 'lr': log scale needs low > 0"),
    ({"lr": {"type": "float", "low": 0.1, "hi": 1}}, "key 'lr': unknown setting 'hi'"),
    ({"lr": 0.1}, "key 'lr': expected an object"),
    ({"params.target": {"type": "categorical", "choices": []}}, "key 'params.target': choices must be a non-empty"),
    ({"params.target": {"type": "categorical", "choices": ["a", "a"]}}, "choices contain duplicates"),
])
def test_bad_space_is_one_line_naming_the_key(raw, message):
    with pytest.raises(UserError, match=None) as info:
        parse_space(raw, where="s.json")
    assert message in str(info.value) and str(info.value).startswith("s.json: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("raw, message", [
    ({"params.gamma": {"type": "float", "low": 0, "high": 1}}, "method 'rrr' has no parameter 'gamma'"),
    ({"params.lam": {"type": "float", "low": -1, "high": 1}}, "value -1.0 is not allowed"),
    ({"params.lam": {"type": "int", "low": 1, "high": 5}}, "type int does not fit the base value 10.0"),
    ({"params.norm": {"type": "categorical", "choices": ["squared_l2", "l7"]}}, "value 'l7' is not allowed"),
    ({"params.norm": {"type": "categorical", "choices": ["l1", "l2"]}}, "must include the base value 'squared_l2'"),
    ({"model": {"type": "categorical", "choices": ["mlp", "resnet"]}}, "unknown model 'resnet'"),
    ({"model_options.width": {"type": "int", "low": 8, "high": 64}}, "model 'mlp' has no option 'width'"),
    ({"batch_size": {"type": "int", "low": 0, "high": 64}}, "value 0 is not allowed"),
])
def test_space_checked_against_method_and_config(raw, message):
    with pytest.raises(UserError) as info:
        check_space(parse_space(raw, "s.json"), rrr_base(), where="s.json")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_space_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"lr": {"type": "float",, }}')
    with pytest.raises(UserError, match=r"bad.json: invalid JSON at line 1 column"):
        load_space(bad)
    with pytest.raises(UserError, match="cannot read search space"):
        load_space(tmp_path / "missing.json")


def test_cli_reports_a_bad_space_in_one_line(tmp_path, capsys):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"params.lam": {"type": "float", "low": 3, "high": 2}}))
    code = main(["sweep", "--data", "decoy-mnist", "--method", "rrr", "--space", str(path),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: {path}: key 'params.lam': low 3.0 > high 2.0"


class NoTest:
    """A test split that fails on any use."""

    def __getattr__(self, name):
        raise AssertionError(f"the sweep read the test split ({name})")

    def __len__(self):
        raise AssertionError("the sweep read the test split (len)")


def test_objective_never_touches_test_and_uses_a_decorrelated_val(tmp_path, idx_dir, monkeypatch):
    calls = []

    def guarded(name, seed=0, **options):
        calls.append(options)
        full = load_dataset(name, seed=seed, **options)
        return DataSplits(full.train, full.val, NoTest(), full.info)

    monkeypatch.setattr(sweep_study, "load_dataset", guarded)
    monkeypatch.setattr(sweep_study, "_DATA", {})
    result = run_sweep(rrr_base(idx_dir), parse_space(SPACE), trials=2,
                       storage=f"sqlite:///{tmp_path / 's.db'}", study_name="guarded", sampler_seed=0)
    assert calls == [{"source": str(idx_dir), "val": "decorrelated"}]  # loaded once, val de-correlated
    trials = result.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].user_attrs["baseline"] and trials[0].params["params.lam"] == 10.0
    for t in trials:
        assert t.value == t.user_attrs["val_worst_group_accuracy"]
        assert {"val_accuracy", "seconds", "pid", "config"} <= set(t.user_attrs)
        assert t.user_attrs["config"]["data_options"]["val"] == "decorrelated"
    assert "de-correlated" in result.note


def test_dataset_without_decorrelated_val_uses_its_own_and_says_so():
    base = TrainConfig(data="toy-colors", method="rrr", data_options={"n_train": 40, "n_val": 20, "n_test": 20})
    config, data, note = sweep_data(base)
    assert config.data_options == base.data_options and len(data.val) == 20 and len(data.test) == 0
    assert "toy-colors's own val split" in note


def test_tiny_sweep_writes_a_best_config_train_accepts(tmp_path, idx_dir, space_file, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", "decoy-mnist", "--data-option", f"source={idx_dir}", "--method", "rrr",
            "--space", str(space_file), "--trials", "3", "--epochs", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "validation: de-correlated split" in stdout and "best: trial" in stdout and "(defaults:" in stdout
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 3 and rows[0]["baseline"] == "True" and float(rows[0]["params.lam"]) == 10.0
    best = max(rows, key=lambda r: (float(r["value"]), -int(r["number"])))
    config = json.loads((out / "best_config.json").read_text())
    assert config["params"]["lam"] == pytest.approx(float(best["params.lam"]))
    assert config["lr"] == pytest.approx(float(best["lr"]))
    assert config["data_options"]["val"] == "decorrelated" and config["epochs"] == 1 and config["threads"] is None
    assert float(best["value"]) >= float(rows[0]["value"])

    assert main(["train", "--config", str(out / "best_config.json"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == config

    # joining the study with other settings is refused; with the same ones it adds trials
    assert main(args + ["--param", "norm=l1"]) == 2
    assert "was started with a different config.params" in capsys.readouterr().err
    assert main(args[:-1] + ["--trials", "1", "--quiet"]) == 0
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 4


def test_two_processes_share_one_sqlite_study(tmp_path, idx_dir, space_file):
    db = tmp_path / "shared.db"
    env = {**os.environ, "RIGHTREASONS_CACHE": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "rightreasons", "sweep", "--data", "decoy-mnist", "--data-option", f"source={idx_dir}",
         "--method", "rrr", "--space", str(space_file), "--trials", "2", "--epochs", "1", "--threads", "1",
         "--storage", f"sqlite:///{db}", "--study", "shared", "--out", str(tmp_path / f"out{i}"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path) for i in range(2)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    pids = [t.user_attrs["pid"] for t in trials]
    assert sorted(set(pids)) == sorted(p.pid for p in procs) and all(pids.count(p.pid) == 2 for p in procs)
    assert any(t.user_attrs.get("baseline") for t in trials)
    assert not (tmp_path / "out0" / "study.db").exists()  # --storage took the study elsewhere
