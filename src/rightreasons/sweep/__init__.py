"""Hyperparameter sweeps: an Optuna study maximising validation worst-group accuracy (optuna is the
optional ``sweep`` extra, imported only when a sweep runs)."""

from .space import Dimension, apply, check_space, load_space, parse_space
from .study import OBJECTIVE, Objective, baseline_trial, best_trial, run_sweep, sweep_data

__all__ = ["OBJECTIVE", "Dimension", "Objective", "apply", "baseline_trial", "best_trial", "check_space",
           "load_space", "parse_space", "run_sweep", "sweep_data"]
