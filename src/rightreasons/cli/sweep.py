"""``rightreasons sweep``: search hyperparameters on the validation split with Optuna.

Writes DIR/best_config.json (a resolved config for ``rightreasons train --config``), DIR/trials.csv
and, unless ``--storage`` points elsewhere, the study itself in DIR/study.db. Run the same command in
several processes or on several machines (same ``--storage`` and ``--study``) to share one study.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from ..errors import UserError
from .common import print_table, use_threads
from .options import split_fields, training_options


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3f}" if value == 0 or 1e-2 <= abs(value) < 1e3 else f"{value:.4g}"
    return str(value)


def _params(trial, keys) -> str:
    return " ".join(f"{k.split('.', 1)[-1]}={_fmt(trial.params[k])}" for k in keys if k in trial.params)


@click.command(name="sweep")
@training_options("data", "method")
@click.option("--space", "space_file", required=True, type=click.Path(dir_okay=False),
              help="JSON search space: {\"params.lam\": {\"type\": \"float\", \"low\": 0.1, \"high\": 1000, "
                   "\"log\": true}, ...}.")
@click.option("--trials", type=int, default=20, show_default=True, help="Trials this process runs.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for best_config.json, trials.csv.")
@click.option("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db); share it to share the study.")
@click.option("--study", "study_name", help="Study name (default DATA-METHOD); an existing study is joined.")
@training_options("config_file", "model", "epochs", "seed", "batch_size", "lr", "lr_schedule", "threads", "device",
                  "precision", "select", "val_break", "ema_decay",
                  "params", "data_options", "model_options",
                  seed=dict(help="Seed of every trial (data, init, batch order)."),
                  threads=dict(help="Torch threads per process (give each of several processes its share)."))
@click.option("--sampler-seed", type=click.IntRange(0, 2**32 - 1),
              help="Seed of the TPE sampler (give each process its own, or none).")
@click.option("--quiet", is_flag=True, help="No line per trial.")
def sweep_command(space_file, trials, out, storage, study_name, config_file, sampler_seed, quiet, **flags):
    """Search hyperparameters for validation worst-group accuracy (never the test split)."""
    from rich.table import Table

    from ..sweep.outputs import write_outputs
    from ..sweep.space import check_space, load_space
    from ..sweep.study import baseline_trial, require_optuna, run_sweep
    from ..train.config import TrainConfig
    from ..train.overrides import apply_overrides

    require_optuna()
    space = load_space(space_file)
    keys = [d.key for d in space]
    base = apply_overrides(TrainConfig.load(config_file) if config_file else TrainConfig(), *split_fields(flags))
    check_space(space, base, where=str(space_file))  # before anything is written
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    use_threads(base.threads)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study_name = study_name or f"{base.data}-{base.method}"
    echo = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))

    def on_trial(study, trial):
        write_outputs(study, out, keys)
        attrs = trial.user_attrs
        if trial.value is not None:
            echo(f"trial {trial.number}{' (defaults)' if attrs.get('baseline') else ''}: val worst-group "
                 f"{_fmt(trial.value)}, val accuracy {_fmt(attrs.get('val_accuracy'))}, "
                 f"{attrs.get('seconds', 0):.1f}s  {_params(trial, keys)}")
        else:
            echo(f"trial {trial.number} {trial.state.name.lower()}: {attrs.get('error', 'no value')}  "
                 f"{_params(trial, keys)}")

    echo(f"sweep {study_name!r} in {storage}: {trials} trial(s) in this process")
    result = run_sweep(base, space, trials, storage, study_name, sampler_seed, on_trial=on_trial, log=click.echo)
    best = write_outputs(result.study, out, keys)
    if best is None:
        raise UserError(f"study {study_name!r}: no trial completed (see {out / 'trials.csv'})")
    ranked = sorted((t for t in result.study.get_trials(deepcopy=False) if t.value is not None),
                    key=lambda t: (-t.value, t.number))
    default = baseline_trial(result.study)
    shown = ranked[:5] + ([default] if default is not None and default not in ranked[:5] else [])
    table = Table(title=f"{base.method} on {base.data}, validation split: {len(ranked)} completed trial(s), best "
                        "first", caption="* the defaults (base config)")
    for col in ("trial", "worst-group", "accuracy", "s", *(k.split(".", 1)[-1] for k in keys)):
        table.add_column(col, justify="left" if col == "trial" else "right", no_wrap=True)
    for t in shown:
        a = t.user_attrs
        table.add_row(f"{t.number}{'*' if a.get('baseline') else ''}", _fmt(t.value), _fmt(a.get("val_accuracy")),
                      f"{a.get('seconds', 0):.0f}", *(_fmt(t.params.get(k, "")) for k in keys))
    print_table(table)
    versus = f" (defaults: {_fmt(default.value)}, trial {default.number})" if default is not None else ""
    click.echo(f"best: trial {best.number}, val worst-group {_fmt(best.value)}{versus}; {_params(best, keys)}")
    click.echo(f"best config -> {out / 'best_config.json'}  (rightreasons train --config {out / 'best_config.json'} "
               "--out DIR)")
