"""``rightreasons bench``: train every (dataset, method, seed, axis value) and write results, summary and report."""

from __future__ import annotations

import click

from ..bench.presets import PRESETS, path_presets
from ..errors import UserError
from .options import training_options


@click.command(name="bench")
@click.option("--data", help="Datasets, comma-separated (e.g. decoy-mnist,decoy-mnist-half,isic:/data/isic,"
                             "folder:my_images).")
@click.option("--methods", help="Methods, comma-separated; 'mask' = erm + every method that reads masks "
                                "(the default), 'all' = every registered method.")
@click.option("--seeds", type=click.IntRange(min=1), help="Number of seeds (0 .. N-1); default 3.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Benchmark directory.")
@click.option("--preset", type=click.Choice(sorted(set(PRESETS) - set(path_presets())) + path_presets()),
              help="A published comparison (flags given here override it); the last ones train on a dataset you "
                   "download (give --data-path).")
@click.option("--data-path", type=click.Path(), help="Where the downloaded data of the preset is (presets "
              f"{', '.join(path_presets())}; see docs/real-datasets.md).")
@training_options("model", "epochs", "batch_size", "lr", "lr_schedule", "device", "precision", "select", "val_break",
                  "compare_selections", "ema_decay")
@click.option("--param", "params", multiple=True, metavar="[METHOD.]KEY=VALUE",
              help="Method hyperparameter; without METHOD, for every method that has KEY (repeatable).")
@click.option("--data-option", "data_options", multiple=True, metavar="[DATASET.]KEY=VALUE",
              help="Dataset option; without DATASET, for every dataset (repeatable).")
@click.option("--axis", "axes", multiple=True, metavar="KEY=V1,V2,...",
              help="A data option as an axis: every run once per value, the product over several --axis "
                   "(repeatable), e.g. annotated_count=10,100,all or mask_corruption=none,dilate:2,shift:2; "
                   "'all' (annotated_count, annotated_fraction) and 'none' (mask_corruption) = not set.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Runs at a time.")
@training_options("threads", threads=dict(type=str, metavar="N[,M...]",
                                          help="Torch threads per run (default: cores / jobs); several, e.g. 1,2: "
                                               "every run once per count (summation order differs)."))
@click.option("--images", type=click.IntRange(min=1), default=8, show_default=True, help="Images per saliency grid.")
@click.option("--no-report", is_flag=True, help="Skip report.html (results.csv and summary.md are still written).")
@click.option("--overwrite", is_flag=True, help="Redo finished runs whose config differs from this plan.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--dry-run", is_flag=True, help="Show the planned runs (finished or to do) and stop; write nothing.")
def bench_command(out, images, no_report, overwrite, quiet, dry_run, **plan_flags):
    """Train every (dataset, method, seed, and value of each --axis), resuming finished runs; write
    DIR/results.csv, DIR/summary.md and DIR/report.html."""
    from ..bench import harness
    from ..bench.axes import merge_axes, read_axes
    from ..bench.plan import plan_bench
    from ..bench.results import collect_rows, write_results_csv
    from ..report.html import write_report
    from ..report.summary import write_summary
    from .common import stderr_log, use_threads

    plan = plan_bench(out, **plan_flags)
    if dry_run:
        for spec in plan.specs:
            axes = "".join(f"{key}={value} " for key, value in spec.axes.items())
            click.echo(f"{harness.run_state(spec):<9} {spec.name}  {axes}model={spec.config.model} "
                       f"epochs={spec.config.epochs} params={spec.config.params} "
                       f"data_options={spec.config.data_options}")
        click.echo(plan.command)
        return
    out_dir = harness.prepare_out(out, {"command": plan.command, "runs": [s.name for s in plan.specs],
                                        "axes": merge_axes(read_axes(out), plan.axes)})
    log = stderr_log(quiet) or (lambda line: None)

    def refresh(_spec=None):
        write_results_csv(out_dir, collect_rows(out_dir))
        write_summary(out_dir, plan.command)

    result = harness.run_bench(plan.specs, jobs=plan.jobs, overwrite=overwrite, log=log, on_finish=refresh)
    refresh()
    if not no_report:
        use_threads(plan.threads)  # this process's own work (saliency) runs beside nothing else
        log(f"report: {write_report(out_dir, plan.command, images, log)}")
    click.echo((out_dir / "summary.md").read_text())
    click.echo(f"{result['planned']} runs ({result['reused']} reused, {result['ran']} trained) -> "
               f"{out_dir / 'results.csv'}, {out_dir / 'summary.md'}"
               + ("" if no_report else f", {out_dir / 'report.html'}"))
    if result["failed"]:
        first, why = result["failed"][0]
        raise UserError(f"{len(result['failed'])} run(s) failed, e.g. {first}: {why or 'see its train.log'}")
