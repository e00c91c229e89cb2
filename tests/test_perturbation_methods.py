"""The perturbation methods (Avg-Ex, PGD-Ex, IBP-Ex and the +RRR combinations, Heo et al. 2023) on a
tiny MLP and CNN: finite loss and terms, a gradient on every parameter, mode restored when the loss
raises, ERM when the mask is empty, schedules that move and round-trip, and composition from parts."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_batch, tiny_cnn, tiny_mlp
from rightreasons import UserError
from rightreasons.methods import METHODS, Method, StepContext, create_method
from rightreasons.ops.masked_pgd import masked_pgd

MODELS = {"mlp": tiny_mlp, "cnn": tiny_cnn}
NAMES = ["avg_ex", "pgd_ex", "ibp_ex", "pgd_ex+rrr", "ibp_ex+rrr"]
LATE = 20  # an epoch after every default ramp has finished


pytestmark = pytest.mark.usefixtures("one_thread")


def ctx(epoch=LATE, seed=0):
    return StepContext(epoch=epoch, num_epochs=LATE + 1, step=0, generator=torch.Generator().manual_seed(seed))


def started(name, epoch=LATE, **params):
    method = create_method(name, **params)
    method.start_epoch(epoch, LATE + 1)
    return method


def test_all_registered():
    assert set(NAMES) <= set(METHODS.names())


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("name", NAMES)
def test_finite_loss_terms_and_every_parameter_gets_a_gradient(name, model_name):
    model = MODELS[model_name]()
    batch = tiny_batch()
    out = started(name).loss(model, batch, ctx())
    assert out.loss.dim() == 0 and math.isfinite(out.loss.item())
    assert out.logits.shape == (len(batch), 3)
    robust = name.split("+")[0]
    assert out.terms[robust].item() > 0  # the explanation term is active at this schedule point
    assert all(torch.isfinite(v).all() for v in out.terms.values())
    out.loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("epoch", [0, 2, LATE])
def test_empty_masks_reduce_to_erm(name, epoch):
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    erm = F.cross_entropy(model(batch.x), batch.y)
    zero = tiny_batch(dtype=torch.float64)
    zero.mask.zero_()
    unannotated = tiny_batch(dtype=torch.float64)
    unannotated.has_mask.zero_()
    for b in (zero, unannotated):
        method = started(name, epoch)
        out = method.loss(model, b, ctx(epoch))
        if method.ce_weight(ctx(epoch)) == 1.0:
            assert torch.equal(out.loss, erm)  # exactly: every explanation term is exactly zero
        else:  # kappa * CE + (1 - kappa) * CE: equal up to rounding
            torch.testing.assert_close(out.loss, erm, rtol=1e-12, atol=1e-12)


def test_ibp_ex_is_exactly_erm_during_the_warmup():
    model = tiny_cnn()
    batch = tiny_batch()
    method = started("ibp_ex", 0)
    assert method.ce_weight(ctx(0)) == 1.0
    assert torch.equal(method.loss(model, batch, ctx(0)).loss, F.cross_entropy(model(batch.x), batch.y))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fail_on", [1, 2, 3])
@pytest.mark.parametrize("training", [True, False])
def test_model_mode_restored_when_the_loss_raises(name, fail_on, training):
    class Boom(torch.nn.Sequential):
        calls = 0

        def forward(self, x):
            Boom.calls += 1
            if Boom.calls == fail_on:
                raise RuntimeError("boom")
            return super().forward(x)

    model = Boom(*tiny_mlp())
    model.train(training)
    try:
        started(name).loss(model, tiny_batch(), ctx())
    except (RuntimeError, UserError):
        pass
    assert all(m.training == training for m in model.modules())


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trips_the_schedules(name):
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    a = started(name, 2, **({"ramp_epochs": 4.0} if "pgd" in name else {}))
    b = create_method(name, **({"ramp_epochs": 4.0} if "pgd" in name else {}))
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    assert torch.equal(a.loss(model, batch, ctx(2)).loss, b.loss(model, batch, ctx(2)).loss)
    fresh = create_method(name, **({"ramp_epochs": 4.0} if "pgd" in name else {}))
    if a.state_dict():  # schedules exist: the restored point differs from a fresh start
        assert fresh.state_dict() != a.state_dict()
    if "+" not in name:
        with pytest.raises(UserError):
            b.load_state_dict({"bogus": {}})


def test_ibp_ex_schedule_moves_eps_and_kappa():
    method = create_method("ibp_ex", eps=2.0, kappa_end=0.4, warmup_epochs=1, ramp_epochs=2)
    seen = []
    for epoch in range(5):
        method.start_epoch(epoch, 5)
        seen.append((method.eps_schedule.current(), method.ce_weight(ctx(epoch))))
    assert seen[0] == (0.0, 1.0) and seen[1] == (0.0, 1.0)
    assert seen[2][0] == pytest.approx(1.0) and seen[2][1] == pytest.approx(0.7)
    assert seen[3] == (2.0, 0.4) and seen[4] == (2.0, 0.4)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_ibp_ex_fused_pass_equals_the_generic_penalty_path(model_name):
    model = MODELS[model_name](dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    method = started("ibp_ex")
    fused = method.loss(model, batch, ctx())
    generic = Method.loss(method, model, batch, ctx())  # clean forward + penalties(), as in combinations
    torch.testing.assert_close(fused.loss, generic.loss, rtol=0, atol=1e-12)
    assert torch.equal(fused.logits, generic.logits)


def test_ibp_ex_margin_is_tighter_than_naive_and_clipping_tightens_the_box():
    model = tiny_cnn(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    loss = {}
    for key, params in {"margin": {}, "naive": {"bound": "naive"},
                        "clipped": {"clip_min": 0.0, "clip_max": 1.0}}.items():
        loss[key] = started("ibp_ex", eps=2.0, **params).loss(model, batch, ctx()).terms["ibp_ex"].item()
    assert loss["margin"] < loss["naive"]
    assert loss["clipped"] < loss["margin"]


def test_pgd_ex_term_is_the_ce_at_the_masked_adversary_of_annotated_examples():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(n=6, dtype=torch.float64)
    batch.has_mask[:] = torch.tensor([True, False, True, True, False, True])
    method = started("pgd_ex", eps=0.5, steps=4, alpha=2.0)
    term = method.loss(model, batch, ctx()).terms["pgd_ex"]
    keep = batch.has_mask
    x_adv = masked_pgd(model, batch.x[keep], batch.y[keep], batch.mask[keep], 0.5, 4, bounds=(0.0, 1.0))
    expected = 2.0 * F.cross_entropy(model(x_adv), batch.y[keep], reduction="sum") / len(batch)
    torch.testing.assert_close(term, expected.detach(), rtol=0, atol=1e-12)


def test_pgd_ex_step_is_step_factor_times_eps_over_steps_unless_step_size_is_given():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(n=6, dtype=torch.float64)

    def term(**params):
        return started("pgd_ex", eps=0.5, steps=3, **params).loss(model, batch, ctx()).terms["pgd_ex"]

    for factor in (1.0, 2.5):
        x_adv = masked_pgd(model, batch.x[:-1], batch.y[:-1], batch.mask[:-1], 0.5, 3, step_size=factor * 0.5 / 3,
                           bounds=(0.0, 1.0))
        expected = F.cross_entropy(model(x_adv), batch.y[:-1], reduction="sum") / len(batch)
        torch.testing.assert_close(term(step_factor=factor), expected.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(term(step_size=0.5 / 3, step_factor=7.0), term(step_factor=1.0), rtol=0, atol=0)
    assert not torch.equal(term(step_factor=0.5), term())  # half the box is out of reach


@pytest.mark.parametrize("name", ["pgd_ex+rrr", "ibp_ex+rrr"])
def test_combinations_are_the_sum_of_their_parts(name):
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    robust_name = name.split("+")[0]
    combo = started(name, lam=3.0)
    part = METHODS.get(robust_name)
    robust = started(robust_name, **{k: v for k, v in combo.params.items() if k in part.defaults})
    rrr = started("rrr", lam=3.0)
    out = combo.loss(model, batch, ctx())
    r_out, g_out = robust.loss(model, batch, ctx()), rrr.loss(model, batch, ctx())
    torch.testing.assert_close(out.terms[robust_name], r_out.terms[robust_name], rtol=0, atol=1e-12)
    torch.testing.assert_close(out.terms["rrr"], g_out.terms["rrr"], rtol=0, atol=1e-12)
    torch.testing.assert_close(out.loss, r_out.loss + g_out.terms["rrr"], rtol=0, atol=1e-12)
    assert set(combo.params) == set(METHODS.get(robust_name).defaults) | set(METHODS.get("rrr").defaults)


def test_randomness_comes_from_the_generator_only():
    model = tiny_mlp()
    batch = tiny_batch()
    state = torch.get_rng_state()
    for name, params in (("avg_ex", {}), ("pgd_ex", {"random_start": True, "steps": 1})):
        method = started(name, **params)
        a = method.loss(model, batch, ctx(seed=1)).loss
        b = method.loss(model, batch, ctx(seed=1)).loss
        c = method.loss(model, batch, ctx(seed=2)).loss
        assert torch.equal(a, b) and not torch.equal(a, c)
        with pytest.raises(UserError, match="Generator"):
            method.loss(model, batch, StepContext(epoch=LATE, num_epochs=LATE + 1))
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(UserError, match="kappa_end"):
        create_method("ibp_ex", kappa_end=1.5)
    with pytest.raises(UserError, match="clip_min"):
        create_method("ibp_ex", clip_min=1.0, clip_max=0.0)
    with pytest.raises(UserError, match="noise"):
        create_method("avg_ex", noise="salt")
    with pytest.raises(UserError, match="steps"):
        create_method("pgd_ex", steps=-1)
