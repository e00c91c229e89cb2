"""The ``rightreasons`` command: a thin shell over the Python API, one module per command.

Commands parse flags, call the library, and print; they never import from one another (shared flags
are in :mod:`.options`, shared printing in :mod:`.common`). User errors (unknown names, bad parameters,
missing or corrupt files) print one line and exit 2; a traceback means a bug.
"""

from __future__ import annotations

import sys

import click

from ..errors import UserError
from ..train.overrides import apply_overrides as apply_flags  # noqa: F401  (old name, kept for existing code)
from ..train.overrides import parse_assignments, parse_value  # noqa: F401  (old import path)
from .annotate import annotate_command
from .audit import audit_command
from .bench import bench_command
from .data import data_group
from .demo import demo_command
from .evaluate import evaluate_command
from .explain import explain_command
from .find_another import find_another_command
from .guided import guided_command
from .listing import list_command
from .propose_masks import propose_masks_command
from .robustness import robustness_command
from .sweep import sweep_command
from .train import train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rightreasons")
def cli():
    """Learning from explanations: train models that ignore annotated shortcuts, and audit models."""


for _command in (train_command, evaluate_command, robustness_command, audit_command, explain_command, bench_command,
                 sweep_command, find_another_command, guided_command, propose_masks_command, list_command, demo_command,
                 data_group, annotate_command):
    cli.add_command(_command)


def main(argv=None) -> int:
    """Entry point: one-line errors, non-zero exit, no traceback for user errors."""
    import warnings

    from ..train.trainer import NonFiniteLossError

    warnings.showwarning = lambda message, category, *args, **kwargs: click.echo(f"warning: {message}", err=True)
    try:
        cli.main(args=argv, prog_name="rightreasons", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return 2
    except (UserError, NonFiniteLossError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
