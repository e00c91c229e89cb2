"""Find-another-explanation (Ross, Hughes & Doshi-Velez, IJCAI 2017, §4.2): without annotations,
train a sequence of models that are accurate for different reasons.

Model 1 is trained as usual. Model k is trained with RRR (or another mask-reading method) whose
per-example mask is the union of the previous models' largest input gradients on that training
example, A_k = A_0 | B_1 | ... | B_{k-1},  B_j = { i : |d s_j(x)/dx_i| > threshold * max |d s_j(x)/dx| }
(threshold 0.67 as in Ross et al.; A_0 = the data's own masks, usually empty). So each model is
pushed off the features its predecessors relied on. Masks are per example and per input feature (on
colour images, per colour channel). On Toy Colors, :mod:`.toy_colors_rules` reports which of the two
rules (corners, top-middle) each model uses.

Measured behaviour on Toy Colors: docs/results/method-tuning.md#find-another

This is a sequence of trainings, not one loss, so it is not a registered method: use
:func:`find_another_explanation` or ``rightreasons find-another``.
"""

from .core import (
                   FindAnotherModel,
                   find_another_explanation,
                   save_find_another,
                   summary_row,
                   top_gradient_masks,
                   write_summary,
)
from .toy_colors_rules import rule_report, toy_colors_conflict_set

__all__ = ["FindAnotherModel", "find_another_explanation", "rule_report", "save_find_another", "summary_row",
           "top_gradient_masks", "toy_colors_conflict_set", "write_summary"]
