"""Run directories under bad inputs and faults: every failure is one line (``error: ...``, exit 2, or 130 for
Ctrl-C) and leaves every file the user had byte-identical (the files of the old run are hashed before and
after). Covers --overwrite (the old run stays until the new one is complete), the lock (a second process is
refused), --resume (nothing to resume, fewer epochs, another config), a full disk and a file-size limit,
bench runs with broken metrics, the manifest (run.json), code named by a run (--trust-code), non-finite
weights, strict JSON and file permissions, and runs written before the manifest existed."""

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rightreasons.cli import main
from rightreasons.train import run as run_module
from rightreasons.train.checkpoint import latest_checkpoint, load_checkpoint
from rightreasons.train.config import TrainConfig
from rightreasons.train.run import RunOutput, load_run, read_finished_run, run_training, save_run

SMALL = ["--data-option", "n_train=300", "--data-option", "n_val=60", "--data-option", "n_test=100"]
BASE = ["--data", "toy-colors", "--method", "erm", "--threads", "1", "--quiet", *SMALL]
#: a run that takes long enough to be interrupted (killed before it ends)
SLOW = ["--data", "toy-colors", "--method", "rrr", "--threads", "1", "--quiet", "--epochs", "5000",
        "--data-option", "n_train=2000", "--data-option", "n_val=20", "--data-option", "n_test=20"]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (hidden ones too): sha256 of files, "dir" for directories."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def refused(capsys, code, *needles, exit_code=2):
    """The command failed with exit ``exit_code`` and one line ``error: ...`` containing ``needles``."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert code == exit_code, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def train(out, *extra):
    return main(["train", *BASE, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A finished 2-epoch run (with checkpoints and manifest), and an old-style one (no manifest)."""
    root = tmp_path_factory.mktemp("templates")
    assert train(root / "run", "--epochs", "2") == 0
    old = root / "old"
    shutil.copytree(root / "run", old)
    (old / "run.json").unlink()  # what a run written before manifests looks like
    return root


@pytest.fixture
def run(template, tmp_path):
    shutil.copytree(template / "run", tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def old_run(template, tmp_path):
    shutil.copytree(template / "old", tmp_path / "old")
    return tmp_path / "old"


def spawn(*args, wrapper=None):
    cmd = [sys.executable, *(wrapper or ["-m", "rightreasons"]), *map(str, args)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc, timeout=60):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def staged_checkpoint(out):
    return lambda: any((p / "checkpoints" / "latest").exists() for p in out.glob(".staging-*"))


# ---------------------------------------------------------------------------------------------------- 1. --overwrite


@pytest.mark.parametrize("extra, message", [
    (["--data-option", "n_train=-1"], "n_train"),                      # bad data option: before anything
    (["--model", "nope"], "unknown model 'nope'"),                      # bad model: after the lock
    (["--model", "cnn", "--model-option", "channels=x"], "model"),      # a factory that refuses its options
])
def test_a_failed_overwrite_leaves_the_old_run_byte_identical(run, capsys, extra, message):
    before = snapshot(run)
    refused(capsys, train(run, "--overwrite", "--epochs", "1", *extra), message)
    assert snapshot(run) == before


def exploding(monkeypatch, at_step):
    """Methods built by run_training whose loss becomes infinite from step ``at_step`` on."""
    real = run_module.create_method

    def create(name, **params):
        method = real(name, **params)
        original = method.penalties

        def penalties(model, batch, x, logits, ctx):
            terms = dict(original(model, batch, x, logits, ctx) or {})
            if ctx.step >= at_step:
                terms["boom"] = torch.tensor(math.inf)
            return terms

        method.penalties = penalties
        return method

    monkeypatch.setattr(run_module, "create_method", create)


def test_non_finite_loss_during_an_overwrite_keeps_the_old_run(run, capsys, monkeypatch):
    before = snapshot(run)
    exploding(monkeypatch, at_step=3)  # after the first epoch's checkpoint (2 steps per epoch here)
    refused(capsys, train(run, "--overwrite", "--epochs", "2", "--batch-size", "150"), "non-finite loss")
    assert snapshot(run) == before


def test_a_full_disk_while_saving_keeps_the_old_run(run, capsys, monkeypatch):
    before = snapshot(run)
    real = run_module.write_synced

    def full(path, data, exclusive=False):
        if path.name == "metrics.json":
            raise OSError(28, "No space left on device")
        real(path, data, exclusive)

    monkeypatch.setattr(run_module, "write_synced", full)
    refused(capsys, train(run, "--overwrite", "--epochs", "1"), "metrics.json", "No space left on device",
            "left as it was")
    assert snapshot(run) == before


def test_a_successful_overwrite_replaces_the_run_and_keeps_the_users_own_files(run, capsys):
    old_config = json.loads((run / "config.json").read_text())
    (run / "notes.txt").write_text("mine")
    assert train(run, "--overwrite", "--epochs", "1", "--seed", "3") == 0
    assert (run / "notes.txt").read_text() == "mine"
    (run / "notes.txt").unlink()
    config = json.loads((run / "config.json").read_text())
    assert (old_config["seed"], config["seed"], config["epochs"]) == (0, 3, 1)
    assert latest_checkpoint(run / "checkpoints").name == "epoch-0001"
    assert load_checkpoint(latest_checkpoint(run / "checkpoints"))["meta"]["config"]["seed"] == 3
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "metrics.json",
                                                     "model.safetensors", "run.json"]
    read_finished_run(run)


def test_files_deleted_while_training(run, capsys, monkeypatch):
    real_fit = run_module.fit

    def fit_then(action):
        def fit(*args, **kwargs):
            result = real_fit(*args, **kwargs)
            action()
            return result
        return fit

    # the old run's config.json deleted during an overwrite: the new run is complete all the same
    monkeypatch.setattr(run_module, "fit", fit_then(lambda: (run / "config.json").unlink()))
    assert train(run, "--overwrite", "--epochs", "1", "--seed", "4") == 0
    assert read_finished_run(run)[0]["seed"] == 4
    # the staging directory deleted during an overwrite: one line, the run as it was
    before = snapshot(run)
    monkeypatch.setattr(run_module, "fit", fit_then(lambda: [shutil.rmtree(p) for p in run.glob(".staging-*")]))
    refused(capsys, train(run, "--overwrite", "--epochs", "1", "--seed", "5"), "cannot write the run",
            "No such file or directory", "left as it was")
    assert snapshot(run) == before
    # the checkpoints deleted during a resume, after epoch 2 of 3: written again after epoch 3
    def fit(*args, **kwargs):
        kwargs["log"] = lambda line: line.startswith("epoch 2/") and shutil.rmtree(run / "checkpoints")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(run_module, "fit", real_fit)
    assert train(run, "--overwrite", "--epochs", "1") == 0
    monkeypatch.setattr(run_module, "fit", fit)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--quiet"]) == 0
    assert read_finished_run(run)[0]["epochs"] == 3 and latest_checkpoint(run / "checkpoints").name == "epoch-0003"
    # and deleted by hand afterwards: nothing to resume, said so
    shutil.rmtree(run / "checkpoints")
    refused(capsys, main(["train", "--out", str(run), "--resume", "--epochs", "4"]), "nothing to resume")


def test_ctrl_c_during_an_overwrite_keeps_the_old_run(run):
    before = snapshot(run)
    proc = spawn("train", *SLOW, "--overwrite", "--out", run)
    wait_for(staged_checkpoint(run), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() in ("error: aborted", "error: interrupted"), err
    assert snapshot(run) == before


def test_a_second_process_is_refused_and_a_killed_overwrite_leaves_the_old_run(run, capsys):
    before = snapshot(run)
    proc = spawn("train", *SLOW, "--overwrite", "--out", run)
    try:
        wait_for(staged_checkpoint(run), proc)
        # class 2: the second writer is refused in one line (also with --overwrite and --resume)
        refused(capsys, train(run, "--overwrite", "--epochs", "1"), str(run), "another process (pid", "using")
        refused(capsys, train(run, "--resume", "--epochs", "3"), "another process")
        assert main(["evaluate", str(run), "--no-robust", "--json"]) == 0  # reading the old run still works
    finally:
        proc.kill()
        proc.wait()
    capsys.readouterr()
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k in before} == before  # every old file as it was
    # and what the killed process left: its staging directory and its (now unlocked) lock file
    assert all(k.startswith(".staging-") or k == ".rightreasons.lock" for k in set(after) - set(before)), after
    assert train(run, "--resume", "--epochs", "3") == 0  # the lock died with the process; staging removed
    assert not any(p.name.startswith(".") for p in run.iterdir())
    assert [h["epoch"] for h in read_finished_run(run)[1]["history"]] == [1, 2, 3]


# ---------------------------------------------------------------------------------------------------- 3. --resume


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "1"], "has done 2 epochs; cannot resume to 1"),               # fewer epochs than done
    ([], "nothing to resume: the run has finished all 2 epochs"),               # already finished
    (["--epochs", "2"], "nothing to resume: the run has finished all 2 epochs"),
    (["--data-option", "n_train=200", "--epochs", "3"], "different data_options; cannot resume"),
    (["--data", "decoy-mnist", "--epochs", "3"], "different data; cannot resume"),  # another --data
    (["--method", "rrr", "--epochs", "3"], "different method, params; cannot resume"),
    (["--overwrite"], "--resume and --overwrite contradict each other"),
])
def test_resume_refusals_leave_the_run_alone(run, capsys, extra, message):
    before = snapshot(run)
    refused(capsys, main(["train", "--out", str(run), "--resume", "--quiet", *extra]), message)
    assert snapshot(run) == before


def test_resume_with_nothing_to_resume(tmp_path, old_run, capsys):
    refused(capsys, main(["train", "--out", str(tmp_path / "new"), "--resume"]), "nothing to resume (no checkpoint")
    assert not (tmp_path / "new").exists()
    shutil.rmtree(old_run / "checkpoints")  # a run saved without checkpoints (bench, demo)
    before = snapshot(old_run)
    refused(capsys, main(["train", "--out", str(old_run), "--resume", "--epochs", "3"]), "nothing to resume")
    assert snapshot(old_run) == before


def test_resume_trains_on_and_repairs_a_deleted_config(run, capsys):
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--quiet"]) == 0
    assert [h["epoch"] for h in read_finished_run(run)[1]["history"]] == [1, 2, 3]
    weights = (run / "model.safetensors").read_bytes()
    (run / "config.json").unlink()  # deleted by hand: the run is incomplete, evaluate says so
    refused(capsys, main(["evaluate", str(run)]), "missing config.json")
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0  # writes the run from its checkpoint
    assert (run / "model.safetensors").read_bytes() == weights
    assert json.loads((run / "config.json").read_text())["epochs"] == 3


def test_bad_checkpoint_pointers_metadata_and_files(run, template, capsys):
    (run / "checkpoints" / "latest").write_text("../../elsewhere\n")
    before = snapshot(run)
    refused(capsys, main(["train", "--out", str(run), "--resume", "--epochs", "3"]), "not a checkpoint directory")
    (run / "checkpoints" / "latest").write_text("epoch-0002\n")
    (run / "checkpoints" / "epoch-0002" / "meta.json").write_text("[1, 2]")
    before = snapshot(run)
    refused(capsys, main(["train", "--out", str(run), "--resume", "--epochs", "3"]), "not a rightreasons checkpoint")
    assert snapshot(run) == before
    shutil.copy(template / "run" / "checkpoints" / "epoch-0002" / "meta.json", run / "checkpoints" / "epoch-0002")
    flip_last_byte(run / "checkpoints" / "epoch-0002" / "state.pt")
    before = snapshot(run)
    refused(capsys, main(["train", "--out", str(run), "--resume", "--epochs", "3"]), "state.pt: sha256 mismatch")
    assert snapshot(run) == before


# ---------------------------------------------------------------------------------------------------- 4. full disk


LIMITED = textwrap.dedent("""
    import resource, runpy, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG instead
    limit = int(sys.argv.pop(1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv[0] = "rightreasons"
    runpy.run_module("rightreasons", run_name="__main__")
""")


@pytest.fixture
def limited(tmp_path):
    script = tmp_path / "limited.py"
    script.write_text(LIMITED)
    return lambda limit, *args: subprocess.run([sys.executable, str(script), str(limit), *map(str, args)], env=ENV,
                                               capture_output=True, text=True, timeout=120)


def test_file_size_limit_during_a_checkpoint_keeps_the_last_good_one(run, limited):
    before = snapshot(run)
    proc = limited(100_000, "train", "--out", run, "--resume", "--epochs", "3", "--quiet")  # state.pt is larger
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, proc.stderr
    assert line.startswith(f"error: {run / 'checkpoints' / 'epoch-0003'}: cannot write the checkpoint (File too "
                           "large); the latest checkpoint is still epoch-0002"), line
    assert snapshot(run) == before  # no temporary directory left, epoch-0002 untouched
    load_checkpoint(latest_checkpoint(run / "checkpoints"))


def test_file_size_limit_during_an_overwrite_and_a_bench_save(run, tmp_path, limited):
    before = snapshot(run)
    proc = limited(100_000, "train", *BASE, "--out", run, "--overwrite", "--epochs", "1")
    assert proc.returncode == 2 and "File too large" in proc.stderr and len(proc.stderr.splitlines()) == 1, \
        proc.stderr
    assert snapshot(run) == before
    # a run saved without checkpoints (the bench worker): model.safetensors (72 kB) hits a 50 kB limit
    config = json.loads((run / "config.json").read_text())
    bench_run = tmp_path / "bench-run"
    shutil.copytree(run, bench_run)
    before = snapshot(bench_run)
    proc = subprocess.run([sys.executable, "-c", LIMITED.replace('runpy.run_module("rightreasons"',
                                                                 'runpy.run_module("rightreasons.bench.worker"'),
                           "50000", str(bench_run), json.dumps(config)], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {bench_run / 'model.safetensors'}: cannot write the run (File too large)"), last
    assert snapshot(bench_run) == before


# ---------------------------------------------------------------------------------------------------- 5. bench


def test_bench_redoes_a_run_with_broken_metrics_and_never_drops_it(tmp_path, capsys):
    from rightreasons.bench.harness import run_state
    from rightreasons.bench.plan import plan_runs
    from rightreasons.bench.results import collect_rows

    out = tmp_path / "b"
    argv = ["bench", "--data", "toy-colors", "--methods", "erm", "--seeds", "1", "--epochs", "1", "--threads", "1",
            "--no-report", "--out", str(out), *[x for o in SMALL[1::2] for x in ("--data-option", o)]]
    assert main(argv) == 0
    run_dir = out / "runs" / "toy-colors-erm-seed0"
    (spec,) = plan_runs(out, ["toy-colors"], ["erm"], [0], TrainConfig(epochs=1, data_options={
        "n_train": 300, "n_val": 60, "n_test": 100}), threads=1)
    assert run_state(spec) == "finished"
    good = (run_dir / "metrics.json").read_bytes()
    for broken in (b"[1, 2]", b"{not json", b'{"test": 3}', b'{"val": {}}', b"\xff\xfe"):
        (run_dir / "metrics.json").write_bytes(broken)
        assert run_state(spec) == "todo", broken
        with pytest.warns(UserWarning, match="toy-colors-erm-seed0: left out of results.csv"):
            assert collect_rows(out) == []
    (run_dir / "metrics.json").write_bytes(good)
    flipped = bytearray((run_dir / "model.safetensors").read_bytes())
    flipped[-1] ^= 1
    (run_dir / "model.safetensors").write_bytes(bytes(flipped))
    assert run_state(spec) == "todo"  # does not match the manifest: redone
    (run_dir / "metrics.json").write_bytes(b"[1, 2]")
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 finished, 1 to do" in capsys.readouterr().err
    assert run_state(spec) == "finished" and len(collect_rows(out)) == 1
    assert (out / "results.csv").read_text().count("\n") == 2
    # a run directory that is a file: one line, not a traceback
    other = argv[:argv.index("--seeds")] + ["--seeds", "2"] + argv[argv.index("--seeds") + 2:]
    (out / "runs" / "toy-colors-erm-seed1").write_text("not a run")
    refused(capsys, main(other + ["--quiet"]), "toy-colors-erm-seed1: exists and is not a directory")
    (out / "runs" / "toy-colors-erm-seed1").unlink()
    # a redo of a run with another config (--overwrite) that fails leaves the old run as it was
    before, log = snapshot(run_dir), (run_dir / "train.log").read_text()
    assert main(argv + ["--overwrite", "--data-option", "annotate=sideways"]) == 2
    assert "FAILED toy-colors-erm-seed0" in capsys.readouterr().err
    after = snapshot(run_dir)
    assert {k: v for k, v in after.items() if k != "train.log"} == {k: v for k, v in before.items() if k != "train.log"}
    assert (run_dir / "train.log").read_text().startswith(log)  # the failed redo's log is appended


def test_the_demo_retrains_a_run_with_broken_metrics(run):
    from rightreasons.demo import _finished

    config = TrainConfig.load(run / "config.json")
    assert _finished(run, config)
    (run / "metrics.json").write_text("[1, 2]")
    assert not _finished(run, config)


# ---------------------------------------------------------------------------------------------------- 6-8. reading


def rewrite_manifest(run_dir):
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["files"] = {n: hashlib.sha256((run_dir / n).read_bytes()).hexdigest() for n in manifest["files"]}
    (run_dir / "run.json").write_text(json.dumps(manifest))


def flip_last_byte(path):
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def set_weight(run_dir, value):
    state = load_file(run_dir / "model.safetensors")
    state[next(iter(state))].view(-1)[0] = value
    save_file(state, run_dir / "model.safetensors")


def truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


MISMATCH = "model.safetensors: cannot read weights (its sha256 does not match run.json"


@pytest.mark.parametrize("damage, message", [
    (lambda d: flip_last_byte(d / "model.safetensors"), MISMATCH),
    (lambda d: truncate(d / "model.safetensors"), MISMATCH),
    (lambda d: (d / "config.json").write_text((d / "config.json").read_text().replace('"lr": 0.003', '"lr": 0.3')),
     "config.json: cannot read config (its sha256 does not match"),
    (lambda d: (d / "model.safetensors").unlink(), "missing model.safetensors"),
    (lambda d: (d / "config.json").unlink(), "missing config.json"),
    (lambda d: (d / "run.json").write_text("[1, 2]"), "run.json: not a rightreasons run manifest"),
    (lambda d: (d / "run.json").write_text("{half"), "run.json: invalid JSON"),
    (lambda d: (d / "run.json").write_text('{"format": 99, "files": {}}'), "written by a newer rightreasons"),
    (lambda d: (d / "run.json").write_text('{"format": 1, "files": {"../../etc/passwd": "00"}}'), "bad entry"),
    (lambda d: (set_weight(d, math.nan), rewrite_manifest(d)), "weights that are not finite (NaN or inf in"),
    (lambda d: (set_weight(d, math.inf), rewrite_manifest(d)), "not finite"),
    (lambda d: ((d / "config.json").write_text("[1]"), rewrite_manifest(d)), "expected a JSON object"),
    (lambda d: ((d / "model.safetensors").unlink(), (d / "model.safetensors").mkdir()),
     "model.safetensors: not a regular file"),
])
@pytest.mark.parametrize("command", ["evaluate", "audit"])
def test_damaged_runs_are_refused_in_one_line(run, capsys, damage, message, command):
    damage(run)
    before = snapshot(run)
    refused(capsys, main([command, str(run), "--json"] + (["--no-robust"] if command == "evaluate" else [])),
            message)
    assert snapshot(run) == before


@pytest.mark.parametrize("damage, message", [
    (lambda d: truncate(d / "model.safetensors"), "model.safetensors: cannot read weights"),
    (lambda d: set_weight(d, math.nan), "not finite"),
    (lambda d: (d / "config.json").write_text('{"data": "toy-colors", "bogus": 1}'), "unknown field 'bogus'"),
])
def test_damaged_old_style_runs_are_refused_too(old_run, capsys, damage, message):
    damage(old_run)
    refused(capsys, main(["evaluate", str(old_run), "--no-robust"]), message)


def test_run_dir_that_is_a_file_or_missing(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    refused(capsys, main(["evaluate", str(tmp_path / "f")]), "not a directory")
    refused(capsys, main(["train", *BASE, "--out", str(tmp_path / "f")]), "is a file")
    assert (tmp_path / "f").read_text() == "mine"
    refused(capsys, main(["audit", str(tmp_path / "nowhere")]), "no such run directory")


EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\ndef make(*a, **k):\n    raise SystemExit(7)\n"


def test_code_named_by_a_run_is_not_imported_without_trust_code(run, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_models.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    for path in (run / "config.json", run / "checkpoints" / "epoch-0002" / "meta.json"):
        raw = json.loads(path.read_text())
        (raw.get("config", raw))["model"] = "evil_models:make"
        path.write_text(json.dumps(raw))
    rewrite_manifest(run)
    before = snapshot(run)
    for argv in (["evaluate", str(run)], ["audit", str(run), "--json"],
                 ["explain", str(run), "--out", str(tmp_path / "x.png")],
                 ["train", "--out", str(run), "--resume", "--epochs", "3"]):
        refused(capsys, main(argv), str(run), "'evil_models:make'", "--trust-code")
    with pytest.raises(Exception, match="trust_code=True"):
        load_run(run)
    assert not marker.exists() and snapshot(run) == before
    refused(capsys, main(["evaluate", str(run), "--trust-code"]), "evil_models:make")  # trusted: imported
    assert marker.exists() and "evil_models" in sys.modules
    del sys.modules["evil_models"]


# ---------------------------------------------------------------------------------------------------- 9. output


def strict_loads(text):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict(run, capsys):
    assert main(["evaluate", str(run), "--json", "--data-option", "annotate=none"]) == 0  # no masks: NaN shares
    shown = strict_loads(capsys.readouterr().out)
    assert shown["mask_gradient_share"] is None and isinstance(shown["accuracy"], float)
    assert main(["audit", str(run), "--json", "--data-option", "annotate=none", "--steps", "2", "--draws", "1"]) == 0
    shown = strict_loads(capsys.readouterr().out)
    assert shown["verdict"] == "cannot_audit"


def test_files_get_the_users_permissions(tmp_path):
    mask = os.umask(0o007)
    try:
        assert train(tmp_path / "r", "--epochs", "1") == 0
        assert train(tmp_path / "r", "--epochs", "1", "--overwrite", "--seed", "1") == 0  # staged, then moved
    finally:
        os.umask(mask)
    entries = [tmp_path / "r", *(tmp_path / "r").rglob("*")]
    assert any(p.name == "epoch-0001" for p in entries) and any(p.name == "model.safetensors" for p in entries)
    for path in entries:
        assert path.stat().st_mode & 0o777 == (0o770 if path.is_dir() else 0o660), path


# ---------------------------------------------------------------------------------------------------- hostile --out


def test_hostile_run_directories(run, tmp_path, capsys):
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "pipe")
    odd = shutil.copytree(run, tmp_path / "odd")
    (odd / "config.json").unlink()
    (odd / "config.json").symlink_to(tmp_path / "fifo" / "pipe")  # reading it would block forever
    refused(capsys, main(["evaluate", str(odd)]), "config.json: not a regular file")
    (odd / "config.json").unlink()
    shutil.copy(run / "config.json", odd / "config.json")
    (odd / ".commit-zz").mkdir()  # an interrupted update that cannot be finished: said, not guessed at
    (odd / ".commit-zz" / ".plan.json").write_text("[")
    refused(capsys, main(["evaluate", str(odd)]), ".commit-zz: an interrupted update", "move")
    refused(capsys, train(odd, "--overwrite", "--epochs", "1"), ".commit-zz: an interrupted update")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    refused(capsys, train(tmp_path / "dangling", "--epochs", "1"), "a symbolic link to", "which does not exist")
    refused(capsys, main(["train", *BASE, "--out", ""]), "--out is empty")
    # checkpoints that are a file: refused without flags, replaced by --overwrite
    shutil.rmtree(odd / ".commit-zz")
    shutil.rmtree(odd / "checkpoints")
    (odd / "checkpoints").write_text("not a directory")
    refused(capsys, train(odd, "--epochs", "1"), "already holds a run")
    refused(capsys, main(["train", "--out", str(odd), "--resume"]), "nothing to resume")
    assert train(odd, "--epochs", "1", "--overwrite") == 0
    assert latest_checkpoint(odd / "checkpoints").name == "epoch-0001"


def test_out_inside_a_runs_checkpoints_or_staging(run, capsys):
    before = snapshot(run)
    for out in (run / "checkpoints", run / "checkpoints" / "epoch-0002", run / "checkpoints" / "new",
                run / ".staging-x"):
        refused(capsys, train(out, "--epochs", "1"), "is inside", "choose an --out of its own")
        refused(capsys, train(out, "--epochs", "1", "--overwrite"), "is inside")
    assert snapshot(run) == before
    (run.parent / "latest").write_text("a file of the user's own, not a checkpoint pointer")
    assert train(run.parent / "mine", "--epochs", "1") == 0


def test_an_existing_run_is_refused_without_flags(run, old_run, capsys):
    for directory in (run, old_run):
        before = snapshot(directory)
        refused(capsys, train(directory, "--epochs", "1"), "already holds a run")
        assert snapshot(directory) == before


def test_an_update_killed_after_its_commit_is_finished_by_the_next_reader(run, capsys, monkeypatch):
    model, config, data = load_run(run)
    monkeypatch.setattr(run_module, "finish_commit", lambda out, commit: None)  # "killed" right after the rename
    torch.nn.init.zeros_(next(model.parameters()))
    save_run(run, RunOutput(model, config.replace(seed=11), {"test": {}}, data))
    monkeypatch.undo()
    assert any(p.name.startswith(".commit-") for p in run.iterdir())
    assert load_run(run)[1].seed == 11  # rolled forward, then verified against the new manifest
    assert not any(p.name.startswith(".") for p in run.iterdir())


# ---------------------------------------------------------------------------------------------------- old runs


def test_old_style_runs_load_evaluate_resume_and_are_overwritten(old_run, tmp_path, capsys):
    _, config, _ = load_run(old_run)
    assert config.epochs == 2
    assert main(["evaluate", str(old_run), "--no-robust", "--json"]) == 0
    capsys.readouterr()
    kept = shutil.copytree(old_run, tmp_path / "kept")
    refused(capsys, train(kept, "--overwrite", "--epochs", "1", "--data-option", "annotate=sideways"), "annotate")
    assert snapshot(kept) == snapshot(old_run)
    assert main(["train", "--out", str(old_run), "--resume", "--epochs", "3", "--quiet"]) == 0
    assert (old_run / "run.json").is_file() and read_finished_run(old_run)[0]["epochs"] == 3
    assert train(kept, "--overwrite", "--epochs", "1") == 0
    assert read_finished_run(kept)[0]["epochs"] == 1


def test_library_save_run_refuses_non_finite_weights(tmp_path):
    config = TrainConfig(data="toy-colors", method="erm", epochs=1, threads=1,
                         data_options={"n_train": 100, "n_val": 20, "n_test": 20})
    output = run_training(config)
    torch.nn.init.constant_(next(output.model.parameters()), math.nan)
    with pytest.raises(Exception, match="not saved: the trained weights are not finite"):
        save_run(tmp_path / "r", output)
    assert not (tmp_path / "r").exists()


def test_an_old_runs_extra_files_go_with_it_but_files_of_the_users_own_stay(run, capsys):
    model, config, data = load_run(run)
    output = RunOutput(model, config, {"test": {}}, data)
    save_run(run, output, extra={"train_mask.safetensors": b"mask one"})  # as find-another saves its runs
    assert (run / "train_mask.safetensors").read_bytes() == b"mask one"
    save_run(run, output)  # the new run has no such file: the old run's goes
    assert not (run / "train_mask.safetensors").exists()
    save_run(run, output, extra={"train_mask.safetensors": b"mask two"})
    (run / "train_mask.safetensors").write_bytes(b"edited by the user")
    (run / "notes.txt").write_text("mine")
    save_run(run, output)
    assert (run / "train_mask.safetensors").read_bytes() == b"edited by the user"
    assert (run / "notes.txt").read_text() == "mine"
    read_finished_run(run)


def test_links_planted_in_a_run_directory_are_never_written_through(run, tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file")
    (run / ".rightreasons.lock").symlink_to(precious)  # a downloaded run could hold this
    refused(capsys, train(run, "--resume", "--epochs", "3"), ".rightreasons.lock: a symbolic link")
    (run / ".rightreasons.lock").unlink()
    os.link(precious, run / ".rightreasons.lock")
    refused(capsys, train(run, "--overwrite", "--epochs", "1"), "not a lock file of rightreasons (a hard link)")
    (run / ".rightreasons.lock").unlink()
    assert precious.read_text() == "the user's own file"
    other = shutil.copytree(run / "checkpoints", tmp_path / "other-checkpoints")
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").symlink_to(other)  # resuming would write and prune another run's checkpoints
    before = snapshot(other)
    refused(capsys, train(run, "--resume", "--epochs", "3"), "checkpoints: a symbolic link")
    assert snapshot(other) == before
    assert train(run, "--overwrite", "--epochs", "1") == 0  # replaces the link, not what it points to
    assert snapshot(other) == before and not (run / "checkpoints").is_symlink()
