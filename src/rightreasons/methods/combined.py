"""Combinations of methods, e.g. IBP-Ex + RRR (Heo et al., NeurIPS 2023): built from the parts.

    loss = ce_weight * CE(f(x), y) + sum over parts of their penalties

``ce_weight`` is the one part's that schedules it (IBP-Ex's kappa), else 1. Hyperparameters are the
union of the parts' (names must not clash); schedule state is kept per part. Only parts whose objective
is the clean cross-entropy plus penalties (``composable``) can be combined, and at most one of them
may weight the cross-entropy: anything else is refused, in one line, when the combination is built.
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
        weighted = [m for m, part in zip(self.members, self.parts) if _weights_ce(part)]
        self._ce_member = weighted[0] if weighted else None

    def _member(self, part: type[Method]) -> Method:
        """The part built from its share of the parameters; its errors name the combination."""
        try:
            return part(**{k: v for k, v in self.params.items() if k in part.defaults})
        except UserError as err:
            text, prefix = str(err), f"method {part.name!r}"
            raise UserError(f"method {self.name!r}{text[len(prefix):]}" if text.startswith(prefix) else text) from None

    def check_model(self, model):
        for member in self.members:
            member.check_model(model)

    def ce_weight(self, ctx):
        return 1.0 if self._ce_member is None else self._ce_member.ce_weight(ctx)

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
        unknown = sorted(set(state) - {m.name for m in self.members})
        if unknown:
            raise UserError(f"method {self.name!r}: unknown state keys {unknown}")
        for member in self.members:
            member.load_state_dict(state.get(member.name, {}))


def _weights_ce(part: type[Method]) -> bool:
    """Whether ``part`` weights the clean cross-entropy itself (overrides ``ce_weight``)."""
    return part.ce_weight is not Method.ce_weight


def combine(*parts: type[Method], register: bool = True) -> type[Combined]:
    """The method ``part1+part2+...`` made of ``parts`` (registered under that name unless ``register``
    is False). Raises a one-line :class:`UserError` naming the part that cannot be combined and why."""
    name = "+".join(p.name for p in parts)
    if len(parts) < 2:
        raise UserError(f"cannot combine {name!r}: a combination needs at least two methods")
    for part in parts:
        if not part.composable:
            raise UserError(f"cannot combine {name!r}: {part.name}: {part.not_composable}")
    weighted = [p.name for p in parts if _weights_ce(p)]
    if len(weighted) > 1:
        raise UserError(f"cannot combine {name!r}: {' and '.join(weighted)} both weight the clean cross-entropy")
    defaults: dict = {}
    choices: dict = {}
    bounds: dict = {}
    optional: set = set()
    infinite: set = set()
    for part in parts:
        clash = set(defaults) & set(part.defaults)
        if clash:
            raise UserError(f"cannot combine {name!r}: {part.name} repeats the parameter(s) {', '.join(sorted(clash))}")
        defaults.update(part.defaults)
        choices.update(part.choices)
        bounds.update(part.bounds)
        optional |= set(part.optional) | {k for k, v in part.defaults.items() if v is None}
        infinite |= set(part.infinite)
    cls = type(
        "".join(p.__name__ for p in parts),
        (Combined,),
        {"name": name, "parts": tuple(parts), "defaults": defaults, "choices": choices, "bounds": bounds,
         "optional": frozenset(optional), "infinite": frozenset(infinite),
         "paper": " + ".join(p.paper for p in parts if p.paper),
         "uses_mask": any(p.uses_mask for p in parts),
         "needs_input_grad": any(p.needs_input_grad for p in parts),
         "double_backward": any(p.double_backward for p in parts),
         "needs_split_model": any(p.needs_split_model for p in parts),
         "standalone": any(p.standalone for p in parts),
         "__doc__": f"Combination {name}: " + " + ".join(p.__name__ for p in parts) + " (penalties summed)."},
    )
    return register_method(cls) if register else cls
