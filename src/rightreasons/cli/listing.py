"""``rightreasons list``: the registered datasets, models and methods with their defaults."""

from __future__ import annotations

import click


@click.command(name="list")
def list_command():
    """Show the registered datasets, models and methods."""
    from ..data import (
        DATASETS,
        DEFAULT_BATCH_SIZE,
        DEFAULT_EPOCHS,
        DEFAULT_MODEL,
        default_batch_size,
        default_epochs,
        default_model,
    )
    from ..methods import METHODS
    from ..methods.base import param_text
    from ..models import MODELS

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
