"""One benchmark run in its own process: ``python -m rightreasons.bench.worker RUN_DIR CONFIG_JSON``.

Trains as the config says, then writes the run directory with ``save_run`` (metrics.json last, so a
run is finished exactly when metrics.json exists). metrics.json gains ``wall_seconds`` (data loading,
training and evaluation) and ``peak_memory_mb`` (this process's peak resident set size, so one run's
memory never hides another's) and ``train_annotated`` (the training examples with a mask, after the data
options' mask budget: what an ``--axis annotated_count=...`` run trained with). Exit codes: 0 done, 2 user
error (the other seeds of these settings would fail alike), 3 non-finite loss, 1 a bug.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_memory_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def annotated_count(train) -> int | None:
    """How many examples of the training split have a mask (``has_mask``); None when it does not say."""
    has_mask = getattr(train, "has_mask", None)
    try:
        return int(has_mask.sum())
    except (AttributeError, TypeError, RuntimeError):
        return None


def main(argv: list[str]) -> int:
    from ..errors import UserError
    from ..train.config import TrainConfig
    from ..train.run import run_lock, run_training, save_run
    from ..train.trainer import NonFiniteLossError

    if len(argv) != 2:
        print("usage: python -m rightreasons.bench.worker RUN_DIR CONFIG_JSON", file=sys.stderr)
        return 2
    run_dir, config_json = argv
    start = time.perf_counter()
    try:
        config = TrainConfig.from_dict(json.loads(config_json), where="bench config")
        with run_lock(run_dir):  # a second benchmark on the same directory is refused, not interleaved
            output = run_training(config, log=lambda line: print(line, file=sys.stderr, flush=True))
            output.metrics["wall_seconds"] = time.perf_counter() - start
            output.metrics["peak_memory_mb"] = peak_memory_mb()
            output.metrics["train_annotated"] = annotated_count(output.data.train)
            save_run(run_dir, output)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
