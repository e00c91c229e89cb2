"""Pure, differentiable primitives that methods and metrics are built from (each with invariant tests)."""

from .contextual_decomposition import contextual_decomposition
from .input_gradients import input_gradients, log_prob_sum, logit_sum
from .integrated_gradients import integrated_gradients
from .modes import eval_mode, train_mode

__all__ = ["contextual_decomposition", "eval_mode", "input_gradients", "integrated_gradients", "log_prob_sum", "logit_sum", "train_mode"]
