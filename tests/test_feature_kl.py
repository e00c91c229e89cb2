"""feature_kl (Tao & Shokri) and the split-model protocol: what each term moves, the KL target, the
method contract on split models (the shared contract test skips this standalone method)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import tiny_batch, tiny_cnn, tiny_mlp
from rightreasons.errors import UserError
from rightreasons.methods import StepContext, create_method
from rightreasons.methods.feature_kl import feature_kl_term, masked_out
from rightreasons.models import create_model
from rightreasons.models_split import SplitSequential, insert_mapping, mapping_parameters, split_model


def split_tiny_mlp(dtype=torch.float32):
    return insert_mapping(tiny_mlp(dtype=dtype), 3).to(dtype)  # mapping on the 8 hidden units


def split_tiny_cnn():
    return insert_mapping(tiny_cnn(), 6)  # mapping on the 6 penultimate units


def ctx(step=0):
    return StepContext(step=step, generator=torch.Generator().manual_seed(0))


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def perturb_mapping(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in mapping_parameters(model):
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_split_models_compose_and_start_as_the_unsplit_network():
    base = tiny_mlp()
    split = insert_mapping(tiny_mlp(), 3)
    x = torch.rand(4, 1, 6, 6)
    f, g, c = split_model(split)
    torch.testing.assert_close(split(x), c(g(f(x))))
    torch.testing.assert_close(split(x), base(x))  # identity mapping: same function as without it
    for name, shape in (("split-mlp", (1, 28, 28)), ("split-cnn", (1, 28, 28)), ("split-mlp", (3, 5, 5))):
        model = create_model(name, shape, 10)
        assert isinstance(model, SplitSequential)
        x = torch.rand(2, *shape)
        f, g, c = split_model(model)
        torch.testing.assert_close(model(x), c(g(f(x))))
        again = create_model(name, shape, 10)
        again.load_state_dict(model.state_dict())  # the mapping is an ordinary saved layer
    mlp = create_model("split-mlp-ross", (1, 28, 28), 10)
    assert [(m.in_features, m.out_features) for m in mlp if isinstance(m, nn.Linear)] == \
        [(784, 50), (50, 30), (30, 30), (30, 10)]
    early = create_model("split-mlp", (1, 28, 28), 10)  # default: the mapping after the first hidden layer
    assert [(m.in_features, m.out_features) for m in early if isinstance(m, nn.Linear)] == \
        [(784, 100), (100, 100), (100, 100), (100, 10)]
    assert early.cut == 3 and early[early.cut].in_features == 100
    late = create_model("split-mlp", (1, 28, 28), 10, mapping_after=-1)
    assert late.cut == 5
    with pytest.raises(UserError, match="mapping_after=2"):
        create_model("split-mlp", (1, 28, 28), 10, mapping_after=2)


def test_a_plain_model_is_refused_with_a_hint():
    with pytest.raises(UserError, match="not a split model.*split-mlp"):
        create_method("feature_kl").loss(tiny_mlp(), tiny_batch(), ctx())


def test_the_kl_term_moves_the_mapping_only():
    model = split_tiny_mlp()
    perturb_mapping(model)
    batch = tiny_batch()
    f, g, _ = split_model(model)
    kl = feature_kl_term(f, g, f(batch.x), masked_out(batch.x, batch.mask))
    assert kl.item() > 0
    mapping = {id(p) for p in mapping_parameters(model)}
    for p, grad in zip(model.parameters(), grads(model, kl).values()):
        if id(p) in mapping:
            assert grad is not None and grad.abs().sum() > 0
        else:
            assert grad is None or grad.abs().sum() == 0
    # with update="mapping_and_features" the features move too, the classifier still does not
    kl = feature_kl_term(f, g, f(batch.x), masked_out(batch.x, batch.mask), detach_features=False)
    got = grads(model, kl)
    assert got["1.weight"].abs().sum() > 0 and got["4.weight"] is None


def test_with_an_all_zero_mask_the_target_is_the_unmasked_features():
    model = split_tiny_mlp(torch.float64)
    batch = tiny_batch(dtype=torch.float64, partial=False)
    batch.mask.zero_()
    f, g, _ = split_model(model)
    assert torch.equal(masked_out(batch.x, batch.mask), batch.x)
    assert feature_kl_term(f, g, f(batch.x), masked_out(batch.x, batch.mask)).item() == pytest.approx(0.0, abs=1e-12)
    perturb_mapping(model)
    h = f(batch.x)
    expected = F.kl_div(F.log_softmax(g(h), 1), F.softmax(h, 1), reduction="batchmean")
    torch.testing.assert_close(feature_kl_term(f, g, h, batch.x), expected)


def test_masked_out_uses_the_baseline_inside_the_mask_only():
    x = torch.rand(2, 1, 3, 3)
    m = torch.zeros_like(x)
    m[:, :, 0] = 1
    out = masked_out(x, m, baseline=0.5)
    assert torch.equal(out[:, :, 1:], x[:, :, 1:]) and bool((out[:, :, 0] == 0.5).all())


def test_unannotated_examples_give_erm_and_the_kl_counts_annotated_ones():
    model = split_tiny_mlp(torch.float64)
    perturb_mapping(model)
    batch = tiny_batch(dtype=torch.float64)
    method = create_method("feature_kl", lam=2.0)
    full = method.loss(model, batch, ctx())
    batch.has_mask.zero_()
    none = method.loss(model, batch, ctx())
    torch.testing.assert_close(none.loss, F.cross_entropy(model(batch.x), batch.y), rtol=1e-12, atol=1e-12)
    assert none.terms["feature_kl"].item() == 0 and full.terms["feature_kl"].item() > 0
    torch.testing.assert_close(full.loss, full.terms["ce"] + 2.0 * full.terms["feature_kl"])


@pytest.mark.parametrize("make", [split_tiny_mlp, split_tiny_cnn])
@pytest.mark.parametrize("params", [{}, {"update": "mapping_and_features"}, {"baseline": 0.5, "lam": 3.0}])
def test_contract_finite_loss_and_every_parameter_gets_a_gradient(make, params):
    model = make()
    out = create_method("feature_kl", **params).loss(model, tiny_batch(), ctx())
    assert out.loss.dim() == 0 and math.isfinite(out.loss.item()) and out.logits.shape == (5, 3)
    for name, grad in grads(model, out.loss).items():
        assert grad is not None and torch.isfinite(grad).all(), name


def test_alternate_schedule_even_steps_ce_odd_steps_kl_on_the_mapping():
    model = split_tiny_mlp()
    perturb_mapping(model)
    batch = tiny_batch()
    method = create_method("feature_kl", schedule="alternate", lam=1.0, update="mapping")
    even = method.loss(model, batch, ctx(0))
    torch.testing.assert_close(even.loss, F.cross_entropy(model(batch.x), batch.y))
    odd = method.loss(model, batch, ctx(1))
    torch.testing.assert_close(odd.loss, odd.terms["feature_kl"])
    mapping = {id(p) for p in mapping_parameters(model)}
    for p, grad in zip(model.parameters(), grads(model, odd.loss).values()):
        assert (grad is not None) == (id(p) in mapping)
    # the default update also moves the features, never the classifier (layer 4 is the last Linear)
    odd = create_method("feature_kl", schedule="alternate").loss(model, batch, ctx(1))
    got = grads(model, odd.loss)
    assert got["1.weight"] is not None and got["3.weight"] is not None and got["4.weight"] is None
    batch.has_mask.zero_()  # nothing to align: the odd step falls back to CE
    torch.testing.assert_close(method.loss(model, batch, ctx(1)).loss, F.cross_entropy(model(batch.x), batch.y))


class Boom(SplitSequential):
    def __init__(self, fail_on):
        inner = split_tiny_mlp()
        super().__init__(*inner, cut=inner.cut)
        self.calls, self.fail_on = 0, fail_on

    def features(self, x):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("boom")
        return super().features(x)


@pytest.mark.parametrize("fail_on", [1, 2])
@pytest.mark.parametrize("start_training", [True, False])
def test_model_mode_is_left_alone_when_the_loss_raises(fail_on, start_training):
    model = Boom(fail_on)
    model.train(start_training)
    with pytest.raises(RuntimeError, match="boom"):
        create_method("feature_kl").loss(model, tiny_batch(), ctx())
    assert all(m.training == start_training for m in model.modules())


def test_hyperparameters_are_validated():
    with pytest.raises(UserError, match="no parameter 'mu'"):
        create_method("feature_kl", mu=1)
    with pytest.raises(UserError, match="schedule='sometimes'"):
        create_method("feature_kl", schedule="sometimes")
    with pytest.raises(UserError, match="lam"):
        create_method("feature_kl", lam=-1.0)
