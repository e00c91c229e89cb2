"""The method contract of ``rightreasons.methods.base``, checked for every registered method on a tiny MLP
and CNN: finite loss and terms, a gradient on every parameter, model mode restored when the loss raises,
an all-zero mask (or no annotation) reduces mask-based methods to ERM, schedules round-trip through
state_dict, and hyperparameters are validated. Also: every pair of methods either composes (loss = the
one CE weight times CE plus both parts' penalties) or is refused, in one line, when it is built;
``explanation_loss`` is the loss without its cross-entropy; capabilities are declared on the class."""

import math

import pytest
import torch

from helpers import tiny_batch, tiny_cnn, tiny_mlp
from rightreasons.errors import UserError
from rightreasons.methods import METHODS, StepContext, create_method

MODELS = {"mlp": tiny_mlp, "cnn": tiny_cnn}


def standard_methods():
    """Methods that follow the single-model loss contract (others declare ``standalone = True``)."""
    return [n for n in METHODS.names() if not getattr(METHODS.get(n), "standalone", False)]


def mask_methods():
    """Standard methods that read masks (for those, an empty mask must reduce the loss to ERM's)."""
    return [n for n in standard_methods() if METHODS.get(n).uses_mask]


def ctx(epoch=0, num_epochs=4, seed=0):
    return StepContext(epoch=epoch, num_epochs=num_epochs, step=0, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("name", standard_methods())
def test_loss_is_finite_and_every_parameter_gets_a_gradient(name, model_name):
    model = MODELS[model_name]()
    method = create_method(name)
    for epoch in (0, 3):  # early and late in the schedules
        method.start_epoch(epoch, 4)
        batch = tiny_batch()
        model.zero_grad(set_to_none=True)
        out = method.loss(model, batch, ctx(epoch))
        assert out.loss.dim() == 0 and math.isfinite(out.loss.item())
        assert out.logits.shape == (len(batch), 3)
        assert all(torch.isfinite(v).all() for v in out.terms.values())
        out.loss.backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None, f"{name}: no gradient for {pname}"
            assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", mask_methods())
def test_all_zero_mask_reduces_to_erm(name):
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    batch.mask.zero_()
    erm = create_method("erm").loss(model, batch, ctx()).loss
    method = create_method(name)
    for epoch in (0, 3):
        method.start_epoch(epoch, 4)
        loss = method.loss(model, batch, ctx(epoch)).loss
        # ce_weight may be below 1 under a schedule; with no mask the worst case equals the clean case
        torch.testing.assert_close(loss, erm, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", mask_methods())
def test_unannotated_examples_behave_like_erm(name):
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    batch.has_mask.zero_()
    erm = create_method("erm").loss(model, batch, ctx()).loss
    torch.testing.assert_close(create_method(name).loss(model, batch, ctx()).loss, erm, rtol=1e-9, atol=1e-12)


class Boom(torch.nn.Module):
    """A model whose ``fail_on``-th forward call raises (so the error can hit a method mid-attack)."""

    def __init__(self, fail_on):
        super().__init__()
        self.inner = tiny_mlp()
        self.calls, self.fail_on = 0, fail_on

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("boom")
        return self.inner(x)


@pytest.mark.parametrize("name", standard_methods())
@pytest.mark.parametrize("start_training", [True, False])
@pytest.mark.parametrize("fail_on", [1, 2, 3])
def test_model_mode_restored_when_the_loss_raises(name, start_training, fail_on):
    model = Boom(fail_on)
    model.train(start_training)
    try:
        create_method(name).loss(model, tiny_batch(), ctx())
    except RuntimeError as exc:
        assert "boom" in str(exc)
    except UserError as exc:  # layer-type rule tables (CD, IBP) refuse the wrapper module up front
        assert "Boom" in str(exc)
    assert all(m.training == start_training for m in model.modules())


@pytest.mark.parametrize("name", standard_methods())
def test_schedule_state_round_trips(name):
    a = create_method(name)
    a.start_epoch(2, 4)
    b = create_method(name)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()


@pytest.mark.parametrize("name", standard_methods())
def test_unknown_and_mistyped_hyperparameters_are_rejected(name):
    with pytest.raises(UserError, match="no parameter 'definitely_not_a_param'"):
        create_method(name, definitely_not_a_param=1)
    cls = METHODS.get(name)
    for key, default in cls.defaults.items():
        if isinstance(default, float):
            with pytest.raises(UserError, match=key):
                create_method(name, **{key: "not-a-number"})


def test_rrr_penalty_grows_with_gradient_inside_the_mask_and_ignores_outside():
    """A linear model whose weights touch only unmasked pixels has zero RRR penalty; weights on the
    masked pixels give a positive one."""
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3))
    batch = tiny_batch()
    with torch.no_grad():
        w = torch.randn(3, 1, 6, 6)
        lin[1].weight.copy_((w * (1 - batch.mask[0])).flatten(1))
    rrr = create_method("rrr", lam=1.0)
    assert rrr.loss(lin, batch, ctx()).terms["rrr"].item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        lin[1].weight.copy_(w.flatten(1))
    assert rrr.loss(lin, batch, ctx()).terms["rrr"].item() > 1e-4


def test_duplicate_method_name_is_an_error():
    from rightreasons.methods import Method, register_method

    class Again(Method):
        name = "rrr"

    with pytest.raises(ValueError, match="already registered"):
        register_method(Again)


# -- combinations: every pair of registered methods composes or is refused when it is built ---------------------

def method_pairs():
    return [(a, b) for a in METHODS.names() for b in METHODS.names()]


def _alone(name, model, batch, seed=0):
    method = create_method(name)
    method.start_epoch(3, 4)  # schedules at their final values: every term is live
    return method.loss(model, batch, ctx(3, seed=seed))


@pytest.mark.parametrize("a,b", method_pairs())
def test_every_pair_composes_or_is_refused_when_built(a, b):
    from rightreasons.methods import combine

    cls_a, cls_b = METHODS.get(a), METHODS.get(b)
    try:
        combined = combine(cls_a, cls_b, register=False)
    except UserError as exc:
        message = str(exc)
        assert "\n" not in message and f"{a}+{b}" in message
        refused_for = [c for c in (cls_a, cls_b) if not c.composable]
        # refused for a reason: a part that is not a penalty (named), a clashing parameter, or two CE weights
        assert (any(f"{c.name}: {c.not_composable}" in message for c in refused_for)
                or "repeats the parameter" in message or "both weight the clean cross-entropy" in message)
        return
    assert cls_a.composable and cls_b.composable
    if combined.standalone:
        return  # tested on its own models
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    method = combined()
    method.start_epoch(3, 4)
    out = method.loss(model, batch, ctx(3))
    # each part's objective is in the loss: its terms appear, with the value the part computes alone
    part_a, part_b = _alone(a, model, batch), _alone(b, model, batch)
    for part in (part_a, part_b):
        for key, value in part.terms.items():
            assert key in out.terms
            torch.testing.assert_close(out.terms[key], value, rtol=1e-9, atol=1e-12)
    # and the loss is the CE (at the one CE weight) plus every penalty
    penalties = sum(v for k, v in out.terms.items() if k != "ce")
    weight = method.ce_weight(ctx(3))
    torch.testing.assert_close(out.loss.detach(), weight * out.terms["ce"] + penalties, rtol=1e-9, atol=1e-12)
    schedules = [create_method(n) for n in (a, b)]
    for s in schedules:
        s.start_epoch(3, 4)
    own = [s.ce_weight(ctx(3)) for s in schedules]
    parts_penalties = part_a.loss.detach() - own[0] * out.terms["ce"] + part_b.loss.detach() - own[1] * out.terms["ce"]
    torch.testing.assert_close(out.loss.detach(), weight * out.terms["ce"] + parts_penalties, rtol=1e-9, atol=1e-12)
    assert weight in own


def test_the_methods_that_own_their_loss_are_refused_by_name():
    from rightreasons.methods import RRR, GroupDRO, IGSumNorm, combine

    for part in (GroupDRO, IGSumNorm):
        with pytest.raises(UserError, match=f"{part.name}: "):
            combine(part, RRR, register=False)
        with pytest.raises(UserError, match=f"{part.name}: "):
            combine(RRR, part, register=False)


def test_a_method_whose_loss_is_its_own_declares_it():
    """A method that overrides ``loss`` (its objective is not CE + penalties) must say it is not composable,
    unless its ``loss`` is only a faster path to the same value (checked here against the default loss)."""
    from rightreasons.methods import Method

    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    for name in METHODS.names():
        cls = METHODS.get(name)
        if cls.loss is Method.loss or not cls.composable or cls.standalone:
            continue
        method = create_method(name)
        method.start_epoch(3, 4)
        fast = method.loss(model, batch, ctx(3)).loss
        default = Method.loss(method, model, batch, ctx(3)).loss
        torch.testing.assert_close(fast, default, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", standard_methods())
def test_explanation_loss_is_the_loss_without_its_cross_entropy(name):
    cls = METHODS.get(name)
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    method = create_method(name)
    method.start_epoch(3, 4)
    if not cls.composable:
        with pytest.raises(UserError, match=name):
            method.explanation_loss(model, batch, ctx(3))
        return
    full = method.loss(model, batch, ctx(3))
    extra = method.explanation_loss(model, batch, ctx(3))
    torch.testing.assert_close(extra.logits, full.logits)
    expected = full.loss - method.ce_weight(ctx(3)) * full.terms["ce"]
    torch.testing.assert_close(extra.loss.detach(), expected.detach(), rtol=1e-9, atol=1e-12)
    assert set(extra.terms) == set(full.terms) - {"ce"}


@pytest.mark.parametrize("name", ["erm", "rrr", "cdep", "ibp_ex", "pgd_ex+rrr"])
def test_the_step_context_is_optional(name):
    out = create_method(name).loss(tiny_mlp(), tiny_batch())
    assert math.isfinite(out.loss.item())


def test_capabilities_are_declared_on_the_class():
    for name in METHODS.names():
        cls = METHODS.get(name)
        for flag in ("uses_mask", "needs_input_grad", "needs_split_model", "composable", "standalone"):
            assert isinstance(getattr(cls, flag), bool), (name, flag)
        assert cls.paper, f"{name}: no paper"
        assert cls.composable or cls.not_composable, f"{name}: not composable, but says not why"
    assert METHODS.get("feature_kl").needs_split_model and METHODS.get("rrr").needs_input_grad
    assert METHODS.get("pgd_ex+rrr").needs_input_grad and not METHODS.get("group_dro").uses_mask
