"""The method contract.

A method turns (model, batch) into a loss. ``__init__`` only stores hyperparameters, validated against
the class's ``defaults``; :meth:`Method.loss` returns a :class:`LossOutput`. Methods never call
``backward``, never step an optimiser and never touch the global RNG (randomness comes from
``ctx.generator``). Schedules (eps ramps, CE weights) live on the method and are advanced once per
epoch by the trainer through :meth:`Method.start_epoch`; their state is saved with
:meth:`Method.state_dict`.

The default :meth:`Method.loss` is ``ce_weight * CE(f(x), y) + sum(penalties)``, evaluated with one
forward pass; a method adds its explanation terms by overriding :meth:`Method.penalties`, so methods
compose by summing penalties (see :class:`Combined`), and :meth:`Method.explanation_loss` gives the
penalties alone, to add to a criterion of your own. A method whose objective is not of that form
(it overrides :meth:`Method.loss`: Group DRO's reweighted CE, IG-SUM-NORM's adversarial CE) declares
``composable = False`` and says why; combining it is refused when the combination is built.

Capabilities are class attributes, read by the trainer, the benchmark and the documentation (never
looked up by method name): :attr:`uses_mask`, :attr:`needs_input_grad`, :attr:`needs_split_model`,
:attr:`composable`, :attr:`standalone` and :attr:`paper`. :meth:`Method.check_model` refuses a model
the method cannot handle before the first training step.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..batch import Batch
from ..errors import UserError
from ..files import shown_value as _short
from ..layers import fused_double_backward
from ..models.text import is_text_model, math_attention


@dataclass
class StepContext:
    """What a method may know about where training is: epoch (0-based), step, its RNG, and the
    training data's value range (``ExplanationDataset.input_range``; what a ``clip_min`` / ``clip_max``
    of None clamps perturbed inputs to)."""

    epoch: int = 0
    num_epochs: int = 1
    step: int = 0
    generator: Optional[torch.Generator] = None
    input_range: tuple[float, float] = (0.0, 1.0)


@dataclass
class LossOutput:
    """Total loss (differentiable), the clean logits, and named terms (detached, for logging)."""

    loss: torch.Tensor
    logits: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


#: spellings of "no value" for an optional parameter (one whose default is None or listed in ``optional``)
NONE_WORDS = ("none", "null")
#: integer hyperparameters are in (-INT_LIMIT, INT_LIMIT) (step counts, sample counts, sizes: a 32-bit int)
INT_LIMIT = 2**31


def _coerce(method: str, name: str, value: Any, default: Any, optional: bool = False) -> Any:
    """Convert ``value`` (possibly a CLI string) to the type of ``default``. An optional parameter also
    takes None (or "none" / "null"); one whose default is None is an optional float."""
    if (optional or default is None) and (
        value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)
    ):
        return None
    if default is None:
        try:
            number = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if math.isnan(number):
            raise UserError(f"method {method!r}: parameter {name!r} must be a number or none, got {_short(value)}")
        return number
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return lowered in ("true", "1", "yes")
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        return value
    raise UserError(f"method {method!r}: parameter {name!r} must be {kind.__name__}, got {_short(value)}")


def check_number(method: str, name: str, value: Any, infinite: bool = False) -> None:
    """Refuse a float hyperparameter that is NaN, or infinite unless ``infinite`` (the method declares that
    the parameter may be), and an integer one outside (-INT_LIMIT, INT_LIMIT): one line naming both."""
    if isinstance(value, float) and not math.isfinite(value) and (math.isnan(value) or not infinite):
        allowed = "a finite number, -inf or inf" if infinite else "a finite number"
        raise UserError(f"method {method!r}: parameter {name!r} must be {allowed}, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT < value < INT_LIMIT:
        raise UserError(f"method {method!r}: parameter {name!r} must be an integer of magnitude below 2**31, "
                        f"got {_short(value)}")


def param_text(value: Any) -> str:
    """``value`` as ``--param KEY=VALUE`` takes it back (the inverse of :func:`_coerce`): ``none``,
    ``inf`` / ``-inf``, strings unquoted."""
    if value is None:
        return NONE_WORDS[0]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(value)


def check_clip_order(method: "Method") -> None:
    """Refuse clip_min > clip_max when both are given (a None end is only known during training), and a
    clip_min of inf or a clip_max of -inf (a range with no room in it; -inf / inf mean no clamp)."""
    if method.clip_min is not None and method.clip_min == math.inf:
        raise UserError(f"method {method.name!r}: clip_min=inf leaves no values; use -inf (or none) for no lower clamp")
    if method.clip_max is not None and method.clip_max == -math.inf:
        raise UserError(f"method {method.name!r}: clip_max=-inf leaves no values; use inf (or none) for no upper clamp")
    if method.clip_min is not None and method.clip_max is not None and not method.clip_min <= method.clip_max:
        raise UserError(f"method {method.name!r}: clip_min={method.clip_min} must be <= clip_max={method.clip_max}")


def clip_range(method: "Method", ctx: StepContext) -> Optional[tuple[float, float]]:
    """The interval ``method`` clamps perturbed inputs to: its ``clip_min`` / ``clip_max``, each None
    replaced by the training data's range ``ctx.input_range``; None (no clamp) when both are infinite."""
    low = ctx.input_range[0] if method.clip_min is None else method.clip_min
    high = ctx.input_range[1] if method.clip_max is None else method.clip_max
    if not low <= high:
        raise UserError(f"method {method.name!r}: clip_min={low} must be <= clip_max={high}")
    return None if math.isinf(low) and math.isinf(high) else (float(low), float(high))


def attached(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """``x_adv`` as a point to train on: itself, or, when ``x`` carries a graph to trainable weights (a text
    model's embeddings), ``x + (x_adv - x)`` with the perturbation detached, so that the loss at ``x_adv``
    also trains what produced ``x``."""
    return x + (x_adv - x).detach() if x.requires_grad else x_adv


def context(ctx: Optional[StepContext]) -> StepContext:
    """``ctx``, or a default :class:`StepContext` (epoch 0, no generator) when the caller gave none."""
    return StepContext() if ctx is None else ctx


class Method:
    """Base class: plain empirical risk minimisation unless a subclass adds penalties."""

    name: ClassVar[str] = "method"
    #: where the method comes from (authors, venue, year)
    paper: ClassVar[str] = ""
    #: whether the method reads ``batch.mask`` (if so, an all-zero mask must reduce it to ERM)
    uses_mask: ClassVar[bool] = True
    #: whether the clean forward pass must be differentiable w.r.t. the input (input-gradient penalties)
    needs_input_grad: ClassVar[bool] = False
    #: whether the loss differentiates input gradients (double backward; attention then needs its math kernel);
    #: implied by needs_input_grad
    double_backward: ClassVar[bool] = False
    #: whether the model must follow the split-model protocol (``rightreasons.models.split``)
    needs_split_model: ClassVar[bool] = False
    #: False when the objective is not ``ce_weight * CE + sum(penalties)``; ``not_composable`` says why
    composable: ClassVar[bool] = True
    not_composable: ClassVar[str] = ""
    #: True when the shared contract tests (plain model, mask = 0 -> ERM) do not apply; its own tests do
    standalone: ClassVar[bool] = False
    #: hyperparameter name -> default value (its type is the parameter's type)
    defaults: ClassVar[dict[str, Any]] = {}
    #: hyperparameter name -> allowed values, for string choices
    choices: ClassVar[dict[str, tuple]] = {}
    #: hyperparameter name -> (low, high) inclusive bounds, either may be None
    bounds: ClassVar[dict[str, tuple]] = {}
    #: names of parameters that may also be None (besides those whose default is None)
    optional: ClassVar[frozenset] = frozenset()
    #: names of float parameters that may be -inf / inf (e.g. clip_min / clip_max: no clamp); every other
    #: float parameter must be finite, and NaN is never a value
    infinite: ClassVar[frozenset] = frozenset()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _text_entry_points(cls)

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise UserError(f"method {self.name!r} has no parameter {unknown[0]!r}; its parameters: {known}")
        resolved = dict(self.defaults)
        for key, value in params.items():
            resolved[key] = _coerce(self.name, key, value, self.defaults[key], key in self.optional)
        for key, value in resolved.items():
            check_number(self.name, key, value, key in self.infinite)
            allowed = self.choices.get(key)
            if allowed is not None and value not in allowed:
                raise UserError(f"method {self.name!r}: {key}={value!r} is not one of {', '.join(map(str, allowed))}")
            low, high = self.bounds.get(key, (None, None))
            if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
                raise UserError(f"method {self.name!r}: {key}={value!r} is outside [{low}, {high}]")
        self.params: dict[str, Any] = resolved
        for key, value in resolved.items():
            setattr(self, key, value)

    # -- the contract -------------------------------------------------------------------------
    def check_model(self, model: nn.Module) -> None:
        """Raise a one-line :class:`UserError` if the method cannot train ``model`` (a layer without a
        bound or decomposition rule, no split-model protocol). Called by ``fit`` before the first step."""

    def ce_weight(self, ctx: StepContext) -> float:
        """Weight of the clean cross-entropy term (1 unless a schedule says otherwise)."""
        return 1.0

    def penalties(
        self, model: nn.Module, batch: Batch, x: torch.Tensor, logits: torch.Tensor, ctx: StepContext
    ) -> dict[str, torch.Tensor]:
        """Weighted extra loss terms. ``x`` is the input the clean ``logits`` were computed from; it
        requires grad when :attr:`needs_input_grad` is set, so input gradients can reuse the forward pass."""
        return {}

    def loss(self, model: nn.Module, batch: Batch, ctx: Optional[StepContext] = None) -> LossOutput:
        """The training loss: ``ce_weight * CE(f(x), y) + sum(penalties)``, the clean logits, the terms."""
        ctx = context(ctx)
        x, logits, penalties = self._forward(model, batch, ctx)
        ce = F.cross_entropy(logits, batch.y)
        total = self.ce_weight(ctx) * ce
        terms = {"ce": ce.detach()}
        for key, value in penalties.items():
            total = total + value
            terms[key] = value.detach()
        return LossOutput(total, logits, terms)

    def explanation_loss(self, model: nn.Module, batch: Batch, ctx: Optional[StepContext] = None) -> LossOutput:
        """The explanation terms without the cross-entropy, to add to a criterion of your own:
        ``out = method.explanation_loss(model, batch)``, then ``my_criterion(out.logits, y) + out.loss``
        (``out.logits`` are the clean logits of the same forward pass, differentiable). Refused for a
        method that is not ``composable``."""
        if not self.composable:
            raise UserError(f"method {self.name!r} has no explanation terms apart from its loss: {self.not_composable}")
        ctx = context(ctx)
        _, logits, penalties = self._forward(model, batch, ctx)
        total = sum(penalties.values(), logits.new_zeros(()))
        return LossOutput(total, logits, {k: v.detach() for k, v in penalties.items()})

    def _forward(self, model, batch, ctx):
        # inputs that already require grad (a text model's embeddings) keep their graph to the weights
        x = batch.x.detach().requires_grad_(True) if self.needs_input_grad and not batch.x.requires_grad else batch.x
        logits = model(x)
        return x, logits, self.penalties(model, batch, x, logits, ctx)

    # -- schedules ----------------------------------------------------------------------------
    def start_epoch(self, epoch: int, num_epochs: int) -> None:
        """Advance per-epoch schedules (called by the trainer before each epoch)."""

    def state_dict(self) -> dict[str, Any]:
        """Schedule state to checkpoint (plain numbers)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise UserError(f"method {self.name!r} has no state, got keys {sorted(state)}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def _in_embedding_space(function):
    """``function(self, model, batch, ...)`` that, for a text model, runs on its body and the batch embedded
    (``models.text``). When the method differentiates input gradients it runs under the math attention
    kernel (text) and with the fused double-backward layers (``layers.fused_double_backward``)."""

    @functools.wraps(function)
    def entry(self, model, batch, *args, **kwargs):
        twice = self.needs_input_grad or self.double_backward
        if not is_text_model(model):
            with fused_double_backward(model) if twice else contextlib.nullcontext():
                return function(self, model, batch, *args, **kwargs)
        with math_attention() if twice else contextlib.nullcontext(), \
                fused_double_backward(model.body) if twice else contextlib.nullcontext():
            return function(self, model.body, model.embed_batch(batch), *args, **kwargs)

    entry.text_entry = True
    return entry


def _in_embedding_space_check(function):
    """``check_model(self, model)`` that checks a text model's body (what the method trains in embedding space)."""

    @functools.wraps(function)
    def entry(self, model):
        return function(self, model.body if is_text_model(model) else model)

    entry.text_entry = True
    return entry


def _text_entry_points(cls) -> None:
    """Make ``loss``, ``explanation_loss`` and ``check_model`` defined by ``cls`` accept text models: every
    method then trains a text model in its embedding space, whoever calls it."""
    for name, wrapper in (("loss", _in_embedding_space), ("explanation_loss", _in_embedding_space),
                          ("check_model", _in_embedding_space_check)):
        function = vars(cls).get(name)
        if function is not None and not getattr(function, "text_entry", False):
            setattr(cls, name, wrapper(function))


_text_entry_points(Method)
