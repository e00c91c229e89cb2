"""Madry et al.'s PGD adversarial training (``madry``): the loss is the CE at a whole-input l_inf PGD point
that stays in the ball and the data range, reduces to ERM at eps = 0, is seeded by ``ctx.generator`` only,
and training with it makes a small model robust where ERM is not."""

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_batch, tiny_mlp
from rightreasons.batch import Batch
from rightreasons.errors import UserError
from rightreasons.methods import RRR, Madry, StepContext, combine, create_method
from rightreasons.ops.masked_pgd import masked_pgd


def ctx(seed=0, input_range=(0.0, 1.0)):
    return StepContext(generator=torch.Generator().manual_seed(seed), input_range=input_range)


def test_eps_zero_is_erm_exactly():
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(dtype=torch.float64)
    erm = create_method("erm").loss(model, batch, ctx())
    out = create_method("madry", eps=0.0).loss(model, batch, ctx())
    assert torch.equal(out.loss, erm.loss)
    assert torch.equal(out.logits, erm.logits)


@pytest.mark.parametrize("random_start", [True, False])
def test_the_adversary_stays_in_the_ball_and_the_data_range_and_is_masked_pgd(random_start, monkeypatch):
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(dtype=torch.float64)
    method = Madry(eps=0.2, steps=5, random_start=random_start)
    seen = []
    import rightreasons.methods.madry as module

    def spy(*args, **kwargs):
        seen.append(masked_pgd(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(module, "masked_pgd", spy)
    out = method.loss(model, batch, ctx(seed=3))
    (x_adv,) = seen
    x = batch.x
    assert (x_adv - x).abs().max() <= 0.2 + 1e-12
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any()
    # the same primitive with a mask of ones, the same settings and the same generator seed
    again = masked_pgd(model, x, batch.y, torch.ones_like(x), 0.2, 5, step_size=2.5 * 0.2 / 5, bounds=(0.0, 1.0),
                       random_start=random_start, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x_adv, again)
    assert torch.equal(out.loss, F.cross_entropy(model(again), batch.y))
    assert torch.equal(out.terms["ce_adv"], out.loss.detach())
    torch.testing.assert_close(out.terms["ce"], F.cross_entropy(model(x), batch.y))


def test_clip_none_is_the_training_range_and_infinite_clips_do_not_clamp():
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(dtype=torch.float64)
    x_adv = Madry(eps=0.3, random_start=False).adversary(model, batch, ctx(input_range=(0.2, 0.8)))
    # clamped to [0.2, 0.8]; a feature already outside it (the box always holds x) only moves towards it
    x = batch.x
    assert (x_adv >= torch.minimum(x, torch.tensor(0.2, dtype=x.dtype))).all()
    assert (x_adv <= torch.maximum(x, torch.tensor(0.8, dtype=x.dtype))).all()
    inside = (x >= 0.2) & (x <= 0.8)
    assert x_adv[inside].min() >= 0.2 and x_adv[inside].max() <= 0.8
    assert ((x_adv - x).abs() <= 0.3 + 1e-12).all()
    free = Madry(eps=0.3, random_start=False, clip_min="-inf", clip_max="inf").adversary(model, batch, ctx())
    assert (free - batch.x).abs().max() <= 0.3 + 1e-12
    assert free.min() < 0 or free.max() > 1  # the ball reaches outside [0, 1] and nothing clamps it


def test_the_adversarial_ce_is_at_least_the_clean_ce():
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(n=16, dtype=torch.float64)
    for random_start in (True, False):
        out = Madry(eps=0.1, random_start=random_start).loss(model, batch, ctx())
        assert out.terms["ce_adv"] >= out.terms["ce"]


def test_same_seed_same_loss_and_randomness_only_from_the_generator():
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(dtype=torch.float64)
    method = Madry(eps=0.2, steps=1)  # one step from the random start: the start matters
    torch.manual_seed(123)
    a = method.loss(model, batch, ctx(seed=5)).loss
    torch.manual_seed(456)
    b = method.loss(model, batch, ctx(seed=5)).loss
    assert torch.equal(a, b)
    assert not torch.equal(a, method.loss(model, batch, ctx(seed=6)).loss)
    with pytest.raises(UserError, match="torch.Generator"):
        method.loss(model, batch, StepContext())


def test_declared_not_composable_and_refused_by_name():
    assert not Madry.composable and not Madry.uses_mask and "Madry" in Madry.paper
    with pytest.raises(UserError, match="madry: "):
        combine(Madry, RRR, register=False)
    with pytest.raises(UserError, match="madry"):
        Madry().explanation_loss(tiny_mlp(), tiny_batch(), ctx())
    with pytest.raises(UserError, match="clip_min"):
        Madry(clip_min=1.0, clip_max=0.0)


def _problem(n, seed):
    """Two classes (Tsipras et al.'s construction): feature 0 is 0.5 -/+ 0.3 but agrees with the label only
    90% of the time (robust at eps 0.1); features 1-20 are 0.5 -/+ 0.05 plus noise (together nearly
    perfect, so ERM relies on them; each is flipped by a 0.1 perturbation)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    s = (2 * y - 1).double().unsqueeze(1)
    agree = torch.where(torch.rand(n, 1, generator=g) < 0.9, 1.0, -1.0).double()
    robust = 0.5 + 0.3 * s * agree
    weak = 0.5 + 0.05 * s + 0.02 * torch.randn(n, 20, generator=g, dtype=torch.float64)
    x = torch.cat([robust, weak], 1).clamp(0, 1)
    return Batch(x, y, torch.zeros_like(x))


def _pgd_accuracy(model, batch, eps):
    x_adv = masked_pgd(model, batch.x, batch.y, torch.ones_like(batch.x), eps, 20, bounds=(0.0, 1.0))
    with torch.no_grad():
        return (model(x_adv).argmax(1) == batch.y).double().mean().item()


def _train(name, batch, **params):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(21, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).double()
    method = create_method(name, **params)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    context = ctx(seed=1)
    for _ in range(150):
        optimiser.zero_grad()
        method.loss(model, batch, context).loss.backward()
        optimiser.step()
    return model


def test_training_with_madry_is_robust_where_erm_is_not():
    train, test = _problem(512, 0), _problem(512, 1)
    erm = _train("erm", train)
    madry = _train("madry", train, eps=0.1, steps=5)
    with torch.no_grad():
        assert (erm(test.x).argmax(1) == test.y).double().mean() > 0.95
        assert (madry(test.x).argmax(1) == test.y).double().mean() > 0.8
    erm_robust, madry_robust = _pgd_accuracy(erm, test, 0.1), _pgd_accuracy(madry, test, 0.1)
    assert madry_robust > 0.8 and madry_robust > erm_robust + 0.4, (erm_robust, madry_robust)


def test_the_eps_ramp_is_erm_during_the_warmup_then_grows_linearly_and_is_saved():
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(dtype=torch.float64)
    method = Madry(eps=0.3, steps=3, random_start=False, warmup_epochs=1, ramp_epochs=2)
    method.start_epoch(0, 5)
    erm = create_method("erm").loss(model, batch, ctx())
    assert torch.equal(method.loss(model, batch, ctx()).loss, erm.loss)  # warm-up: eps = 0
    seen = []
    import rightreasons.methods.madry as module

    def spy(model, x, y, mask, eps, steps, **kwargs):
        seen.append((eps, kwargs["step_size"]))
        return masked_pgd(model, x, y, mask, eps, steps, **kwargs)

    for epoch in (1, 2, 3, 4):
        method.start_epoch(epoch, 5)
        module_spy = pytest.MonkeyPatch()
        module_spy.setattr(module, "masked_pgd", spy)
        method.loss(model, batch, ctx())
        module_spy.undo()
    # epoch 1 (the ramp's start) is still eps 0: no attack; halfway at epoch 2; the full radius from epoch 3
    assert [round(e, 12) for e, _ in seen] == [0.15, 0.3, 0.3]
    assert all(abs(step - 2.5 * e / 3) < 1e-12 for e, step in seen)
    state = method.state_dict()
    fresh = Madry(eps=0.3, steps=3, random_start=False, warmup_epochs=1, ramp_epochs=2)
    fresh.load_state_dict(state)
    assert fresh.eps_schedule.current() == method.eps_schedule.current() == 0.3
    with pytest.raises(UserError, match="unknown state keys"):
        fresh.load_state_dict({"eps": {"epoch": 1}, "other": 1})
