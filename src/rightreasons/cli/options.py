"""The command-line options shared by the commands that train (train, sweep, find-another, bench), declared
once, with their choices taken from the registries and the config's constants."""

from __future__ import annotations

from typing import Callable

import click

from ..data.augment import PRESETS as AUGMENT_PRESETS
from ..data.dataset import SPLITS
from ..methods import METHODS
from ..precision import PRECISIONS
from ..train.config import LR_SCHEDULES, ROBUSTNESS_KEYS, SELECTIONS

#: option name -> (flag declarations, click keyword arguments)
TRAINING_FLAGS: dict[str, tuple[tuple[str, ...], dict]] = {
    "data": (("--data",), dict(help="Dataset name (see `rightreasons list`), or folder:PATH / csv:PATH for your "
                                    "own data (default: decoy-mnist, or the --config's).")),
    "method": (("--method",), dict(type=click.Choice(METHODS.names()), metavar="METHOD",
                                   help=f"Method, one of {', '.join(METHODS.names())} (default: rrr, or the "
                                        "--config's; `rightreasons list` shows their parameters).")),
    "model": (("--model",), dict(help="Model name, package.module:factory for your own (the module must be "
                                      "importable, e.g. PYTHONPATH=.), or auto (default): the dataset's model "
                                      "(cnn-strided for decoy-mnist-half, else mlp; its split version for "
                                      "methods that need one).")),
    "epochs": (("--epochs",), dict(type=click.IntRange(min=1), help="Epochs to train (default: the dataset's, 20 "
                                                                      "for decoy-mnist-half, else 15).")),
    "seed": (("--seed",), dict(type=int, help="Seed of the data, initialisation and batch order (default 0).")),
    "batch_size": (("--batch-size",), dict(type=click.IntRange(min=1), help="Training batch size (default: the "
                                                                          "dataset's, 64 for decoy-mnist-half, "
                                                                          "else 256).")),
    "lr": (("--lr",), dict(type=float, help="Learning rate (default 0.003).")),
    "lr_schedule": (("--lr-schedule",), dict(type=click.Choice(LR_SCHEDULES), help="Learning rate over the run "
                                                                                 "(default cosine).")),
    "threads": (("--threads",), dict(type=click.IntRange(min=1), help="torch threads (default: OMP_NUM_THREADS, "
                                                                     "else all cores).")),
    "device": (("--device",), dict(metavar="DEVICE", help="Where to train: auto (default: a GPU when there is one, "
                                                          "else the CPU), cpu, cuda, cuda:N or mps.")),
    "precision": (("--precision",), dict(type=click.Choice(PRECISIONS), help="fp32 (default), or bf16 / fp16 "
                                                                            "autocast (fp16 with loss scaling).")),
    "select": (("--select",), dict(type=click.Choice(SELECTIONS), help="Keep the last epoch (default) or the best on "
                                                                        "the validation split (never test); "
                                                                        "val_broken_*: on it with the shortcut broken "
                                                                        "inside the masks.")),
    "val_break": (("--val-break",), dict(type=click.Choice(["random", "swap"]),
                                         help="How val_broken_* breaks the shortcut: random values (words) in the "
                                              "mask (default) or another class's content.")),
    "compare_selections": (("--compare-selections/--no-compare-selections",), dict(
        default=None, help="Also report, in metrics.json, the epoch every selection rule would keep and its test "
                           "scores (the kept model is still --select's; each epoch is then also evaluated on the "
                           "test split, which no rule reads).")),
    "ema_decay": (("--ema-decay",), dict(type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="D",
                                         help="Evaluate and keep an exponential moving average of the weights, "
                                              "updated after every step with decay D (e.g. 0.999); default: the "
                                              "weights themselves.")),
    "params": (("--param", "params"), dict(multiple=True, metavar="KEY=VALUE",
                                           help="Method hyperparameter (repeatable).")),
    "data_options": (("--data-option", "data_options"), dict(multiple=True, metavar="KEY=VALUE",
                                                             help="Dataset option (repeatable).")),
    "model_options": (("--model-option", "model_options"), dict(multiple=True, metavar="KEY=VALUE",
                                                                help="Model option (repeatable).")),
    "robustness": (("--robustness", "robustness"), dict(multiple=True, metavar="KEY=VALUE",
                                                        help="Evaluate robustness on the test split after training "
                                                             f"(repeatable; keys: {', '.join(ROBUSTNESS_KEYS)}; eps "
                                                             "null or absent = the method's training radius; "
                                                             "--robustness on alone: every default).")),
    "workers": (("--workers",), dict(type=click.IntRange(min=0), help="Processes decoding a streamed image folder "
                                     "(folder:PATH with --data-option stream=true); the same as --data-option "
                                     "workers=N.")),
    "augment": (("--augment",), dict(type=click.Choice(sorted(AUGMENT_PRESETS)), help="Augment every training "
                                     "batch, image and mask together: a preset (flip, standard, strong; "
                                     "docs/augmentation.md).")),
    "augment_options": (("--augment-option", "augment_options"), dict(multiple=True, metavar="KEY=VALUE",
                                                                     help="Augmentation option, over the preset "
                                                                          "(repeatable; e.g. vflip=0.5).")),
    "config_file": (("--config", "config_file"), dict(type=click.Path(dir_okay=False),
                                                      help="A config.json to start from.")),
}

#: the TrainConfig fields among the flags (the rest are KEY=VALUE lists and the config file)
FIELD_FLAGS = ("data", "method", "model", "epochs", "seed", "batch_size", "lr", "lr_schedule", "threads", "select",
               "val_break", "compare_selections", "ema_decay", "device", "precision")


def training_options(*names: str, **changes: dict) -> Callable:
    """Decorator adding the training flags ``names`` (all of them when none are named) to a command;
    ``changes`` replaces keyword arguments of one flag, e.g. ``data=dict(default="toy-colors")``."""
    chosen = names or tuple(TRAINING_FLAGS)

    def decorate(command: Callable) -> Callable:
        for name in reversed(chosen):
            decls, kwargs = TRAINING_FLAGS[name]
            command = click.option(*decls, **{**kwargs, **changes.get(name, {})})(command)
        return command

    return decorate


def split_option(**kwargs) -> Callable:
    """``--split train|val|test`` (default test)."""
    return click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True, **kwargs)


def data_override_options(command: Callable) -> Callable:
    """``--data`` and ``--data-option``: the dataset a saved run is evaluated on (default: its own)."""
    command = click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
                           help="Dataset option (repeatable).")(command)
    return click.option("--data", help="Dataset to use (default: the one the model was trained on).")(command)


def device_option() -> Callable:
    """``--device``: where a command that reads a run directory runs its model (default auto)."""
    return click.option("--device", default="auto", show_default=True, metavar="DEVICE",
                        help="Where to run the model: auto (a GPU when there is one, else the CPU), cpu, cuda, "
                             "cuda:N or mps.")


def trust_code_option(help: str = "Build a model that the run's config.json names as package.module:factory "
                                        "(imports and runs that module: only for runs you trust).") -> Callable:
    """``--trust-code``: commands that read a run directory build only registered models unless it is given,
    as a model named ``package.module:factory`` in a downloaded run would run that module's code."""
    return click.option("--trust-code", "trust_code", is_flag=True, help=help)


def with_robustness(config, items):
    """``config`` with the ``--robustness KEY=VALUE`` assignments ``items`` merged into its ``robustness``
    field (``on`` alone: the field set with every default); no items: ``config`` unchanged."""
    from ..train.overrides import parse_assignments

    items = tuple(items or ())
    if not items:
        return config
    chosen = [item for item in items if item.strip() != "on"]
    settings = {**(config.robustness or {}), **parse_assignments(chosen, "--robustness")}
    return config.replace(robustness=settings)


def with_augment(config, preset, items):
    """``config`` with ``--augment PRESET`` and the ``--augment-option KEY=VALUE`` assignments ``items`` merged
    into its ``augment`` field; neither given: ``config`` unchanged."""
    from ..train.overrides import parse_assignments

    items = tuple(items or ())
    if preset is None and not items:
        return config
    settings = dict(config.augment or {})
    if preset is not None:
        settings = {"preset": preset}
    settings.update(parse_assignments(items, "--augment-option"))
    return config.replace(augment=settings)


def split_fields(flags: dict) -> tuple[dict, tuple, tuple, tuple]:
    """Training flags as (TrainConfig fields, --param, --data-option, --model-option) for ``apply_overrides``."""
    fields = {k: flags.get(k) for k in FIELD_FLAGS if k in flags}
    data_options = tuple(flags.get("data_options", ()))
    if flags.get("workers") is not None:
        data_options += (f"workers={int(flags['workers'])}",)
    return fields, flags.get("params", ()), data_options, flags.get("model_options", ())
