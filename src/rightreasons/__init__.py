"""rightreasons: learning from explanations.

Train PyTorch classifiers with per-example masks (1 = a shortcut feature to ignore) so they are right
for the right reasons, and audit whether a model relies on the masked region.
"""

from .batch import Batch
from .data import DataSplits, ExplanationDataset, load_dataset
from .errors import DataError, UserError
from .ops.contextual_decomposition import contextual_decomposition
from .ops.integrated_gradients import integrated_gradients

__version__ = "0.1.0"

__all__ = ["Batch", "DataError", "DataSplits", "ExplanationDataset", "UserError", "contextual_decomposition", "integrated_gradients", "load_dataset"]
