"""Find-another-explanation (Ross, Hughes & Doshi-Velez, IJCAI 2017, §4.2): without annotations,
train a sequence of models that are accurate for different reasons.

Model 1 is trained as usual. Model k is trained with RRR (or another mask-reading method) whose
per-example mask is the union of the previous models' largest input gradients on that training
example, A_k = A_0 | B_1 | ... | B_{k-1},  B_j = { i : |d s_j(x)/dx_i| > threshold * max |d s_j(x)/dx| }
(threshold 0.67 as in Ross et al.; A_0 = the data's own masks, usually empty). So each model is
pushed off the features its predecessors relied on. On Toy Colors the first model learns the corner
rule and the second the top-middle rule (see :mod:`.toy_colors_rules` for the diagnostics).

Measured with ``rightreasons find-another --data toy-colors --data-option annotate=none --models 3``
(seed 0, defaults: RRR lam 10, 15 epochs, Adam 3e-3 cosine, MLP 75-100-100-2; test accuracy, then
conflict-set accuracy of the corner / top-middle rule): model 1 uses the corners (1.000; 0.998 / 0.502),
model 2 the top-middle pixels (0.999; 0.501 / 0.998, gradient share on the corners 0.008), model 3 goes
back to the corners (0.957; 0.950 / 0.492): masks are per example and per colour channel, so corner
channels outside the earlier models' top sets stay usable (Ross et al. saw their third model fail to
learn). (The earlier defaults, 784-50-30-10-style MLP 75-50-30-2 for 30 epochs, gave the same rules.)

This is a sequence of trainings, not one loss, so it is not a registered method: use
:func:`find_another_explanation` or ``rightreasons find-another``.
"""

from .core import (FindAnotherModel, find_another_explanation, save_find_another, summary_row, top_gradient_masks,
                   write_summary)
from .toy_colors_rules import rule_report, toy_colors_conflict_set

__all__ = ["FindAnotherModel", "find_another_explanation", "rule_report", "save_find_another", "summary_row",
           "top_gradient_masks", "toy_colors_conflict_set", "write_summary"]
