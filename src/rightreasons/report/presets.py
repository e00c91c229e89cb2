"""Old import path of :mod:`rightreasons.bench.presets` (kept for existing code)."""

from ..bench.presets import *  # noqa: F401,F403
