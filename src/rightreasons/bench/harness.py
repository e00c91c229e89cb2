"""The benchmark harness: every (dataset, method, seed, and value of each axis) in its own process and run
directory.

``DIR/runs/<dataset>-<method>-seed<k>[-threads<n>][-KEY=VALUE...]/`` is written by :mod:`rightreasons.bench.worker` with
``save_run``. A run is finished when its config.json equals the resolved config (the thread count aside)
and its files are complete and valid (metrics.json a run's metrics, every file matching the manifest);
finished runs are never redone, so an interrupted benchmark resumes, and a run with a missing, unreadable
or invalid file is redone (its old files stay until the redo has saved the new ones).
A finished run with a different config is an error unless ``overwrite``. After every run,
``DIR/results.csv`` and ``DIR/summary.md`` are rebuilt from all finished run directories.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import UserError
from ..files import atomic_write_json, read_json
from ..train.config import TrainConfig, with_field_defaults
from ..train.run import read_finished_run

MARKER = "bench.json"
#: config fields that may differ between a finished run and the plan without redoing it
IGNORED_FIELDS = ("threads",)


@dataclass
class RunSpec:
    config: TrainConfig
    dir: Path
    axes: dict = field(default_factory=dict)  #: axis key -> the value label of this run (bench --axis)

    @property
    def name(self) -> str:
        return self.dir.name


def expand_methods(names: Sequence[str]) -> list[str]:
    """Method names, with ``mask`` = erm + every registered method that reads masks, ``all`` = every one."""
    from ..methods import METHODS

    out: list[str] = []
    for name in names:
        if name in ("mask", "all"):
            picked = ["erm"] + [m for m in METHODS.names() if name == "all" or METHODS.get(m).uses_mask]
        else:
            METHODS.get(name)  # unknown names: one-line UserError naming the known ones
            picked = [name]
        out += picked
    return list(dict.fromkeys(out))


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _comparable(config: dict) -> dict:
    return {k: v for k, v in with_field_defaults(config).items() if k not in IGNORED_FIELDS}


def run_state(spec: RunSpec) -> str:
    """``finished``, ``todo`` (nothing, an incomplete run, or one whose files are unreadable, invalid or do not
    match its manifest: redone) or ``conflict`` (finished, other config)."""
    return _state(spec)[0]


def _state(spec: RunSpec) -> tuple[str, str]:
    """(state, why it is not finished)."""
    if not (spec.dir / "metrics.json").exists():
        return "todo", "no metrics.json"
    try:
        saved = read_json(spec.dir / "config.json", "run config")
    except UserError as exc:  # missing or unreadable: the run never got that far
        return "todo", str(exc)
    if not isinstance(saved, dict):
        return "todo", f"{spec.dir / 'config.json'}: not a JSON object"
    if _comparable(saved) != _comparable(spec.config.to_dict()):
        return "conflict", "a finished run with a different config"
    try:
        read_finished_run(spec.dir)
    except UserError as exc:  # e.g. metrics.json that is not JSON, or not a run's metrics: redone
        return "todo", str(exc)
    return "finished", ""


def prepare_out(out: str | Path, invocation: dict) -> Path:
    """Create ``out`` (refusing a non-empty directory that is not a benchmark) and write its marker."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UserError(f"{out}: not empty and not a benchmark directory (no {MARKER}); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MARKER, {"tool": "rightreasons bench", **invocation})
    return out


def _kill_with_parent() -> None:  # runs in the child before exec (Linux): die if the harness dies
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start(spec: RunSpec) -> tuple[subprocess.Popen, object]:
    if spec.dir.exists() and not spec.dir.is_dir():
        raise UserError(f"{spec.dir}: exists and is not a directory (a run directory of this benchmark expected)")
    spec.dir.mkdir(parents=True, exist_ok=True)  # the old run stays until save_run replaces it, all at once
    log = open(spec.dir / "train.log", "a")  # appended: the log of the run a failed redo leaves in place stays
    threads = str(spec.config.threads or available_cores())
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    cmd = [sys.executable, "-m", "rightreasons.bench.worker", str(spec.dir), json.dumps(spec.config.to_dict())]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                            preexec_fn=_kill_with_parent if sys.platform.startswith("linux") else None)
    return proc, log


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def estimate_seconds_left(durations: Sequence[tuple[str, float]], methods_left: Sequence[str], jobs: int) -> float:
    """Wall seconds the runs of ``methods_left`` will take, ``jobs`` at a time: each at the mean of its
    method's finished runs, or at the mean of all finished runs for a method not seen yet."""
    overall = sum(d for _, d in durations) / len(durations)
    by_method: dict[str, list[float]] = {}
    for method, seconds in durations:
        by_method.setdefault(method, []).append(seconds)
    total = sum(sum(by_method[m]) / len(by_method[m]) if m in by_method else overall for m in methods_left)
    return total / jobs


def run_bench(specs: Sequence[RunSpec], jobs: int = 1, overwrite: bool = False,
              log: Optional[Callable[[str], None]] = None,
              on_finish: Optional[Callable[[RunSpec], None]] = None) -> dict:
    """Run every unfinished spec, ``jobs`` at a time. Returns counts and the failed runs (a failed run
    is reported and the others go on; after a user error, exit code 2, the remaining seeds and thread counts
    of that dataset, method and data options (axis values) are skipped, as they would fail alike)."""
    log = log or (lambda line: None)
    states = {s.name: run_state(s) for s in specs}
    conflicts = [s for s in specs if states[s.name] == "conflict"]
    if conflicts and not overwrite:
        raise UserError(f"{conflicts[0].dir}: holds a finished run with a different config "
                        f"({len(conflicts)} such run(s)); pass --overwrite to redo them or choose another --out")
    todo = [s for s in specs if states[s.name] != "finished"]
    log(f"{len(specs)} runs: {len(specs) - len(todo)} finished, {len(todo)} to do ({jobs} at a time)")
    active: list[tuple[RunSpec, subprocess.Popen, object, float]] = []
    failed: list[tuple[str, str]] = []
    done, durations, queue = 0, [], list(todo)
    try:
        while queue or active:
            while queue and len(active) < jobs:
                spec = queue.pop(0)
                proc, fh = _start(spec)
                active.append((spec, proc, fh, time.perf_counter()))
                log(f"start  {spec.name}")
            time.sleep(0.1)
            for item in list(active):
                spec, proc, fh, started = item
                if proc.poll() is None:
                    continue
                active.remove(item)
                fh.close()
                done += 1
                seconds = time.perf_counter() - started
                state, unfinished = _state(spec)
                if proc.returncode != 0 or state != "finished":
                    why = _last_line(spec.dir / "train.log").removeprefix("error: ") if proc.returncode else (
                        "trained, but with a config other than the planned one (did the method's defaults change "
                        "while the benchmark ran?); run the benchmark again with --overwrite to redo it"
                        if state == "conflict" else f"trained, but the run directory is not complete: {unfinished}")
                    failed.append((spec.name, why))
                    log(f"FAILED {spec.name} (exit {proc.returncode}): {why} [{spec.dir / 'train.log'}]")
                    if proc.returncode == 2:  # a user error: the other seeds of these settings would fail alike
                        same = [q for q in queue if _settings(q) == _settings(spec)]
                        queue = [q for q in queue if q not in same]
                        failed += [(q.name, f"skipped after {spec.name} failed") for q in same]
                    continue
                durations.append((spec.config.method, seconds))
                eta = estimate_seconds_left(durations, [q.config.method for q in queue]
                                            + [a[0].config.method for a in active], jobs)
                log(f"[{done}/{len(todo)}] {spec.name}: {_brief(spec.dir)}, {seconds:.0f}s; "
                    f"about {eta / 60:.1f} min left")
                if on_finish is not None:
                    on_finish(spec)
    finally:
        for _spec, proc, _fh, _ in active:  # interrupted: stop the runs in flight (they stay unfinished)
            proc.terminate()
        for _spec, proc, fh, _ in active:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            fh.close()
    return {"planned": len(specs), "ran": len(todo) - len(failed), "reused": len(specs) - len(todo), "failed": failed}


def _settings(spec: RunSpec) -> tuple:
    """What a user error of a run depends on: dataset, method and data options (so another axis value runs)."""
    return spec.config.data, spec.config.method, json.dumps(spec.config.data_options, sort_keys=True, default=str)


def model_for(method: str, model: str) -> str:
    """The model a method is benchmarked on: ``model``, or its split version (``mlp`` -> ``split-mlp``, ...)
    for a method whose class sets ``needs_split_model``."""
    from ..methods import METHODS
    from ..models import split_version

    return split_version(model) if getattr(METHODS.get(method), "needs_split_model", False) else model


def _brief(run_dir: Path) -> str:
    """One line of a finished run's test numbers and peak memory; "done" if metrics.json lacks them."""
    try:
        metrics = read_json(run_dir / "metrics.json", "run metrics")
        test = metrics["test"]
        return (f"worst-group {test['worst_group_accuracy']:.3f}, accuracy {test['accuracy']:.3f}, "
                f"peak {metrics.get('peak_memory_mb', float('nan')):.0f} MB")
    except (UserError, AttributeError, KeyError, TypeError, ValueError):
        return "done"
