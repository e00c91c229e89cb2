"""rightreasons: learning from explanations.

Train PyTorch classifiers with per-example masks (1 = a shortcut feature to ignore) so they are right
for the right reasons, and audit whether a model relies on the masked region.
"""

from .audit import audit
from .batch import Batch
from .data import DataSplits, ExplanationDataset, load_dataset
from .errors import DataError, UserError
from .methods import (
                      CDEP,
                      ERM,
                      RRR,
                      AvgEx,
                      Certainty,
                      FeatureKL,
                      GroupDRO,
                      IbpEx,
                      IbpExRRR,
                      IGNorm,
                      IGSumNorm,
                      LossOutput,
                      Madry,
                      Method,
                      PgdEx,
                      PgdExRRR,
                      StepContext,
                      combine,
                      create_method,
)
from .metrics import evaluate
from .models import create_model
from .ops.contextual_decomposition import contextual_decomposition
from .ops.input_gradients import input_gradients
from .ops.integrated_gradients import integrated_gradients
from .ops.interval_bounds import interval_bounds, margin_bounds, mask_box
from .ops.masked_pgd import masked_pgd
from .train import TrainConfig, fit, load_run, run_training, save_run

__version__ = "0.1.0"

__all__ = ["CDEP", "ERM", "RRR", "AvgEx", "Batch", "Certainty", "DataError", "DataSplits", "ExplanationDataset",
           "FeatureKL", "GroupDRO", "IGNorm", "IGSumNorm", "IbpEx", "IbpExRRR", "LossOutput", "Madry", "Method",
           "PgdEx", "PgdExRRR", "StepContext", "TrainConfig", "UserError", "audit", "combine",
           "contextual_decomposition", "create_method", "create_model", "evaluate", "fit", "input_gradients",
           "integrated_gradients", "interval_bounds", "load_dataset", "load_run", "margin_bounds", "mask_box",
           "masked_pgd", "run_training", "save_run"]
