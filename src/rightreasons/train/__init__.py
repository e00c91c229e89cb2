"""Training: the config, the loop, and whole runs saved as directories."""

from .config import TrainConfig
from .run import RunOutput, build_model, load_run, run_training, save_run
from .trainer import NonFiniteLossError, TrainResult, fit

__all__ = ["NonFiniteLossError", "RunOutput", "TrainConfig", "TrainResult", "build_model", "fit", "load_run",
           "run_training", "save_run"]
