"""The training progress bar: a thin rich bar on the shared standard-error console, shown only on a terminal."""

from __future__ import annotations

import sys

from ..console import stderr_console


class _Bar:
    """A thin rich progress bar on the shared stderr console, so that lines printed with
    ``console.log_line`` appear above it; does nothing unless ``shown``."""

    def __init__(self, total: int, shown: bool = True):
        self._progress = None
        if not shown:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress("training", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                  console=stderr_console(), transient=True)
        self._task = self._progress.add_task("train", total=total)
        self._progress.start()

    def update(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(enabled: bool, total: int) -> _Bar:
    """A bar over ``total`` steps, shown only when ``enabled`` and standard error is a terminal."""
    return _Bar(total, shown=enabled and sys.stderr.isatty())
