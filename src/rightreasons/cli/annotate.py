"""``rightreasons annotate``: draw and review masks of an image folder in a local web page."""

from __future__ import annotations

import click

from .common import use_threads
from .options import device_option, trust_code_option


@click.command(name="annotate")
@click.argument("data")
@click.option("--run", "run_dir", type=click.Path(), help="A trained run: show its predictions and saliency, "
              "and filter to the examples it gets wrong or that rely on the mask or proposal.")
@click.option("--proposals", type=click.Path(), help="The folder rightreasons propose-masks wrote: show its "
              "proposals to accept or reject.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free one).")
@click.option("--threads", type=click.IntRange(min=1), help="torch threads (default: OMP_NUM_THREADS, else all cores).")
@trust_code_option()
@device_option()
def annotate_command(data, run_dir, proposals, port, threads, trust_code, device):
    """Serve a page on 127.0.0.1 to draw, erase and review the masks (white = ignore) of the image folder
    DATA (folder:PATH or PATH). Saves write the mask PNGs and labels.csv; earlier versions are kept in
    PATH/.annotate/history. Stop with Ctrl+C."""
    from ..annotate import serve

    if run_dir is not None:
        use_threads(threads)
        click.echo("computing the run's predictions and saliency on every row...", err=True)
    server = serve(data, run=run_dir, proposals=proposals, port=port, trust_code=trust_code,
                   device=device if run_dir is not None else "cpu")
    click.echo(f"annotating {server.app.store.root} ({len(server.app.store.table().files)} rows): open")
    click.echo(f"  {server.url}")
    click.echo("(only this machine can reach it; the token in the URL is the key; Ctrl+C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.httpd.server_close()
