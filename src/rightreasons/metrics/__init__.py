"""Metrics: accuracy and group accuracies, explanation-in-mask shares, robustness under masked attacks,
the robustness report (PGD accuracy and attribution robustness at one radius)."""

from .accuracy import accuracy_metrics, group_accuracies
from .evaluate import evaluate, predict
from .rationale import rationale_agreement, token_saliency
from .robust import ibp_certified_accuracy, masked_pgd_accuracy, robust_metrics
from .robustness import robustness_report
from .saliency import MaskShareAccumulator, mask_share
from .token_replacement import token_replacement

__all__ = ["MaskShareAccumulator", "accuracy_metrics", "evaluate", "group_accuracies", "ibp_certified_accuracy",
           "mask_share", "masked_pgd_accuracy", "predict", "rationale_agreement", "robust_metrics", "robustness_report",
           "token_replacement", "token_saliency"]
