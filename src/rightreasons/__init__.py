"""rightreasons: learning from explanations.

Train PyTorch classifiers with per-example masks (1 = a shortcut feature to ignore) so they are right
for the right reasons, and audit whether a model relies on the masked region.
"""

from .batch import Batch
from .data import DataSplits, ExplanationDataset, load_dataset
from .errors import DataError, UserError
from .methods import Method, create_method
from .metrics import evaluate
from .models import create_model
from .ops.input_gradients import input_gradients
from .train import TrainConfig, fit, load_run, run_training, save_run
from .ops.contextual_decomposition import contextual_decomposition
from .ops.integrated_gradients import integrated_gradients
from .ops.interval_bounds import interval_bounds, margin_bounds, mask_box
from .ops.masked_pgd import masked_pgd

__version__ = "0.1.0"

__all__ = ["Batch", "DataError", "DataSplits", "ExplanationDataset", "Method", "TrainConfig", "UserError", "create_method", "create_model", "evaluate", "fit", "input_gradients", "load_run", "run_training", "save_run", "contextual_decomposition", "integrated_gradients", "load_dataset"]
__all__ += ["interval_bounds", "margin_bounds", "mask_box", "masked_pgd"]
