"""``rightreasons find-another``: Ross et al.'s find-another-explanation, a sequence of trainings."""

from __future__ import annotations

from pathlib import Path

import click

from .common import fmt, print_table, stderr_log, use_threads
from .options import split_fields, training_options

COLUMNS = {"model": "model", "accuracy": "acc", "penalised_fraction": "masked", "train_seconds": "s"}
TOY_COLORS_COLUMNS = {"model": "model", "accuracy": "acc", "rule": "rule", "corners_rule_accuracy": "corner acc",
                      "top_middle_rule_accuracy": "top acc", "corners_gradient_share": "corner grad",
                      "top_middle_gradient_share": "top grad", "penalised_fraction": "masked", "train_seconds": "s"}


@click.command(name="find-another")
@training_options("data", data=dict(default="toy-colors", show_default=True, help="Dataset name."))
@click.option("--models", "n_models", default=3, show_default=True, type=click.IntRange(min=1),
              help="Number of models to train in turn.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for model-1, model-2, ...")
@click.option("--threshold", default=0.67, show_default=True, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="A feature joins the mask where |grad| > threshold * max |grad| (per example).")
@training_options("method", "model", "epochs", "seed", "batch_size", "lr", "lr_schedule", "threads", "device",
                  "precision", "params",
                  "data_options", "model_options",
                  method=dict(default="rrr", show_default=True, help="A mask-reading method to train each model with."))
@click.option("--overwrite", is_flag=True, help="Replace runs already in --out.")
@click.option("--quiet", is_flag=True, help="No per-epoch log or progress bar.")
def find_another_command(n_models, out, threshold, overwrite, quiet, **flags):
    """Find-another-explanation (Ross et al. 2017): train models in turn, each penalised (RRR) on the
    previous models' largest input gradients; write OUT/model-K run directories and OUT/report.json.
    On toy-colors, report which rule (corners or top-middle) each model uses."""
    from rich.table import Table

    from ..find_another import find_another_explanation, save_find_another, summary_row, write_summary
    from ..train.config import TrainConfig
    from ..train.overrides import apply_overrides
    from ..train.run import check_out_dir

    config = apply_overrides(TrainConfig(), *split_fields(flags))
    out = Path(out)
    for index in range(1, n_models + 1):
        check_out_dir(out / f"model-{index}", overwrite=overwrite)
    use_threads(config.threads)
    rows = []

    def finished(item):
        rows.append(summary_row(out, item))
        save_find_another(out, item)
        write_summary(out, rows)

    find_another_explanation(config, n_models=n_models, threshold=threshold, log=stderr_log(quiet),
                             progress=not quiet, on_model=finished)
    table = Table(title=f"find-another on {config.data} ({config.method}, threshold {threshold}): test split")
    columns = TOY_COLORS_COLUMNS if config.data == "toy-colors" else COLUMNS
    for key, label in columns.items():
        table.add_column(label, justify="left" if key in ("model", "rule") else "right")
    for row in rows:
        table.add_row(*[fmt(row[c]) if c != "train_seconds" else f"{row[c]:.0f}" for c in columns])
    print_table(table)
    click.echo(f"wrote {', '.join(r['dir'] for r in rows)} and {out / 'report.json'}")
