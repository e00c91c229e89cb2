"""Pure, differentiable primitives that methods and metrics are built from (each with invariant tests)."""

from .contextual_decomposition import contextual_decomposition
from .input_gradients import input_gradients, log_prob_sum, logit_sum
from .integrated_gradients import integrated_gradients
from .interval_bounds import interval_bounds, margin_bounds, mask_box, masked_ibp, worst_case_logits
from .masked_pgd import masked_pgd
from .modes import eval_mode, train_mode
from .pgd import sign_pgd

__all__ = ["contextual_decomposition", "eval_mode", "input_gradients", "integrated_gradients", "log_prob_sum",
           "logit_sum", "train_mode"]
__all__ += ["interval_bounds", "margin_bounds", "mask_box", "masked_ibp", "masked_pgd", "sign_pgd", "worst_case_logits"]
