"""Accuracy, per-group / worst-group / mean-group accuracy, and macro (class-balanced) accuracy."""

from __future__ import annotations

import math

import torch


def group_accuracies(correct: torch.Tensor, group: torch.Tensor) -> dict[int, float]:
    """Accuracy within each group that has at least one example, keyed by group id."""
    out = {}
    for g in torch.unique(group).tolist():
        sel = group == g
        out[int(g)] = correct[sel].float().mean().item()
    return out


def accuracy_metrics(pred: torch.Tensor, y: torch.Tensor, group: torch.Tensor) -> dict:
    """All label-based metrics from predictions.

    accuracy: mean over examples; group_accuracy: {group id (str): accuracy};
    worst_group_accuracy / mean_group_accuracy: min / mean over non-empty groups;
    macro_accuracy: mean over classes of per-class accuracy (recall).
    """
    correct = pred == y
    if correct.numel() == 0:
        nan = math.nan
        return {"accuracy": nan, "worst_group_accuracy": nan, "mean_group_accuracy": nan,
                "macro_accuracy": nan, "group_accuracy": {}}
    per_group = group_accuracies(correct, group)
    per_class = group_accuracies(correct, y)
    return {
        "accuracy": correct.float().mean().item(),
        "worst_group_accuracy": min(per_group.values()),
        "mean_group_accuracy": sum(per_group.values()) / len(per_group),
        "macro_accuracy": sum(per_class.values()) / len(per_class),
        "group_accuracy": {str(g): a for g, a in per_group.items()},
    }
