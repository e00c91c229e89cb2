"""CLI commands for users' own data and models: ``rightreasons audit`` and ``rightreasons data example``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import UserError


def _load_for_audit(run_dir: str, data, data_options):
    from .cli import parse_assignments
    from .data import load_dataset
    from .train.config import TrainConfig
    from .train.run import load_run

    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    splits = None
    if data is not None or data_options:
        cfg_path = Path(run_dir) / "config.json"
        if not cfg_path.is_file():
            raise UserError(f"{run_dir}: missing config.json (not a run directory written by `rightreasons train`?)")
        cfg = TrainConfig.load(cfg_path)
        options = {**(cfg.data_options if data in (None, cfg.data) else {}),
                   **parse_assignments(data_options, "--data-option")}
        splits = load_dataset(data or cfg.data, seed=cfg.seed, **options)
    model, config, splits = load_run(run_dir, data=splits)
    return model, config, splits


def _number(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@click.command(name="audit")
@click.argument("run_dir", type=click.Path())
@click.option("--data", help="Dataset to audit on (default: the one the model was trained on).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE", help="Dataset option (repeatable).")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--eps", type=float, help="Masked attack / certificate radius (default: the full data range).")
@click.option("--steps", type=click.IntRange(min=0), default=20, show_default=True, help="Masked PGD steps.")
@click.option("--draws", type=click.IntRange(min=1), default=5, show_default=True,
              help="Random fillings of the masked region.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random fillings.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def audit_command(run_dir, data, data_options, split, eps, steps, draws, seed, as_json):
    """Does a saved model rely on the annotated (masked) region? Prints the checks and a verdict."""
    from .audit import audit

    model, config, splits = _load_for_audit(run_dir, data, data_options)
    dataset = splits.split(split)
    result = audit(model, dataset, eps=eps, steps=steps, draws=draws, seed=seed)
    result["run"] = str(run_dir)
    result["split"] = split
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    names = splits.info.get("groups")
    table = Table(title=f"audit of {run_dir} ({config.method}) on {dataset.name}, {split} split, {len(dataset)} examples")
    table.add_column("check")
    table.add_column("value", justify="right")
    for key, label in (("accuracy", "accuracy"), ("worst_group_accuracy", "worst-group accuracy"),
                       ("mask_gradient_share", "input-gradient share in mask"),
                       ("wrong_reason", "wrong-reason score (salient features in mask)"), ("mask_area", "mask area"),
                       ("annotated_examples", "annotated examples"), ("annotated_accuracy", "accuracy (annotated)"),
                       ("randomised_accuracy", "accuracy, masked region randomised"),
                       ("randomised_flip_rate", "predictions flipped by randomising"),
                       ("masked_pgd_accuracy", f"accuracy under masked PGD (eps {result['eps']:g})"),
                       ("ibp_certified_accuracy", "IBP-certified accuracy")):
        if key in result:
            table.add_row(label, _number(result[key]))
    for g, acc in result["group_accuracy"].items():
        name = names[int(g)] if isinstance(names, list) and int(g) < len(names) else g
        table.add_row(f"group {name}", _number(acc))
    Console().print(table)
    if result.get("ibp_not_applicable"):
        click.echo(f"IBP certificate: not applicable: {result['ibp_not_applicable']}")
    click.echo(result["summary"])


@click.command(name="example")
@click.argument("name", type=click.Choice(["patches"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to create.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=int, default=64, show_default=True, help="Image side in pixels.")
@click.option("--n-train", type=int, default=240, show_default=True)
@click.option("--n-val", type=int, default=60, show_default=True)
@click.option("--n-test", type=int, default=120, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
def example_command(name, out, seed, size, n_train, n_val, n_test, overwrite):
    """Generate a tiny example image folder (labels.csv, images/, masks/) for --data folder:DIR."""
    from .data.examples import EXAMPLES

    path = EXAMPLES[name](out, seed=seed, overwrite=overwrite, size=size, n_train=n_train, n_val=n_val, n_test=n_test)
    click.echo(f"{name} example written to {path} (train with --data folder:{path})")
