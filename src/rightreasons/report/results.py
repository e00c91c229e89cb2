"""Old import path of :mod:`rightreasons.bench.results` (kept for existing code)."""

from ..bench.results import *  # noqa: F401,F403
