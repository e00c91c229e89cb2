"""``rightreasons robustness``: natural and PGD accuracy and attribution robustness of saved runs at one radius."""

from __future__ import annotations

import sys

import click

from .common import fmt, print_table, strict_json
from .options import data_override_options, device_option, split_option, trust_code_option


@click.command(name="robustness")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(), metavar="RUN [RUN ...]")
@data_override_options
@split_option()
@click.option("--eps", type=click.FloatRange(min=0), help="l_inf radius of the PGD and attribution attacks "
              "(default: each run's own training radius, its method's eps parameter).")
@click.option("--region", type=click.Choice(("all", "mask")), default="all", show_default=True,
              help="Attack the whole input, or only the masked features.")
@click.option("--examples", type=click.IntRange(min=1), default=200, show_default=True,
              help="Evaluate the first N examples of the split.")
@click.option("--pgd-steps", type=click.IntRange(min=0), default=20, show_default=True,
              help="Sign-gradient steps of the PGD attack on the prediction (of 2.5 * eps / steps).")
@click.option("--attack-steps", type=click.IntRange(min=0), default=100, show_default=True,
              help="Steps (of 0.01) of the top-k attack on the attributions (Chen et al.: 100).")
@click.option("--k", "k", type=click.IntRange(min=1), help="Top-k features compared (default 100, at most a quarter "
              "of the features).")
@trust_code_option()
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (a list, one object per run).")
def robustness_command(run_dirs, data, data_options, split, eps, region, examples, pgd_steps, attack_steps, k,
                       trust_code, device, as_json):
    """PGD accuracy and attribution robustness (top-k intersection, Kendall's tau) of saved runs."""
    from ..errors import UserError
    from ..metrics.robustness import robustness_report, training_eps
    from ..train.overrides import parse_assignments
    from ..train.run import load_run_on

    options = parse_assignments(data_options, "--data-option")
    loaded = []
    for run_dir in run_dirs:  # load every run and settle its radius before the first (slow) attack
        model, config, splits = load_run_on(run_dir, data, options, trust_code=trust_code, device=device)
        radius = eps if eps is not None else training_eps(config.method, config.params)
        if radius is None:
            raise UserError(f"{run_dir}: method {config.method!r} has no eps parameter to take the radius from; "
                            "give one with --eps")
        loaded.append((run_dir, model, config, splits.split(split), radius))

    results = []
    with _Bars(sys.stderr.isatty()) as bars:
        for run_dir, model, config, dataset, radius in loaded:
            progress = bars.task(str(run_dir), min(examples, len(dataset)))
            report = robustness_report(model, dataset, radius, region=region, max_examples=examples,
                                       pgd_steps=pgd_steps, attack_steps=attack_steps, k=k, progress=progress)
            results.append({"run": str(run_dir), "method": config.method, "data": dataset.name, "split": split,
                            **report})
    if as_json:
        click.echo(strict_json(results))
        return
    from rich.table import Table

    table = Table(title=f"robustness on {split} ({region} features, first {examples} examples)")
    for column in ("run", "method", "eps", "natural acc.", "PGD acc.", "top-k inter.", "Kendall", "evaluated"):
        table.add_column(column, justify="left" if column in ("run", "method") else "right")
    for r in results:
        table.add_row(r["run"], r["method"], fmt(r["eps"]), fmt(r["natural_accuracy"]), fmt(r["pgd_accuracy"]),
                      fmt(r["topk_intersection"]), fmt(r["kendall"]), f"{r['evaluated']}/{r['examples']}")
    print_table(table)


class _Bars:
    """One rich progress bar per run on the shared stderr console, or nothing unless ``shown``."""

    def __init__(self, shown: bool):
        self._progress = None
        if shown:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from ..console import stderr_console

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=stderr_console(), transient=True)

    def task(self, name: str, total: int):
        """The ``progress(done, total)`` callback of one run's bar (None when no bar is shown)."""
        if self._progress is None:
            return None
        task = self._progress.add_task(name, total=total)
        return lambda done, total: self._progress.update(task, completed=done, total=total)

    def __enter__(self) -> "_Bars":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
