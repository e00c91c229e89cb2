"""Old import path of :mod:`rightreasons.bench.harness` (kept for existing code)."""

from ..bench.harness import *  # noqa: F401,F403
