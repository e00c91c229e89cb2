"""The ``bench`` and ``explain`` commands (registered on the main ``rightreasons`` group)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _scoped(items, option: str, known: list[str], what: str, fallback) -> dict:
    """``SCOPE.KEY=VALUE`` -> {scope: {key: value}}; an unscoped ``KEY=VALUE`` goes to ``fallback(key)``."""
    from ..cli import parse_assignments

    out: dict = {}
    for key, value in parse_assignments(tuple(items), option).items():
        scope, dot, name = key.partition(".")
        targets = [scope] if dot else fallback(key)
        if dot and scope not in known:
            raise UserError(f"{option} {key}={value!r}: {scope!r} is not one of the {what} of this benchmark "
                            f"({', '.join(known)})")
        if not targets:
            raise UserError(f"{option} {key}={value!r}: no {what[:-1]} of this benchmark has a parameter {key!r}")
        for target in targets:
            out.setdefault(target, {})[name if dot else key] = value
    return out


@click.command(name="bench")
@click.option("--data", help="Datasets, comma-separated (e.g. decoy-mnist,decoy-mnist-half).")
@click.option("--methods", help="Methods, comma-separated; 'mask' = erm + every method that reads masks "
                                "(the default), 'all' = every registered method.")
@click.option("--seeds", type=click.IntRange(min=1), help="Number of seeds (0 .. N-1); default 3.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Benchmark directory.")
@click.option("--preset", help="A published comparison: ross2017 or heo2023 (flags given here override it).")
@click.option("--model", help="Model name (default: auto, each dataset's model; a preset may name one).")
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=float)
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]))
@click.option("--param", "params", multiple=True, metavar="[METHOD.]KEY=VALUE",
              help="Method hyperparameter; without METHOD, for every method that has KEY (repeatable).")
@click.option("--data-option", "data_options", multiple=True, metavar="[DATASET.]KEY=VALUE",
              help="Dataset option; without DATASET, for every dataset (repeatable).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Runs at a time.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch threads per run (default: cores / jobs).")
@click.option("--images", type=click.IntRange(min=1), default=8, show_default=True, help="Images per saliency grid.")
@click.option("--no-report", is_flag=True, help="Skip report.html (results.csv and summary.md are still written).")
@click.option("--overwrite", is_flag=True, help="Redo finished runs whose config differs from this plan.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--dry-run", is_flag=True, help="Show the planned runs (finished or to do) and stop; write nothing.")
def bench_command(data, methods, seeds, out, preset, model, epochs, batch_size, lr, lr_schedule, params, data_options, jobs,
                  threads, images, no_report, overwrite, quiet, dry_run):
    """Train every (dataset, method, seed), resuming finished runs; write DIR/results.csv, DIR/summary.md
    and DIR/report.html."""
    import warnings

    from ..methods import METHODS
    from ..train.config import TrainConfig
    from . import bench, presets
    from .html import write_report
    from .results import collect_rows, write_results_csv
    from .summary import write_summary

    chosen = presets.get_preset(preset) if preset else None
    datasets = _split(data) or list(chosen.datasets if chosen else [])
    if not datasets:
        raise UserError("bench: give --data (comma-separated datasets) or --preset")
    if methods:
        method_names = bench.expand_methods(_split(methods))
    elif chosen:
        method_names = [m for m in chosen.methods if m in METHODS.names()]
        missing = [m for m in chosen.methods if m not in METHODS.names()]
        if missing:
            warnings.warn(f"preset {chosen.name}: not registered here, skipped: {', '.join(missing)}")
    else:
        method_names = bench.expand_methods(["mask"])
    n_seeds = seeds or (chosen.seeds if chosen else 3)
    preset_settings = {k: getattr(chosen, k) for k in ("epochs", "model", "lr", "lr_schedule")} if chosen else {}
    base = TrainConfig(**{k: v for k, v in preset_settings.items() if v is not None})
    flags = dict(model=model, epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule)
    base = base.replace(**{k: v for k, v in flags.items() if v is not None})
    method_params = {m: dict(v) for m, v in (chosen.params if chosen else {}).items()}
    for m, kv in _scoped(params, "--param", method_names, "methods",
                         lambda key: [m for m in method_names if key in METHODS.get(m).defaults]).items():
        method_params.setdefault(m, {}).update(kv)
    options = {d: dict(v) for d, v in (chosen.data_options if chosen else {}).items()}
    for d, kv in _scoped(data_options, "--data-option", datasets, "datasets", lambda key: list(datasets)).items():
        options.setdefault(d, {}).update(kv)
    threads = threads or max(1, bench.available_cores() // jobs)
    specs = bench.plan_runs(out, datasets, method_names, range(n_seeds), base, method_params, options, threads)
    command = " ".join(["rightreasons bench"] + ([f"--preset {preset}"] if preset else [])
                       + [f"--data {','.join(datasets)}", f"--methods {','.join(method_names)}", f"--seeds {n_seeds}"]
                       + [f"--{k.replace('_', '-')} {v}" for k, v in flags.items() if v is not None]
                       + [f"--param {p}" for p in params] + [f"--data-option {o}" for o in data_options]
                       + [f"--jobs {jobs} --threads {threads}", f"--out {out}"])
    if dry_run:
        for spec in specs:
            click.echo(f"{bench.run_state(spec):<9} {spec.name}  model={spec.config.model} epochs={spec.config.epochs} "
                       f"params={spec.config.params} data_options={spec.config.data_options}")
        click.echo(command)
        return
    out_dir = bench.prepare_out(out, {"command": command, "runs": [s.name for s in specs]})
    log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))

    def refresh(_spec=None):
        write_results_csv(out_dir, collect_rows(out_dir))
        write_summary(out_dir, command)

    result = bench.run_bench(specs, jobs=jobs, overwrite=overwrite, log=log, on_finish=refresh)
    refresh()
    if not no_report:
        import torch

        torch.set_num_threads(threads)  # this process's own work (saliency) runs beside nothing else
        log(f"report: {write_report(out_dir, command, images, log)}")
    click.echo((out_dir / "summary.md").read_text())
    click.echo(f"{result['planned']} runs ({result['reused']} reused, {result['ran']} trained) -> "
               f"{out_dir / 'results.csv'}, {out_dir / 'summary.md'}" + ("" if no_report else f", {out_dir / 'report.html'}"))
    if result["failed"]:
        first, why = result["failed"][0]
        raise UserError(f"{len(result['failed'])} run(s) failed, e.g. {first}: {why or 'see its train.log'}")


@click.command(name="explain")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--data", help="Dataset whose test images to explain (default: the first run's own).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--images", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--attribution", type=click.Choice(["gradient", "ig", "all"]), default="all", show_default=True)
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def explain_command(run_dirs, data, data_options, out, images, attribution, split, overwrite):
    """Write a saliency grid PNG: the inputs (mask outlined), then one row per attribution; with several
    runs, one row per run and attribution, all on the same images (the first run's data)."""
    from ..cli import parse_assignments
    from ..data import load_dataset
    from ..train.config import TrainConfig
    from ..train.run import load_run
    from .png import write_png
    from .saliency import attribution_kinds, input_row, pick_examples, saliency_row, tile, with_row_labels

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"{out}: --out must name a .png file")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; choose another --out or pass --overwrite")
    kinds = attribution_kinds() if attribution == "all" else (attribution,)
    if any(k not in attribution_kinds() for k in kinds):
        raise UserError(f"attribution {attribution!r} is not available here; available: {', '.join(attribution_kinds())}")
    splits = None
    if data is not None or data_options:
        config_path = Path(run_dirs[0]) / "config.json"
        if not config_path.is_file():
            raise UserError(f"{run_dirs[0]}: no config.json (not a run directory?)")
        cfg = TrainConfig.load(config_path)
        options = {**(cfg.data_options if data in (None, cfg.data) else {}),
                   **parse_assignments(data_options, "--data-option")}
        splits = load_dataset(data or cfg.data, seed=cfg.seed, **options)
    models = []
    for run_dir in run_dirs:
        model, _, splits = load_run(run_dir, data=splits)
        models.append(model)
    dataset = splits.split(split)
    index = pick_examples(dataset, images)
    rows = [input_row(dataset, index)] + [saliency_row(m, dataset, index, k) for k in kinds for m in models]
    labels = [f"{k} {Path(r).name}" for k in kinds for r in run_dirs] if len(run_dirs) > 1 else list(kinds)
    write_png(out, with_row_labels(tile(rows), ["input"] + labels))
    click.echo(f"{out}: rows input, {', '.join(labels)}; {len(index)} {split} images of {dataset.name}")
