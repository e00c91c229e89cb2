"""A perturbation radius that may ramp up during training, for methods with an ``eps`` parameter.

eps is 0 for ``warmup_epochs`` epochs, then grows linearly to its final value over ``ramp_epochs``
(``ops.schedules.eps_ramp``; 0 and 0 keep it constant). The trainer advances it once per epoch through
``start_epoch``; its position is the method's state (``state_dict``), so a resumed run continues the ramp.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..ops.schedules import eps_ramp

RAMP_DEFAULTS = {"warmup_epochs": 0.0, "ramp_epochs": 0.0}
RAMP_BOUNDS = {"warmup_epochs": (0.0, None), "ramp_epochs": (0.0, None)}


class RampedEps:
    """Mixin for a :class:`Method` with parameters ``eps``, ``warmup_epochs`` and ``ramp_epochs``."""

    def init_ramp(self) -> None:
        self.eps_schedule = eps_ramp(self.eps, self.warmup_epochs, self.ramp_epochs)

    def current_eps(self) -> float:
        """The radius of the current epoch."""
        return self.eps_schedule.current()

    def start_epoch(self, epoch: int, num_epochs: int) -> None:
        self.eps_schedule.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"eps": self.eps_schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = sorted(set(state) - {"eps"})
        if unknown:
            raise UserError(f"method {self.name!r}: unknown state keys {unknown}")
        self.eps_schedule.load_state_dict(state.get("eps", {"epoch": 0}))
