"""What a sweep writes beside its study: ``trials.csv`` (one row per trial) and ``best_config.json``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..files import atomic_write_json, atomic_write_text
from .study import best_trial

CSV_ATTRS = ("val_worst_group_accuracy", "val_accuracy", "seconds", "selected_epoch", "baseline", "pid", "host",
             "error")


def trials_csv(study, keys: list[str]) -> str:
    """The study's trials as CSV: number, state, value, the recorded attributes and the searched values."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["number", "state", "value", *CSV_ATTRS[1:], *keys])
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                         *(attrs.get(a, "") for a in CSV_ATTRS[1:]), *(t.params.get(k, "") for k in keys)])
    return buf.getvalue()


def write_outputs(study, out: Path, keys: list[str]):
    """trials.csv always; best_config.json once a trial has completed (``threads`` reset to null: it
    belongs to the machine that trains, not to the configuration). Returns the best trial."""
    atomic_write_text(Path(out) / "trials.csv", trials_csv(study, keys))
    best = best_trial(study)
    if best is not None:
        atomic_write_json(Path(out) / "best_config.json", {**best.user_attrs["config"], "threads": None})
    return best
