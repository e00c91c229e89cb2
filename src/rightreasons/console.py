"""The one terminal console of a process (standard error), shared by progress bars and log lines, so
that a line logged while a bar is live is printed above the bar instead of on its line."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def stderr_console():
    """The process's rich Console on standard error."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def log_line(line: str) -> None:
    """Print ``line`` on standard error as it is (no markup, no wrapping), above any live progress bar."""
    stderr_console().print(line, markup=False, highlight=False, soft_wrap=True)
