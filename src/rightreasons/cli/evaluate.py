"""``rightreasons evaluate``: the metrics of a saved model on a dataset split."""

from __future__ import annotations

import click

from .common import fmt, print_table, strict_json
from .options import data_override_options, device_option, split_option, trust_code_option


@click.command(name="evaluate")
@click.argument("run_dir", type=click.Path())
@data_override_options
@split_option()
@click.option("--eps", type=click.FloatRange(min=0), help="Radius of the mask box for masked PGD and IBP "
              "(default: the whole data range).")
@click.option("--pgd-steps", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--no-robust", is_flag=True, help="Skip masked PGD and IBP-certified accuracy.")
@trust_code_option()
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_command(run_dir, data, data_options, split, eps, pgd_steps, no_robust, as_json, trust_code, device):
    """Re-evaluate a saved model on a dataset split."""
    from ..metrics import evaluate
    from ..metrics.robust import robust_metrics
    from ..train.overrides import parse_assignments
    from ..train.run import load_run_on

    model, config, splits = load_run_on(run_dir, data, parse_assignments(data_options, "--data-option"),
                                         trust_code=trust_code, device=device)
    dataset = splits.split(split)
    metrics = evaluate(model, dataset)
    if not no_robust:
        metrics.update(robust_metrics(model, dataset, eps=eps, steps=pgd_steps))
    if as_json:
        click.echo(strict_json(metrics))
        return
    from rich.table import Table

    table = Table(title=f"{run_dir}: {config.method} evaluated on {dataset.name} ({split}, {len(dataset)} examples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if key != "group_accuracy":
            table.add_row(key, value if isinstance(value, str) else fmt(value))
    table.add_row("group accuracy", " ".join(f"{g}:{fmt(a)}" for g, a in metrics["group_accuracy"].items()))
    print_table(table)
