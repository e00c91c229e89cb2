"""Old import path of :mod:`rightreasons.bench.harness` (kept for existing code)."""

from ..bench.harness import *  # noqa: F401,F403
from ..bench.plan import plan_runs  # noqa: F401  (planning moved to bench.plan)
