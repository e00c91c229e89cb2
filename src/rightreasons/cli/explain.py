"""``rightreasons explain``: a saliency grid of saved models on the same images (for text: an HTML page of
the same documents, each token highlighted by its saliency)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from ..report.saliency import attribution_kinds
from .options import data_override_options, device_option, split_option, trust_code_option


@click.command(name="explain")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@data_override_options
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="PNG file to write (for text runs: an .html file).")
@click.option("--images", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images to show (documents, for text runs).")
@click.option("--attribution", type=click.Choice([*attribution_kinds(), "all"]), default="all", show_default=True)
@split_option()
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@trust_code_option(help="Build models that the runs' config.json name as package.module:factory (imports and "
                        "runs those modules: only for runs you trust).")
@device_option()
def explain_command(run_dirs, data, data_options, out, images, attribution, split, overwrite, trust_code, device):
    """Write a saliency grid PNG (text: an HTML page of highlighted tokens): the inputs (mask outlined), then
    one row per attribution; with several runs, one row per run and attribution, all on the same images (the
    first run's data). For text runs, a self-contained HTML page: each document's tokens highlighted by each
    run's saliency (masked tokens outlined), with the label and each run's prediction."""
    from ..report.explain import explain_runs
    from ..train.overrides import parse_assignments

    out = Path(out)
    if out.suffix.lower() not in (".png", ".html"):
        raise UserError(f"{out}: --out must name a .png file (or an .html file, for text runs)")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; choose another --out or pass --overwrite")
    labels, count, dataset = explain_runs(run_dirs, out, data, parse_assignments(data_options, "--data-option"),
                                          images, attribution, split, trust_code=trust_code, device=device)
    if out.suffix.lower() == ".html":  # explain_runs writes HTML for text only
        click.echo(f"{out}: rows {', '.join(labels)}; {count} {split} documents of {dataset}")
    else:
        click.echo(f"{out}: rows input, {', '.join(labels)}; {count} {split} images of {dataset}")
