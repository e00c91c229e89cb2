"""The main job in one call: ERM and RRR on Decoy-MNIST beside the clean-MNIST oracle.

Runs whose directory already holds metrics for the same config are reused, so the demo can be
interrupted and re-run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from .errors import UserError
from .train.config import TrainConfig
from .train.run import read_finished_run, read_metrics, resolved_config, run_training, save_run

#: (row label, dataset, method) of the demo table
DEMO_RUNS = (
    ("ERM on Decoy-MNIST", "decoy-mnist", "erm"),
    ("RRR on Decoy-MNIST", "decoy-mnist", "rrr"),
    ("Oracle: ERM on clean MNIST", "mnist", "erm"),
)


def run_demo(out: str | Path = "runs/demo", seed: int = 0, epochs: Optional[int] = None,
             log: Optional[Callable[[str], None]] = None, progress: bool = False) -> list[dict]:
    """Train (or reuse) the three demo runs under ``out`` and return one row of test metrics each."""
    rows = []
    for label, data, method in DEMO_RUNS:
        config = TrainConfig(data=data, method=method, seed=seed)
        if epochs is not None:
            config = config.replace(epochs=epochs)
        config = resolved_config(config)
        run_dir = Path(out) / f"{data}-{method}-seed{seed}"
        if _finished(run_dir, config):
            metrics = read_metrics(run_dir)
            if log:
                log(f"{label}: reusing {run_dir}")
        else:
            if log:
                log(f"{label}: training -> {run_dir}")
            output = run_training(config, log=log, progress=progress)
            save_run(run_dir, output)
            metrics = output.metrics
        rows.append({"run": label, "dir": str(run_dir), "accuracy": metrics["test"]["accuracy"],
                     "worst_group_accuracy": metrics["test"]["worst_group_accuracy"],
                     "mask_gradient_share": metrics["test"].get("mask_gradient_share"),
                     "train_seconds": metrics["train_seconds"]})
    return rows


def _finished(run_dir: Path, config: TrainConfig) -> bool:
    try:
        saved, _ = read_finished_run(run_dir)
    except UserError:  # missing, unreadable, invalid or not matching its manifest: train it again
        return False
    return saved == config.to_dict()
