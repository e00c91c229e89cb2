"""``rightreasons guided-masks``: a simulated annotation loop, masks revealed step by step by a rule."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from ..guided import DEFAULT_COMMITTEE, DEFAULT_STRATEGIES, DEFAULT_TARGET, DEFAULT_TOP_FRACTION, FILES, STRATEGIES
from .common import fmt, print_table, stderr_log, use_threads
from .options import split_fields, training_options


def _budgets(text: str) -> list:
    out = []
    for part in (p.strip() for p in text.split(",")):
        if part == "all":
            out.append(part)
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise UserError(f"--budgets: expected comma-separated positive whole numbers or 'all', got {part!r}")
    return out


def _strategies(text: str) -> list[str]:
    out = [p.strip() for p in text.split(",") if p.strip()]
    bad = [s for s in out if s not in STRATEGIES]
    if not out or bad:
        raise UserError(f"--strategy: expected comma-separated names among {', '.join(STRATEGIES)}, got {text!r}")
    return out


def _committee(text: str) -> int:
    text = str(text).strip()
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--committee: expected a whole number >= 1, got {text!r}")
    return int(text)


@click.command(name="guided-masks")
@training_options("data", "method", "model", "epochs", "seed", "batch_size", "lr", "lr_schedule", "threads", "device",
                  "precision", "select", "params", "data_options", "model_options",
                  method=dict(help="A mask-reading method to train every step with (default rrr)."))
@click.option("--budgets", default="10,30,100,300,1000", show_default=True,
              help="Comma-separated numbers of revealed masks (ascending steps; 'all' = every annotated example).")
@click.option("--strategy", "strategy", default=",".join(DEFAULT_STRATEGIES), show_default=True,
              help=f"Comma-separated rules choosing the masks to reveal: {', '.join(STRATEGIES)}.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of seeds (--seed .. --seed + N - 1).")
@click.option("--top-fraction", type=click.FloatRange(0.0, 1.0, min_open=True), default=DEFAULT_TOP_FRACTION,
              show_default=True, help="saliency: the share of features whose |gradient| share is the score.")
@click.option("--committee", "committee", default=str(DEFAULT_COMMITTEE), show_default=True, metavar="K",
              help="disagreement: the number of find-another models trained at each step beside the current model; "
                   "the score is their mean pairwise total-variation distance.")
@click.option("--balance", is_flag=True, help="Spread each step's new masks over the classes.")
@click.option("--target", type=click.FloatRange(0.0, 1.0), default=DEFAULT_TARGET, show_default=True,
              help="Worst-group accuracy whose smallest budget is reported.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for curve.csv, curve.svg and revealed.json.")
@click.option("--overwrite", is_flag=True, help="Replace a curve already in --out.")
@click.option("--quiet", is_flag=True, help="No per-epoch log or progress bar.")
def guided_command(budgets, strategy, seeds, top_fraction, committee, balance, target, out, overwrite, quiet,
                   **flags):
    """Simulate annotating step by step: start from a model trained without masks, reveal the true masks of the
    training examples a rule picks (random, least certain, most concentrated saliency, or most disagreement
    between the current model and find-another models), retrain at each budget and write the worst-group test
    accuracy per budget to OUT/curve.csv and OUT/curve.svg."""
    from rich.table import Table

    from ..guided import guided_curve, smallest_budget, write_curve
    from ..train.config import TrainConfig
    from ..train.overrides import apply_overrides

    budget_list, strategies, committee = _budgets(budgets), _strategies(strategy), _committee(committee)
    config = apply_overrides(TrainConfig(), *split_fields(flags))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    existing = [name for name in FILES if (out / name).exists()]
    if existing and not overwrite:
        raise UserError(f"{out}: already holds {', '.join(existing)}; choose another --out or pass --overwrite")
    use_threads(config.threads)
    curve = guided_curve(config, budget_list, strategies, seeds=range(config.seed, config.seed + seeds),
                         top_fraction=top_fraction, balance=balance, target=target, log=stderr_log(quiet),
                         progress=not quiet, on_row=lambda c: write_curve(out, c), committee=committee)
    table = Table(title=f"guided masks on {config.data} ({config.method}): test split")
    for label in ("strategy", "seed", "budget", "revealed", "acc", "worst-group", "mask share", "s"):
        table.add_column(label, justify="left" if label == "strategy" else "right")
    for row in curve.rows:
        table.add_row(row["strategy"], str(row["seed"]), str(row["budget"]), str(row["revealed"]),
                      fmt(row["accuracy"]), fmt(row["worst_group_accuracy"]), fmt(row["mask_share"]),
                      f"{row['train_seconds']:.0f}")
    print_table(table)
    mean = " (mean over seeds)" if seeds > 1 else ""
    for name, budget in smallest_budget(curve.rows, target).items():
        reached = f"{budget} masks" if budget is not None else "not reached"
        click.echo(f"{name}: worst-group {target:g}{mean} at {reached}")
    click.echo(f"wrote {', '.join(str(out / name) for name in FILES)}")
