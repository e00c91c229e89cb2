"""Masked PGD: the perturbation lives in the mask box (exactly zero outside), respects the data range,
is reproducible from its generator, really increases the loss, and leaves the model as it found it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import shortcut_splits, tiny_batch, tiny_cnn, tiny_mlp
from rightreasons import UserError
from rightreasons.data import ExplanationDataset
from rightreasons.metrics.robust import masked_pgd_accuracy
from rightreasons.ops.masked_pgd import masked_pgd

MODELS = {"mlp": tiny_mlp, "cnn": tiny_cnn}


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("random_start", [False, True])
def test_perturbation_stays_in_the_mask_box_and_the_data_range(name, random_start):
    model = MODELS[name]()
    batch = tiny_batch(n=8)
    eps = 0.3
    x_adv = masked_pgd(model, batch.x, batch.y, batch.mask, eps, 5, bounds=(0.0, 1.0),
                       random_start=random_start, generator=_gen())
    off = batch.mask == 0
    assert torch.equal(x_adv[off], batch.x[off])  # bit for bit
    assert ((x_adv - batch.x).abs() <= eps + 1e-6).all()
    assert (x_adv >= 0).all() and (x_adv <= 1).all()
    assert (x_adv[~off] != batch.x[~off]).any()  # it did move inside the mask
    assert not x_adv.requires_grad


def test_unmasked_features_outside_the_range_are_never_clamped():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    x = batch.x * 3 - 1  # many values outside [0, 1]
    x_adv = masked_pgd(model, x, batch.y, batch.mask, 0.2, 4, bounds=(0.0, 1.0))
    off = batch.mask == 0
    assert torch.equal(x_adv[off], x[off])
    on = ~off
    inside = (x >= 0) & (x <= 1)
    assert ((x_adv - x).abs() <= 0.2 + 1e-12).all()
    assert ((x_adv[on & inside] >= 0) & (x_adv[on & inside] <= 1)).all()
    # a masked value outside the range may only move towards it
    above = on & (x > 1)
    assert (x_adv[above] <= x[above]).all()


def test_float_and_broadcast_masks():
    model = tiny_mlp()
    batch = tiny_batch()
    shared = batch.mask[:1].float()  # (1, C, H, W), broadcast over the batch
    x_adv = masked_pgd(model, batch.x, batch.y, shared, 0.5, 3)
    off = shared.expand_as(batch.x) == 0
    assert torch.equal(x_adv[off], batch.x[off])


def test_same_generator_seed_same_result_and_global_rng_untouched():
    model = tiny_cnn()
    batch = tiny_batch(n=6)
    state = torch.get_rng_state()
    a = masked_pgd(model, batch.x, batch.y, batch.mask, 0.4, 3, random_start=True, generator=_gen(7))
    b = masked_pgd(model, batch.x, batch.y, batch.mask, 0.4, 3, random_start=True, generator=_gen(7))
    c = masked_pgd(model, batch.x, batch.y, batch.mask, 0.4, 0, random_start=True, generator=_gen(8))
    d = masked_pgd(model, batch.x, batch.y, batch.mask, 0.4, 0, random_start=True, generator=_gen(9))
    assert torch.equal(a, b)
    assert not torch.equal(c, d)
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(UserError, match="Generator"):
        masked_pgd(model, batch.x, batch.y, batch.mask, 0.4, 3, random_start=True)


def test_linear_model_reaches_the_analytic_worst_case():
    """For a two-class linear model the CE is maximised at x - eps * m * sign(w_y - w_other)."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 2).double()
    x = torch.rand(4, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    m = torch.tensor([1, 1, 0, 1, 0, 0], dtype=torch.float64).expand(4, 6)
    direction = (lin.weight[y] - lin.weight[1 - y]).sign()
    expected = x - 0.25 * m * direction
    torch.testing.assert_close(masked_pgd(lin, x, y, m, 0.25, 3), expected, rtol=0, atol=1e-15)


def _train(model, data, steps=300):
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    g = _gen(0)
    for _ in range(steps // 10):
        for batch in data.batches(60, shuffle=True, generator=g):
            opt.zero_grad()
            F.cross_entropy(model(batch.x), batch.y).backward()
            opt.step()
    return model


def test_attack_increases_the_loss_of_a_model_that_uses_the_shortcut():
    data = shortcut_splits(n_train=300, n_eval=200).train
    model = _train(tiny_mlp(classes=2), data)
    batch = data.batch(slice(0, 200))
    x_adv = masked_pgd(model, batch.x, batch.y, batch.mask, 1.0, 10, bounds=(0.0, 1.0))
    with torch.no_grad():
        clean = F.cross_entropy(model(batch.x), batch.y)
        adv = F.cross_entropy(model(x_adv), batch.y)
    assert adv > clean + 0.5
    acc_clean = masked_pgd_accuracy(model, data, 0.0, steps=10)
    acc_adv = masked_pgd_accuracy(model, data, 1.0, steps=10)
    assert acc_clean > 0.9 and acc_adv < acc_clean - 0.3


def test_accuracy_metric_counts_unannotated_examples_as_clean():
    model = tiny_mlp()
    batch = tiny_batch(n=30, partial=False)
    data = ExplanationDataset(batch.x, batch.y, batch.mask.bool(), has_mask=torch.zeros(30, dtype=torch.bool))
    clean = (model(batch.x).argmax(1) == batch.y).float().mean().item()
    assert masked_pgd_accuracy(model, data, 5.0, steps=5) == pytest.approx(clean)


class Flaky(nn.Module):
    def __init__(self, fail_on):
        super().__init__()
        self.inner, self.calls, self.fail_on = tiny_mlp(), 0, fail_on
        self.seen_training = []

    def forward(self, x):
        self.calls += 1
        self.seen_training.append(self.training)
        if self.calls == self.fail_on:
            raise RuntimeError("boom")
        return self.inner(x)


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_during_the_attack_and_mode_restored_even_on_errors(training):
    batch = tiny_batch()
    model = Flaky(fail_on=0)
    model.train(training)
    masked_pgd(model, batch.x, batch.y, batch.mask, 0.3, 3)
    assert model.seen_training == [False] * 3
    assert all(m.training == training for m in model.modules())
    model = Flaky(fail_on=2)
    model.train(training)
    with pytest.raises(RuntimeError, match="boom"):
        masked_pgd(model, batch.x, batch.y, batch.mask, 0.3, 3)
    assert all(m.training == training for m in model.modules())


def test_parameter_grads_are_untouched():
    model = tiny_mlp()
    batch = tiny_batch()
    model[1].weight.grad = torch.full_like(model[1].weight, 0.5)
    masked_pgd(model, batch.x, batch.y, batch.mask, 0.3, 3)
    assert torch.equal(model[1].weight.grad, torch.full_like(model[1].weight, 0.5))
    assert model[3].weight.grad is None and model[1].bias.grad is None


def test_trivial_cases_and_bad_arguments():
    model = tiny_mlp()
    batch = tiny_batch()
    assert torch.equal(masked_pgd(model, batch.x, batch.y, batch.mask, 0.0, 5), batch.x)
    assert torch.equal(masked_pgd(model, batch.x, batch.y, batch.mask, 0.5, 0), batch.x)
    assert torch.equal(masked_pgd(model, batch.x, batch.y, torch.zeros_like(batch.mask), 0.5, 5), batch.x)
    for kwargs, match in [(dict(eps=-1.0), "eps"), (dict(steps=1.5), "steps"), (dict(bounds=(1.0, 0.0)), "bounds")]:
        args = dict(eps=0.1, steps=2) | kwargs
        with pytest.raises(UserError, match=match):
            masked_pgd(model, batch.x, batch.y, batch.mask, **args)
    with pytest.raises(UserError, match="mask shape"):
        masked_pgd(model, batch.x, batch.y, batch.mask[:, :, :3], 0.1, 2)
    with pytest.raises(UserError, match="y has shape"):
        masked_pgd(model, batch.x, batch.y[:2], batch.mask, 0.1, 2)
