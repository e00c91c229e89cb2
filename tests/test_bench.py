"""The bench harness on tiny synthetic MNIST: one row per run, summary numbers equal to statistics
computed here from results.csv, resume without redoing finished runs, and resume after a kill."""

import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import pytest

from data_fixtures import make_idx_dir
from rightreasons.cli import main
from rightreasons.report import bench
from rightreasons.train import TrainConfig

RUNS = [f"decoy-mnist-{m}-seed{s}" for m in ("erm", "rrr") for s in (0, 1)]


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("mnist"), n_train=200, n_test=60)[0]


@pytest.fixture(autouse=True)
def no_real_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path / "cache"))


def bench_args(out, idx_dir, *extra):
    return ["bench", "--data", "decoy-mnist", "--methods", "erm,rrr", "--seeds", "2", "--epochs", "1",
            "--data-option", f"source={idx_dir}", "--out", str(out), "--no-report", "--threads", "1", *extra]


def mtimes(out):
    return {str(p): p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*")) if p.is_file()}


def parse_pm(cell):
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)(?: ± (\d+(?:\.\d+)?))?", cell.strip())
    assert m, cell
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None)


def test_bench_results_summary_and_resume(tmp_path, idx_dir, capsys):
    out = tmp_path / "bench"
    assert main(bench_args(out, idx_dir, "--jobs", "2")) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == RUNS

    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {(r["method"], r["seed"]) for r in rows} == {(m, s) for m in ("erm", "rrr") for s in "01"}
    for col in ("dataset", "method", "seed", "test_accuracy", "test_worst_group_accuracy", "test_mean_group_accuracy",
                "test_macro_accuracy", "test_mask_gradient_share", "val_accuracy", "val_worst_group_accuracy",
                "test_group_accuracy", "train_seconds", "wall_seconds", "peak_memory_mb", "params"):
        assert all(r[col] != "" for r in rows), col
    for r in rows:
        metrics = json.loads((out / "runs" / r["run"] / "metrics.json").read_text())
        assert float(r["test_accuracy"]) == metrics["test"]["accuracy"]
        assert 50 < float(r["peak_memory_mb"]) < 1500

    # summary.md: every mean and std equals what we compute here from results.csv
    text = (out / "summary.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| erm") or line.startswith("| rrr")]
    assert len(table) == 2
    head = next(line for line in text.splitlines() if line.startswith("| method"))
    header = [h.strip() for h in head.split("|")[1:-1]]
    for line in table:
        cells = dict(zip(header, [c.strip() for c in line.split("|")[1:-1]]))
        mine = [r for r in rows if r["method"] == cells["method"]]
        assert int(cells["runs"]) == 2
        for col, name, decimals in (("test_worst_group_accuracy", "worst-group acc.", 3),
                                    ("test_accuracy", "accuracy", 3), ("train_seconds", "train s", 1),
                                    ("peak_memory_mb", "peak MB", 0)):
            values = [float(r[col]) for r in mine]
            mean, std = parse_pm(cells[name])
            assert mean == pytest.approx(round(statistics.fmean(values), decimals), abs=1e-9)
            assert std == pytest.approx(round(statistics.stdev(values), decimals), abs=1e-9)
    assert text.index("worst-group acc.") < text.index("| accuracy")

    # resume: nothing redone, files untouched
    before = mtimes(out)
    capsys.readouterr()
    assert main(bench_args(out, idx_dir)) == 0
    assert "4 finished, 0 to do" in capsys.readouterr().err
    assert mtimes(out) == before

    # a finished run with another config is never silently replaced
    assert main(bench_args(out, idx_dir, "--param", "rrr.lam=5")) == 2
    assert "different config" in capsys.readouterr().err
    assert mtimes(out) == before


def workers_of(out, timeout):
    """Processes whose command line names ``out`` (waiting up to ``timeout`` s for them to go)."""
    deadline = time.time() + timeout
    while True:
        alive = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if str(out).encode() in fh.read():
                        alive.append(int(pid))
            except OSError:
                pass
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.1)


def test_kill_midway_then_resume(tmp_path, idx_dir):
    out = tmp_path / "bench"
    env = {**os.environ, "RIGHTREASONS_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "rightreasons", *bench_args(out, idx_dir, "--jobs", "1", "--methods", "erm")]
    runs = RUNS[:2]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "runs" / RUNS[0] / "metrics.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the harness dies without any cleanup; its run in flight follows
    proc.wait()
    assert first.exists()
    assert not workers_of(out, timeout=15), "a run kept going after the harness was killed"
    done_before = {r for r in runs if (out / "runs" / r / "metrics.json").exists()}
    assert done_before != set(runs), "the benchmark finished before it could be interrupted"
    stamp = first.stat().st_mtime_ns
    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "1 finished, 1 to do" in finished.stderr
    assert all((out / "runs" / r / "metrics.json").exists() for r in runs)
    assert first.stat().st_mtime_ns == stamp
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2


def test_plan_and_method_sets(tmp_path):
    from rightreasons.methods import METHODS

    mask = bench.expand_methods(["mask"])
    assert mask[0] == "erm" and "rrr" in mask and "certainty" not in mask
    assert all(m == "erm" or METHODS.get(m).uses_mask for m in mask)
    assert sorted(bench.expand_methods(["all"])) == sorted(METHODS.names())
    specs = bench.plan_runs(tmp_path, ["decoy-mnist"], ["erm", "rrr"], range(2), TrainConfig(epochs=1),
                            params={"rrr": {"lam": 3}}, threads=1)
    assert [s.name for s in specs] == RUNS
    assert specs[2].config.params["lam"] == 3.0 and specs[2].config.params["target"] == "log_prob_sum"
    assert all(bench.run_state(s) == "todo" for s in specs)
    if "feature_kl" in METHODS.names():  # needs a split model: trained on the split version of the model
        (spec,) = bench.plan_runs(tmp_path, ["decoy-mnist"], ["feature_kl"], [0], TrainConfig(epochs=1))
        assert spec.config.model == "split-mlp"
        (spec,) = bench.plan_runs(tmp_path, ["decoy-mnist-half"], ["feature_kl"], [0], TrainConfig(epochs=1))
        assert spec.config.model == "split-cnn-strided"


def test_auto_model_is_resolved_per_dataset_in_the_plan(tmp_path):
    specs = bench.plan_runs(tmp_path, ["decoy-mnist", "decoy-mnist-half"], ["erm"], [0], TrainConfig(epochs=1))
    assert [s.config.model for s in specs] == ["mlp", "cnn-strided"]
    specs = bench.plan_runs(tmp_path, ["decoy-mnist", "decoy-mnist-half"], ["erm"], [0], TrainConfig(model="cnn"))
    assert [s.config.model for s in specs] == ["cnn", "cnn"]
    assert [s.config.epochs for s in specs] == [15, 20]  # unset epochs: each dataset's default


def test_a_failing_run_is_reported_and_its_other_seeds_skipped(tmp_path, capsys):
    out = tmp_path / "b"
    argv = ["bench", "--data", "toy-colors", "--methods", "erm", "--seeds", "2", "--data-option", "n_train=-1",
            "--out", str(out), "--threads", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "FAILED toy-colors-erm-seed0" in err and "n_train" in err
    assert err.strip().splitlines()[-1].startswith("error: 2 run(s) failed")
    assert not (out / "runs" / "toy-colors-erm-seed1").exists()


@pytest.mark.parametrize("args, message", [
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--data", "nope"], "unknown dataset 'nope'"),
    (["--preset", "nope"], "'nope' is not one of 'chen2019', 'chen2019-full', 'heo2023', 'ross2017'"),
    (["--param", "cdep.lam=1"], "'cdep' is not one of the methods"),
    (["--param", "eta=1"], "no method of this benchmark has a parameter 'eta'"),
    (["--param", "rrr.lam=-1"], "outside"),
])
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    options = {"--data": "decoy-mnist", "--methods": "erm,rrr", "--out": str(tmp_path / "b")}
    options.update(dict(zip(args[::2], args[1::2])))
    assert main(["bench", *[x for kv in options.items() for x in kv], "--no-report"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b" / "runs").exists()


def test_refuses_a_foreign_directory(tmp_path, idx_dir, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(bench_args(out, idx_dir)) == 2
    assert "not a benchmark directory" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_summary_statistics_nan_and_single_runs():
    from rightreasons.report.summary import render_markdown, summarize

    nan = float("nan")
    rows = [{"dataset": "d", "method": "a", "test_worst_group_accuracy": 0.5, "test_mask_gradient_share": nan},
            {"dataset": "d", "method": "a", "test_worst_group_accuracy": 0.7, "test_mask_gradient_share": 0.2},
            {"dataset": "d", "method": "b", "test_worst_group_accuracy": 0.9}]
    summary = summarize(rows)["d"]
    assert [m.method for m in summary] == ["b", "a"]  # best worst-group first
    a = summary[1].stats
    assert a["test_worst_group_accuracy"].mean == pytest.approx(0.6)
    assert a["test_worst_group_accuracy"].std == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert a["test_mask_gradient_share"].n == 1 and a["test_mask_gradient_share"].mean == 0.2  # NaN left out
    assert a["test_worst_group_accuracy_min"].mean == 0.5
    assert summary[0].stats["test_worst_group_accuracy_min"].mean == 0.9
    text = render_markdown({"d": summary})
    assert "| b | 1 | 0.900 | 0.900 | n/a |" in text and "| a | 2 | 0.600 ± 0.141 | 0.500 | n/a |" in text


@pytest.mark.parametrize("name", ["ross2017", "heo2023"])
def test_presets_plan_their_comparison(name, tmp_path, capsys):
    from rightreasons.methods import METHODS
    from rightreasons.report.presets import get_preset

    preset = get_preset(name)
    assert preset.notes and all(n.startswith(("paper", "ours")) for n in preset.notes)
    out = tmp_path / "p"
    assert main(["bench", "--preset", name, "--out", str(out), "--dry-run", "--seeds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {line.split()[1] for line in lines if line.startswith("todo")}
    assert names == {f"{d}-{m}-seed0" for d in preset.datasets for m in preset.methods if m in METHODS.names()}
    assert lines[-1].startswith(f"rightreasons bench --preset {name}")
    assert not out.exists()


def test_preset_training_settings_reach_the_planned_configs(tmp_path, monkeypatch):
    from rightreasons.bench import plan as plan_module

    original = plan_module.plan_runs

    def plan(*args):
        captured = {}

        def spy(out, datasets, methods, seeds, base, *rest, **kw):
            captured["base"] = base
            return original(out, datasets, methods, seeds, base, *rest, **kw)

        monkeypatch.setattr(plan_module, "plan_runs", spy)
        assert main(["bench", *args, "--out", str(tmp_path / "p"), "--dry-run", "--seeds", "1"]) == 0
        return captured["base"]

    ross = plan("--preset", "ross2017")
    assert (ross.model, ross.epochs, ross.lr, ross.lr_schedule) == ("mlp-ross", 30, 1e-3, "constant")
    heo = plan("--preset", "heo2023")
    default = TrainConfig()
    assert (heo.model, heo.epochs, heo.lr, heo.lr_schedule) == (default.model, default.epochs, default.lr,
                                                                default.lr_schedule)
    mixed = plan("--preset", "ross2017", "--lr-schedule", "cosine", "--epochs", "3")  # flags override the preset
    assert (mixed.model, mixed.epochs, mixed.lr_schedule) == ("mlp-ross", 3, "cosine")


def test_time_left_uses_each_methods_own_duration():
    done = [("erm", 10.0), ("erm", 20.0), ("pgd_ex", 100.0)]
    # two pgd_ex (100 each), one erm (15), one unseen method (the overall mean, 130 / 3)
    expected = (2 * 100.0 + 15.0 + 130.0 / 3) / 2
    assert bench.estimate_seconds_left(done, ["pgd_ex", "pgd_ex", "erm", "rrr"], jobs=2) == pytest.approx(expected)
    assert bench.estimate_seconds_left(done, [], jobs=2) == 0
