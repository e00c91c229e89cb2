"""``rightreasons list``: the registered datasets, models and methods with their defaults."""

from __future__ import annotations

import click


@click.command(name="list")
def list_command():
    """Show the registered datasets, models and methods."""
    from .. import data
    from ..data.registry import PATH_DATASETS
    from ..methods import METHODS
    from ..methods.base import param_text
    from ..models import MODELS

    published = ", ".join(f"{prefix}:PATH" for prefix in sorted(PATH_DATASETS))
    click.echo("datasets: " + ", ".join(data.DATASETS.names()) + "  (or folder:PATH, csv:PATH for your own data)")
    if published:
        click.echo(f"published datasets you downloaded: {published}")
    click.echo("models:   " + ", ".join(MODELS.names()) + "  (or package.module:factory, timm:NAME, torchvision:NAME)")
    for label, default, of in (("default model (--model auto)", data.DEFAULT_MODEL, data.default_model),
                               ("default epochs", data.DEFAULT_EPOCHS, data.default_epochs),
                               ("default batch size", data.DEFAULT_BATCH_SIZE, data.default_batch_size)):
        names = [*data.DATASETS.names(), *(f"{prefix}:PATH" for prefix in sorted(PATH_DATASETS))]
        own = [f"{name}: {of(name)}" for name in names if of(name) != default]
        click.echo(f"{label}: {default}" + (f"; {', '.join(own)}" if own else ""))
    click.echo("methods:")
    for name in METHODS.names():
        cls = METHODS.get(name)
        defaults = ", ".join(f"{k}={param_text(v)}" for k, v in cls.defaults.items()) or "no parameters"
        click.echo(f"  {name:<14} {defaults}")
