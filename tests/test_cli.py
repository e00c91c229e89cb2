"""The command line, run as a user runs it (a subprocess for the end-to-end path, in-process for the
error cases): outputs written, config reusable, and every user error one line with exit code 2."""

import json
import os
import subprocess
import sys

import pytest

from data_fixtures import make_idx_dir
from rightreasons.cli import main


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("mnist"), n_train=300, n_test=100)[0]


def run_cli(*args, cwd=None):
    env = {**os.environ, "RIGHTREASONS_CACHE": str(cwd or "."), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "rightreasons", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_train_evaluate_and_reuse_config_end_to_end(tmp_path, idx_dir):
    out = tmp_path / "run"
    proc = run_cli("train", "--data", "decoy-mnist", "--data-option", f"source={idx_dir}", "--method", "rrr",
                   "--param", "lam=20", "--epochs", "2", "--out", out, "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "rrr on decoy-mnist: test accuracy" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["params"]["lam"] == 20.0 and config["params"]["target"] == "log_prob_sum"
    assert config["epochs"] == 2 and config["data_options"] == {"source": str(idx_dir)}
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"test", "val", "train_seconds"}
    assert set(metrics["test"]) >= {"accuracy", "worst_group_accuracy", "mean_group_accuracy", "group_accuracy",
                                    "mask_gradient_share", "wrong_reason", "masked_pgd_accuracy",
                                    "ibp_certified_accuracy"}
    assert metrics["test"]["robust_eps"] == 1.0  # the whole [0, 1] range by default
    assert 0 <= metrics["test"]["ibp_certified_accuracy"] <= metrics["test"]["masked_pgd_accuracy"] \
        <= metrics["test"]["accuracy"]
    assert (out / "model.safetensors").stat().st_size > 0

    again = tmp_path / "again"
    proc = run_cli("train", "--config", out / "config.json", "--out", again, "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((again / "config.json").read_text()) == config
    assert json.loads((again / "metrics.json").read_text())["test"] == metrics["test"]  # same seed, same run

    proc = run_cli("evaluate", out, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert shown["masked_pgd_accuracy"] == pytest.approx(metrics["test"]["masked_pgd_accuracy"])
    proc = run_cli("evaluate", out, "--json", "--eps", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)  # a box of radius 0 is the point x: both equal the clean accuracy
    assert shown["robust_eps"] == 0 and shown["masked_pgd_accuracy"] == pytest.approx(shown["accuracy"])
    assert shown["ibp_certified_accuracy"] <= shown["accuracy"] + 1e-6
    proc = run_cli("evaluate", out, "--data", "mnist", "--data-option", f"source={idx_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "worst_group_accuracy" in proc.stdout


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("decoy-mnist", "decoy-mnist-half", "toy-colors", "mlp", "cnn", "erm", "rrr", "lam=10.0"):
        assert name in out
    line = next(line for line in out.splitlines() if line.startswith("default model (--model auto): mlp; "))
    assert "decoy-mnist-half: cnn-strided" in line and "decoy-bbc: text-cnn" in line
    line = next(line for line in out.splitlines() if line.startswith("default epochs: 15; "))
    assert "decoy-mnist-half: 20" in line and "decoy-bbc: 10" in line
    # defaults print as --param takes them back
    assert "clip_min=none" in out and "clip_max=-inf" not in out and "clip_max=inf" in out and "None" not in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--method", "nope", "--out", "{tmp}/o"], "'nope' is not one of 'avg_ex'"),
        (["train", "--data", "nope", "--out", "{tmp}/o"], "unknown dataset 'nope'"),
        (["train", "--model", "nope", "--out", "{tmp}/o", "--data-option", "source={idx}"], "unknown model 'nope'"),
        (["train", "--param", "lam=big", "--out", "{tmp}/o"], "parameter 'lam' must be float"),
        (["train", "--param", "lam", "--out", "{tmp}/o"], "expected KEY=VALUE"),
        (["train", "--param", "eta=1", "--out", "{tmp}/o"], "has no parameter 'eta'"),
        (["train", "--param", "lam=-1", "--out", "{tmp}/o"], "outside"),
        (["train", "--config", "{tmp}/missing.json", "--out", "{tmp}/o"], "cannot read config"),
        (["train", "--epochs", "0", "--out", "{tmp}/o"], "'--epochs': 0 is not in the range x>=1"),
        (["train", "--data-option", "val=sideways", "--out", "{tmp}/o", "--data-option", "source={idx}"], "val"),
        (["train", "--data-option", "source={tmp}/nowhere", "--out", "{tmp}/o"], "nowhere"),
        (["evaluate", "{tmp}/no-such-run"], "no such run directory"),
        (["train", "--bogus"], "No such option"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, idx_dir, capsys, args, message):
    args = [a.format(tmp=tmp_path, idx=idx_dir) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_existing_run_is_not_overwritten(tmp_path, idx_dir, capsys):
    args = ["train", "--method", "erm", "--epochs", "1", "--quiet", "--data-option", f"source={idx_dir}",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(args[:-2] + ["--seed", "5", "--out", str(tmp_path / "run")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    assert main(args + ["--seed", "5", "--overwrite"]) == 0
    assert (tmp_path / "run" / "model.safetensors").read_bytes() != before


def test_resume_continues_from_the_checkpoint_and_refuses_a_changed_config(tmp_path, idx_dir):
    out = tmp_path / "run"
    base = ["--data-option", f"source={idx_dir}", "--method", "rrr", "--out", out]
    proc = run_cli("train", *base, "--epochs", "2", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "checkpoints" / "latest").read_text().strip() == "epoch-0002"
    proc = run_cli("train", *base, "--epochs", "3", cwd=tmp_path)  # without --resume: refused
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    proc = run_cli("train", "--out", out, "--resume", "--lr", "0.1", cwd=tmp_path)
    assert proc.returncode == 2 and "different lr; cannot resume" in proc.stderr
    proc = run_cli("train", "--out", out, "--resume", "--epochs", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming after epoch 2" in proc.stderr and "epoch 3/3" in proc.stderr and "epoch 1/3" not in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
