"""Metrics: accuracy and group accuracies, explanation-in-mask shares, robustness under masked attacks."""

from .accuracy import accuracy_metrics, group_accuracies
from .evaluate import evaluate, predict
from .saliency import MaskShareAccumulator, mask_share

__all__ = ["MaskShareAccumulator", "accuracy_metrics", "evaluate", "group_accuracies", "mask_share", "predict"]
