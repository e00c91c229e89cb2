"""Combinations of methods, e.g. IBP-Ex + RRR (Heo et al., NeurIPS 2023): built from the parts.

    loss = ce_weight_of_first_part * CE(f(x), y) + sum over parts of their penalties

Hyperparameters are the union of the parts' (names must not clash); schedule state is kept per part.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import UserError
from .base import Method
from .registry import register_method


class Combined(Method):
    parts: ClassVar[tuple[type[Method], ...]] = ()

    def __init__(self, **params):
        super().__init__(**params)  # validates against the union of defaults
        self.members = [self._member(part) for part in self.parts]

    def _member(self, part: type[Method]) -> Method:
        """The part built from its share of the parameters; its errors name the combination."""
        try:
            return part(**{k: v for k, v in self.params.items() if k in part.defaults})
        except UserError as err:
            text, prefix = str(err), f"method {part.name!r}"
            raise UserError(f"method {self.name!r}{text[len(prefix):]}" if text.startswith(prefix) else text) from None

    @property
    def needs_input_grad(self):  # type: ignore[override]
        return any(m.needs_input_grad for m in self.members)

    def ce_weight(self, ctx):
        return self.members[0].ce_weight(ctx)

    def penalties(self, model, batch, x, logits, ctx):
        out = {}
        for member in self.members:
            out.update(member.penalties(model, batch, x, logits, ctx))
        return out

    def start_epoch(self, epoch, num_epochs):
        for member in self.members:
            member.start_epoch(epoch, num_epochs)

    def state_dict(self):
        return {m.name: m.state_dict() for m in self.members if m.state_dict()}

    def load_state_dict(self, state):
        for member in self.members:
            member.load_state_dict(state.get(member.name, {}))


def combine(*parts: type[Method]) -> type[Combined]:
    """Register and return the method ``part1+part2+...`` made of ``parts`` (first part sets the CE weight)."""
    defaults: dict = {}
    choices: dict = {}
    bounds: dict = {}
    optional: set = set()
    for part in parts:
        clash = set(defaults) & set(part.defaults)
        if clash:
            raise ValueError(f"cannot combine {[p.name for p in parts]}: parameter(s) {sorted(clash)} clash")
        defaults.update(part.defaults)
        choices.update(part.choices)
        bounds.update(part.bounds)
        optional |= set(part.optional) | {k for k, v in part.defaults.items() if v is None}
    name = "+".join(p.name for p in parts)
    cls = type(
        "".join(p.__name__ for p in parts),
        (Combined,),
        {"name": name, "parts": tuple(parts), "defaults": defaults, "choices": choices, "bounds": bounds,
         "optional": frozenset(optional), "__doc__": f"Combination {name}: " + " + ".join(p.__name__ for p in parts) + " (penalties summed)."},
    )
    return register_method(cls)
