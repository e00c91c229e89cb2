"""The method contract (DESIGN.md §2, §6), checked for every registered method on a tiny MLP and CNN:
finite loss and terms, a gradient on every parameter, model mode restored when the loss raises, an
all-zero mask reduces mask-based methods to ERM, schedules round-trip through state_dict, and
hyperparameters are validated."""

import math

import pytest
import torch

from rightreasons.errors import UserError
from rightreasons.methods import METHODS, StepContext, create_method

from helpers import tiny_batch, tiny_cnn, tiny_mlp

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
