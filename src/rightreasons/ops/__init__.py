"""Pure, differentiable primitives that methods and metrics are built from (each with invariant tests)."""

from .input_gradients import input_gradients, log_prob_sum, logit_sum
from .modes import eval_mode, train_mode

__all__ = ["eval_mode", "input_gradients", "log_prob_sum", "logit_sum", "train_mode"]
