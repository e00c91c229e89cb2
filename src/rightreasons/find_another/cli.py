"""The ``find-another`` command (registered on the main ``rightreasons`` group)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="find-another")
@click.option("--data", default="toy-colors", show_default=True, help="Dataset name.")
@click.option("--models", "n_models", default=3, show_default=True, type=click.IntRange(min=1),
              help="Number of models to train in turn.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for model-1, model-2, ...")
@click.option("--threshold", default=0.67, show_default=True, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="A feature joins the mask where |grad| > threshold * max |grad| (per example).")
@click.option("--method", default="rrr", show_default=True, help="A mask-reading method to train each model with.")
@click.option("--model", help="Model name, package.module:factory, or auto (default: the dataset's model).")
@click.option("--epochs", type=int)
@click.option("--seed", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--threads", type=click.IntRange(min=1), help="Torch threads (default: every core this process may use).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Method hyperparameter (repeatable).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE", help="Dataset option (repeatable).")
@click.option("--model-option", "model_options", multiple=True, metavar="KEY=VALUE", help="Model option (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace runs already in --out.")
@click.option("--quiet", is_flag=True, help="No per-epoch log or progress bar.")
def find_another_command(data, n_models, out, threshold, method, model, epochs, seed, batch_size, lr, threads, params,
                         data_options, model_options, overwrite, quiet):
    """Find-another-explanation (Ross et al. 2017): train models in turn, each penalised (RRR) on the
    previous models' largest input gradients; write OUT/model-K run directories and OUT/report.json.
    On toy-colors, report which rule (corners or top-middle) each model uses."""
    from ..cli import _console, _fmt, parse_assignments
    from ..train.config import TrainConfig
    from ..train.run import check_out_dir
    from .core import find_another_explanation, save_find_another, write_summary
    from .toy_colors_rules import rule_report

    changes = {k: v for k, v in dict(model=model, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr,
                                             threads=threads).items()
               if v is not None}
    config = TrainConfig(data=data, method=method, **changes,
                         params=parse_assignments(params, "--param"),
                         data_options=parse_assignments(data_options, "--data-option"),
                         model_options=parse_assignments(model_options, "--model-option"))
    out = Path(out)
    for index in range(1, n_models + 1):
        check_out_dir(out / f"model-{index}", overwrite=overwrite)
    log = None if quiet else (lambda line: click.echo(line, err=True))
    rows = []

    def finished(item):
        row = {"model": item.index, "dir": str(out / f"model-{item.index}"),
               "accuracy": item.metrics["test"]["accuracy"],
               "worst_group_accuracy": item.metrics["test"]["worst_group_accuracy"],
               "penalised_fraction": item.metrics["find_another"]["penalised_fraction"],
               "train_seconds": item.metrics["train_seconds"]}
        if item.config.data == "toy-colors":
            item.metrics["find_another"]["rules"] = rule_report(item.model, item.data.test, seed=item.config.seed)
            row.update(item.metrics["find_another"]["rules"])
        save_find_another(out, item)
        rows.append(row)
        write_summary(out, rows)

    find_another_explanation(config, n_models=n_models, threshold=threshold, log=log, progress=not quiet,
                             on_model=finished)
    from rich.table import Table

    table = Table(title=f"find-another on {data} ({method}, threshold {threshold}): test split")
    columns = {"model": "model", "accuracy": "acc", "penalised_fraction": "masked", "train_seconds": "s"}
    if data == "toy-colors":
        columns = {"model": "model", "accuracy": "acc", "rule": "rule", "corners_rule_accuracy": "corner acc",
                   "top_middle_rule_accuracy": "top acc", "corners_gradient_share": "corner grad",
                   "top_middle_gradient_share": "top grad", "penalised_fraction": "masked",
                   "train_seconds": "s"}
    for key, label in columns.items():
        table.add_column(label, justify="left" if key in ("model", "rule") else "right")
    for row in rows:
        table.add_row(*[_fmt(row[c]) if c != "train_seconds" else f"{row[c]:.0f}" for c in columns])
    _console().print(table)
    click.echo(f"wrote {', '.join(r['dir'] for r in rows)} and {out / 'report.json'}")
