"""Checkpoint selection rules, and what each would have kept.

A run keeps the weights of one epoch (``TrainConfig.select``):

- ``last``: the last epoch;
- ``val_accuracy`` / ``val_worst_group_accuracy``: the first epoch with the highest score on the validation
  split (which carries the training data's shortcut);
- ``val_broken_accuracy`` / ``val_broken_worst_group_accuracy``: the same on the validation split with the
  shortcut broken inside its masks (``data.shortcut_break``).

None of them looks at test. With ``compare_selections`` the trainer also records every rule's score and the
test split's accuracy and worst-group accuracy in each epoch's history record (``test_*``, never read by
a rule), and :func:`selection_outcomes` reads from that history which epoch each rule keeps and what it
scores on test: one training run answers "which rule would have served me best" without retraining. With
``ema_decay`` every rule reads the averaged weights, and ``last_unaveraged`` reports what the last epoch's
own weights score on test (what the same run without averaging would have kept).
"""

from __future__ import annotations

import math
from typing import Optional

from .config import SELECTIONS

#: the test metrics recorded per epoch with ``compare_selections``
TEST_KEYS = ("test_accuracy", "test_worst_group_accuracy")
#: with ``ema_decay`` as well: the test metrics of the weights themselves (TEST_KEYS are the average's)
RAW_TEST_KEYS = ("test_raw_accuracy", "test_raw_worst_group_accuracy")
#: the outcome of the last epoch's own weights, reported beside the rules when the weights are averaged
UNAVERAGED = "last_unaveraged"


def uses_broken_validation(select: str) -> bool:
    """Whether rule ``select`` scores epochs on the validation split with the shortcut broken."""
    return select.startswith("val_broken_")


def is_better(score: float, best: float) -> bool:
    """Whether an epoch scoring ``score`` replaces the best so far (``best``; -inf before the first): strictly
    higher, so ties keep the earliest epoch, and NaN never wins."""
    return not math.isnan(score) and score > best


def chosen_epoch(history: list[dict], select: str) -> Optional[int]:
    """The epoch (1-based) rule ``select`` keeps among the records of ``history``: the last one for ``last``,
    else the first with the highest value of the rule's key; None when no record has that key."""
    if not history:
        return None
    if select == "last":
        return history[-1]["epoch"]
    best, epoch = -math.inf, None
    for record in history:
        score = record.get(select)
        if isinstance(score, (int, float)) and is_better(float(score), best):
            best, epoch = float(score), record["epoch"]
    return epoch


def selection_outcomes(history: list[dict]) -> dict[str, dict]:
    """rule -> {"epoch": the epoch it keeps, "score": its value there (absent for ``last``), and the test
    metrics recorded in that epoch (TEST_KEYS)}, for every rule in SELECTIONS whose score the history holds;
    and ``last_unaveraged`` -> the last epoch and its RAW_TEST_KEYS (as TEST_KEYS) when the history has them."""
    by_epoch = {record["epoch"]: record for record in history}
    out = {}
    for rule in SELECTIONS:
        epoch = chosen_epoch(history, rule)
        if epoch is None:
            continue
        record = by_epoch[epoch]
        entry = {"epoch": epoch} if rule == "last" else {"epoch": epoch, "score": record[rule]}
        entry.update({key: record[key] for key in TEST_KEYS if key in record})
        out[rule] = entry
    if history and all(key in history[-1] for key in RAW_TEST_KEYS):
        last = history[-1]
        out[UNAVERAGED] = {"epoch": last["epoch"], **{key: last[raw] for key, raw in zip(TEST_KEYS, RAW_TEST_KEYS)}}
    return out
