"""Old import path of :mod:`rightreasons.bench.published` (kept for existing code)."""

from ..bench.published import *  # noqa: F401,F403
