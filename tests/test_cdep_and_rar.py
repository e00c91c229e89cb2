"""CDEP and robust attribution regularisation (IG-NORM, IG-SUM-NORM) on tiny models."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import tiny_batch, tiny_cnn, tiny_mlp
from rightreasons.batch import Batch
from rightreasons.errors import UserError
from rightreasons.methods import StepContext, create_method
from rightreasons.ops.contextual_decomposition import contextual_decomposition

MODELS = {"mlp": tiny_mlp, "cnn": tiny_cnn}
RAR = ("ig_norm", "ig_sum_norm")
CHEAP = {"pgd_steps": 2, "ig_steps": 4, "pgd_ig_steps": 2}


def ctx(seed=0):
    return StepContext(generator=torch.Generator().manual_seed(seed))


def _erm(model, batch):
    return create_method("erm").loss(model, batch, ctx()).loss


# ---------------------------------------------------------------- CDEP


RIEGER = {"score": "softmax", "activation_rule": "cd", "bias_rule": "proportional"}


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_cdep_softmax_score_is_riegers_share_of_the_masked_region(model_name):
    model = MODELS[model_name](dtype=torch.float64)
    batch = tiny_batch(n=6, dtype=torch.float64)  # the last example has no annotation
    out = create_method("cdep", lam=2.0, **RIEGER).loss(model, batch, ctx())
    keep = batch.has_mask
    rel, irrel = contextual_decomposition(model, batch.x[keep], batch.mask[keep])
    # Rieger et al.'s score: softmax over the stacked (relevant, irrelevant) logit of every (example, class)
    share = F.softmax(torch.stack((rel.reshape(-1), irrel.reshape(-1)), dim=1), dim=1)[:, 0].mean()
    torch.testing.assert_close(out.terms["cdep"], 2.0 * share.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out.loss, _erm(model, batch) + 2.0 * share, rtol=1e-12, atol=1e-14)


def test_cdep_default_score_is_the_occlusion_effect_on_logit_differences():
    # defaults (abs score, marginal rule, bias to the irrelevant part) on an MLP: rel = f(x) - f(x * (1 - m))
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(n=6, dtype=torch.float64)
    out = create_method("cdep", lam=2.0).loss(model, batch, ctx())
    keep = batch.has_mask
    x, m = batch.x[keep], batch.mask[keep]
    effect = model(x) - model(x * (1 - m))
    expected = (effect - effect.mean(1, keepdim=True)).abs().mean()
    torch.testing.assert_close(out.terms["cdep"], 2.0 * expected.detach(), rtol=1e-12, atol=1e-14)


def test_softmax_share_is_fooled_by_opposite_shifts_but_abs_score_is_not():
    # a linear model whose masked pixel decides the class, plus -C on every logit from the masked pixel and
    # +C from an always-on unmasked pixel: the logits (and predictions) do not change with C
    n_cls, big = 3, 40.0
    model = nn.Linear(2, n_cls, bias=False).double()
    with torch.no_grad():
        model.weight[:, 0] = torch.tensor([3.0, -1.0, -2.0]) - big  # feature 0: the masked shortcut
        model.weight[:, 1] = big  # feature 1: unmasked, always 1
    x = torch.tensor([[1.0, 1.0], [0.5, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand_as(x).clone()
    batch = Batch(x, torch.tensor([0, 0]), mask, torch.tensor([0, 0]), torch.ones(2, dtype=torch.bool))
    share = create_method("cdep", **RIEGER).loss(model, batch, ctx()).terms["cdep"]
    score = create_method("cdep", lam=1.0).loss(model, batch, ctx()).terms["cdep"]
    assert share < 1e-12  # the Rieger share says "the shortcut is not used"
    rel = (x * mask) @ model.weight.T
    torch.testing.assert_close(score, (rel - rel.mean(1, keepdim=True)).abs().mean().detach())
    assert score > 1.0


def test_cdep_relevant_part_is_the_masked_region_not_its_complement():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64, partial=False)
    inverted = Batch(batch.x, batch.y, 1 - batch.mask, batch.group, batch.has_mask)
    for params in ({}, RIEGER):
        method = create_method("cdep", **params)
        a = method.loss(model, batch, ctx()).terms["cdep"]
        b = method.loss(model, inverted, ctx()).terms["cdep"]
        rel, irrel = contextual_decomposition(model, batch.x, batch.mask, method.bias_rule, method.activation_rule)
        expected = (rel - rel.mean(1, keepdim=True)).abs().mean() if params == {} else torch.sigmoid(rel - irrel).mean()
        torch.testing.assert_close(a, method.lam * expected.detach())
        assert not torch.allclose(a, b)


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("params", [{}, RIEGER])
def test_cdep_zero_mask_and_unannotated_reduce_to_erm(model_name, params):
    model = MODELS[model_name](dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    batch.mask.zero_()
    torch.testing.assert_close(create_method("cdep", **params).loss(model, batch, ctx()).loss, _erm(model, batch))
    batch = tiny_batch(dtype=torch.float64)
    batch.has_mask.zero_()
    torch.testing.assert_close(create_method("cdep", **params).loss(model, batch, ctx()).loss, _erm(model, batch))


def test_cdep_unsupported_model_raises_user_error():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(36, 3)

        def forward(self, x):
            return self.fc(torch.nn.functional.gelu(x.flatten(1)))  # traced with torch.fx; GELU has no rule

    with pytest.raises(UserError, match="gelu"):
        create_method("cdep").loss(Net(), tiny_batch(), ctx())


# ---------------------------------------------------------------- IG-NORM / IG-SUM-NORM


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("region", ["all", "mask"])
@pytest.mark.parametrize("name", RAR)
def test_rar_finite_loss_and_gradient_on_every_parameter(name, region, model_name):
    model = MODELS[model_name]()
    out = create_method(name, region=region, **CHEAP).loss(model, tiny_batch(), ctx())
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert all(torch.isfinite(v) for v in out.terms.values())
    assert out.terms["ig_l1"] > 0
    out.loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", RAR)
@pytest.mark.parametrize("start_training", [True, False])
def test_rar_mode_restored_when_raising_mid_attack(name, start_training):
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.calls = tiny_mlp(), 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("boom")
            return self.inner(x)

    model = Boom().train(start_training)
    with pytest.raises(RuntimeError, match="boom"):
        create_method(name, **CHEAP).loss(model, tiny_batch(), ctx())
    assert all(m.training == start_training for m in model.modules())


@pytest.mark.parametrize("name", RAR)
def test_rar_mask_region_reduces_to_erm_without_masks(name):
    model = tiny_mlp(dtype=torch.float64)
    for clear in ("mask", "has_mask"):
        batch = tiny_batch(dtype=torch.float64)
        getattr(batch, clear).zero_()
        loss = create_method(name, region="mask", **CHEAP).loss(model, batch, ctx()).loss
        torch.testing.assert_close(loss, _erm(model, batch), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("region", ["all", "mask"])
def test_attack_stays_in_the_ball_and_is_reproducible(region):
    model = tiny_cnn(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    method = create_method("ig_norm", region=region, eps=0.2, pgd_steps=3, pgd_ig_steps=2)
    objective = lambda x, xa: method.ig_term(model, batch, xa, 2, True).sum()  # noqa: E731
    a = method.attack(model, batch, objective, ctx(seed=5))
    b = method.attack(model, batch, objective, ctx(seed=5))
    c = method.attack(model, batch, objective, ctx(seed=6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    radius = 0.2 * (batch.effective_mask if region == "mask" else torch.ones_like(batch.x))
    assert ((a - batch.x).abs() <= radius + 1e-12).all()
    assert a.min() >= 0 and a.max() <= 1
    if region == "mask":
        assert torch.equal(a[batch.effective_mask == 0], batch.x[batch.effective_mask == 0])
    assert (a != batch.x).any()


def test_attack_beats_random_points_of_the_ball():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(n=8, dtype=torch.float64)
    method = create_method("ig_norm", eps=0.3, pgd_steps=10)
    norm = lambda xa: method.ig_term(model, batch, xa, 8, False)  # noqa: E731
    x_adv = method.attack(model, batch, lambda x, xa: method.ig_term(model, batch, xa, 8, True).sum(), ctx())
    g = torch.Generator().manual_seed(0)
    random = [(batch.x + 0.3 * (2 * torch.rand(batch.x.shape, generator=g, dtype=torch.float64) - 1)).clamp(0, 1)
              for _ in range(20)]
    best_random = torch.stack([norm(r) for r in random]).max(0).values
    assert (norm(x_adv) > best_random).float().mean() >= 0.75


def test_ig_norm_term_obeys_completeness():
    # sum IG(x -> x') = l_y(x') - l_y(x): with many IG steps the L1 norm bounds the loss change
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    batch = tiny_batch(dtype=torch.float64)
    method = create_method("ig_norm", ig_steps=200)
    x_adv = (batch.x + 0.3).clamp(0, 1)
    from rightreasons.methods.ig_norm import loss_attribution

    ig = loss_attribution(model, batch.x, x_adv, batch.y, 200, None, False)
    change = (F.cross_entropy(model(x_adv), batch.y, reduction="none")
              - F.cross_entropy(model(batch.x), batch.y, reduction="none"))
    torch.testing.assert_close(ig.flatten(1).sum(1), change.detach(), rtol=0, atol=1e-3)
    assert (method.ig_term(model, batch, x_adv, 200, False) >= change.abs().detach() - 1e-3).all()


def test_ig_sum_norm_with_zero_beta_is_adversarial_training():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    method = create_method("ig_sum_norm", beta=0.0, pgd_steps=5)
    out = method.loss(model, batch, ctx(seed=1))
    x_adv = method.attack(model, batch, lambda x, xa: F.cross_entropy(model(xa), batch.y, reduction="sum"), ctx(seed=1))
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x_adv), batch.y))
    assert out.terms["ce_adv"] > out.terms["ce"]


@pytest.mark.parametrize("name", RAR)
def test_rar_chunking_does_not_change_the_loss(name):
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    a = create_method(name, **CHEAP).loss(model, batch, ctx(3)).loss
    b = create_method(name, chunk_size=1, **CHEAP).loss(model, batch, ctx(3)).loss
    ga = torch.autograd.grad(a, list(model.parameters()))
    gb = torch.autograd.grad(b, list(model.parameters()))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


def test_rar_random_start_needs_a_generator():
    with pytest.raises(UserError, match="Generator"):
        create_method("ig_norm", **CHEAP).loss(tiny_mlp(), tiny_batch(), StepContext())
    create_method("ig_sum_norm", random_start=False, **CHEAP).loss(tiny_mlp(), tiny_batch(), StepContext())
    with pytest.raises(UserError, match="random_start"):  # IG-NORM's gradient vanishes at x' = x
        create_method("ig_norm", random_start=False)


def test_rar_rejects_bad_options():
    with pytest.raises(UserError, match="region"):
        create_method("ig_norm", region="inside")
    with pytest.raises(UserError, match="eps"):
        create_method("ig_sum_norm", eps=-1.0)
