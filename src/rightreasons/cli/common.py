"""What every command shares: number formatting, the stderr log, tables, and the thread count."""

from __future__ import annotations

import json
import math
from typing import Callable, Optional

import click

from ..console import log_line


def fmt(value) -> str:
    """A metric for a table: 3 decimals, ``n/a`` for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def stderr_log(quiet: bool = False) -> Optional[Callable[[str], None]]:
    """The log callback of a command: lines on stderr (above any progress bar), or None with ``--quiet``."""
    return None if quiet else log_line


def print_table(table) -> None:
    """Print a rich table on stdout."""
    from rich.console import Console

    Console().print(table)


def use_threads(threads: Optional[int]) -> int:
    """Set this process's torch thread count: ``threads``, else OMP_NUM_THREADS, else the cores shared
    among the processes of a torchrun on this machine. Returns the number set."""
    import torch

    from ..train.distributed import local_cores

    count = threads or local_cores()
    torch.set_num_threads(count)
    return count


def finite_or_none(value):
    """``value`` with every NaN or infinite float (at any depth of dicts, lists and tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def strict_json(value) -> str:
    """``value`` as standard JSON (what ``--json`` prints): NaN and infinities become null, never the bare
    ``NaN`` / ``Infinity`` that Python's json module writes and other JSON readers reject."""
    return json.dumps(finite_or_none(value), indent=2, allow_nan=False)


def echo(line: str = "") -> None:
    click.echo(line)
