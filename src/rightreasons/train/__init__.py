"""Training: the config, the loop, and whole runs saved as directories."""

from .config import TrainConfig
from .overrides import apply_overrides, parse_assignments
from .run import RunOutput, build_model, load_run, load_run_on, run_training, save_run
from .trainer import NonFiniteLossError, TrainResult, fit

__all__ = ["NonFiniteLossError", "RunOutput", "TrainConfig", "TrainResult", "apply_overrides", "build_model", "fit",
           "load_run", "load_run_on", "parse_assignments", "run_training", "save_run"]
