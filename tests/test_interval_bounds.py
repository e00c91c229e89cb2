"""Interval bound propagation: soundness on sampled points and vertices, exactness at eps = 0, the
analytic bound of a linear layer, agreement with a slow independent interval-arithmetic implementation,
the margin bound's tightness, and one error listing every unsupported module."""

import copy
import itertools
import math

import pytest
import torch
from torch import nn

from helpers import tiny_batch, tiny_cnn, tiny_mlp
from rightreasons import UserError
from rightreasons.data import ExplanationDataset
from rightreasons.metrics.robust import ibp_certified_accuracy
from rightreasons.ops.interval_bounds import interval_bounds, margin_bounds, mask_box, masked_ibp

MODELS = {"mlp": tiny_mlp, "cnn": tiny_cnn}


pytestmark = pytest.mark.usefixtures("one_thread")


# -- a slow, obvious re-implementation: per-neuron loops, explicit min/max of products ------------
def _slow_linear(W, b, lo, hi):
    out_lo, out_hi = [], []
    for j in range(W.shape[0]):
        s_lo = s_hi = float(b[j])
        for i in range(W.shape[1]):
            a, c = float(W[j, i]) * float(lo[i]), float(W[j, i]) * float(hi[i])
            s_lo += min(a, c)
            s_hi += max(a, c)
        out_lo.append(s_lo)
        out_hi.append(s_hi)
    return out_lo, out_hi


def _slow_conv(conv, lo, hi):
    """lo/hi: nested lists [c][h][w]; any stride, zero padding, no groups."""
    W, b, p, s = conv.weight.detach(), conv.bias.detach(), conv.padding[0], conv.stride[0]
    C, H, Wd = len(lo), len(lo[0]), len(lo[0][0])
    k = W.shape[2]
    Ho, Wo = (H + 2 * p - k) // s + 1, (Wd + 2 * p - k) // s + 1
    out_lo = [[[0.0] * Wo for _ in range(Ho)] for _ in range(W.shape[0])]
    out_hi = [[[0.0] * Wo for _ in range(Ho)] for _ in range(W.shape[0])]
    for o in range(W.shape[0]):
        for r in range(Ho):
            for c in range(Wo):
                s_lo = s_hi = float(b[o])
                for ci, dr, dc in itertools.product(range(C), range(k), range(k)):
                    rr, cc = r * s + dr - p, c * s + dc - p
                    if 0 <= rr < H and 0 <= cc < Wd:
                        w = float(W[o, ci, dr, dc])
                        a, e = w * lo[ci][rr][cc], w * hi[ci][rr][cc]
                        s_lo += min(a, e)
                        s_hi += max(a, e)
                out_lo[o][r][c], out_hi[o][r][c] = s_lo, s_hi
    return out_lo, out_hi


def _relu_nested(v):
    return [_relu_nested(e) for e in v] if isinstance(v, list) else max(v, 0.0)


def _flatten_nested(v):
    return [e for s in v for e in _flatten_nested(s)] if isinstance(v, list) else [v]


def _slow_bounds(model, lo, hi):
    """One example; lo/hi tensors without batch dimension. Walks the layers of the tiny models."""
    lo, hi = lo.tolist(), hi.tolist()
    for layer in model:
        if isinstance(layer, nn.Linear):
            lo, hi = _slow_linear(layer.weight.detach(), layer.bias.detach(), lo, hi)
        elif isinstance(layer, nn.Conv2d):
            lo, hi = _slow_conv(layer, lo, hi)
        elif isinstance(layer, nn.ReLU):
            lo, hi = _relu_nested(lo), _relu_nested(hi)
        elif isinstance(layer, nn.MaxPool2d):
            def pool(t):
                return [[[max(t[c][2 * r + i][2 * q + j] for i in range(2) for j in range(2))
                          for q in range(len(t[0][0]) // 2)] for r in range(len(t[0]) // 2)] for c in range(len(t))]
            lo, hi = pool(lo), pool(hi)
        elif isinstance(layer, nn.Flatten):
            lo, hi = _flatten_nested(lo), _flatten_nested(hi)
        else:
            raise AssertionError(f"slow oracle does not know {layer}")
    return torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_agrees_with_slow_interval_arithmetic_in_float32(name):
    _assert_matches_slow_bounds(MODELS[name](), tiny_batch(n=3))


def _assert_matches_slow_bounds(model, batch):
    lower, upper = mask_box(batch.x, batch.mask, 0.4, bounds=(0.0, 1.0))
    lb, ub = interval_bounds(model, lower, upper)
    for n in range(len(batch.x)):
        slow_lb, slow_ub = _slow_bounds(model, lower[n], upper[n])
        torch.testing.assert_close(lb[n].double(), slow_lb, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ub[n].double(), slow_ub, rtol=1e-6, atol=1e-6)
    assert (ub - lb).max() > 1e-3  # the box is not degenerate, so the comparison means something


def test_strided_cnn_agrees_with_slow_interval_arithmetic_in_float32():
    from rightreasons.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn-strided", (1, 9, 9), 3, channels=(3, 4), hidden=5)  # stride 2 (9 -> 5), then 1
    assert [m.stride for m in model if isinstance(m, nn.Conv2d)] == [(2, 2), (1, 1)]
    _assert_matches_slow_bounds(model, tiny_batch(n=2, in_shape=(1, 9, 9)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eps_zero_gives_the_forward_pass(name):
    model = MODELS[name](dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    lb, ub = interval_bounds(model, *mask_box(batch.x, batch.mask, 0.0))
    out = model(batch.x)
    assert torch.equal(lb, ub)
    torch.testing.assert_close(lb, out, rtol=0, atol=1e-14)


def _vertices(lower, upper):
    """All corners of a box whose free coordinates are few (one example)."""
    free = (upper != lower).flatten().nonzero().squeeze(1)
    for bits in itertools.product((0, 1), repeat=len(free)):
        v = lower.flatten().clone()
        choice = torch.tensor(bits, dtype=torch.bool)
        v[free] = torch.where(choice, upper.flatten()[free], lower.flatten()[free])
        yield v.view_as(lower)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sampled_points_and_vertices_stay_inside(name):
    model = MODELS[name](dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    lower, upper = mask_box(batch.x, batch.mask, 0.7, bounds=(0.0, 1.0))
    lb, ub = interval_bounds(model, lower, upper)
    margins = margin_bounds(model, lower, upper, batch.y)
    g = torch.Generator().manual_seed(1)
    points = [lower + (upper - lower) * torch.rand(lower.shape, generator=g, dtype=torch.float64) for _ in range(50)]
    for n in range(len(batch)):  # 4 free pixels per example: 16 vertices each
        verts = torch.stack(list(_vertices(lower[n], upper[n])))
        assert len(verts) == 16
        out = model(verts)
        assert (out >= lb[n] - 1e-12).all() and (out <= ub[n] + 1e-12).all()
        marg = out[:, batch.y[n]].unsqueeze(1) - out
        assert (marg >= margins[n] - 1e-12).all()
    out = model(torch.cat(points)).view(len(points), *lb.shape)
    assert (out >= lb - 1e-12).all() and (out <= ub + 1e-12).all()
    marg = out.gather(2, batch.y.view(1, -1, 1).expand(len(points), -1, 1)) - out
    assert (marg >= margins - 1e-12).all()


def test_linear_layer_matches_the_analytic_bound():
    torch.manual_seed(0)
    lin = nn.Linear(7, 4).double()
    x = torch.rand(3, 7, dtype=torch.float64)
    r = torch.rand(3, 7, dtype=torch.float64)
    lb, ub = interval_bounds(lin, x - r, x + r)
    centre = x @ lin.weight.T + lin.bias
    radius = r @ lin.weight.abs().T
    torch.testing.assert_close(lb, centre - radius, rtol=0, atol=1e-14)
    torch.testing.assert_close(ub, centre + radius, rtol=0, atol=1e-14)


def test_linear_layer_with_a_sparse_box_matches_the_dense_bound():
    """Boxes that move few input features take a column-restricted path: same numbers."""
    torch.manual_seed(0)
    lin = nn.Linear(100, 5).double()
    x = torch.rand(4, 100, dtype=torch.float64)
    mask = torch.zeros_like(x)
    mask[0, 3:6] = 1
    mask[2, 90:97] = 1
    lb, ub = interval_bounds(lin, *mask_box(x, mask, 0.3))
    radius = (0.3 * mask) @ lin.weight.abs().T
    centre = lin(x)
    torch.testing.assert_close(lb, centre - radius, rtol=0, atol=1e-14)
    torch.testing.assert_close(ub, centre + radius, rtol=0, atol=1e-14)
    assert torch.equal(lb[1], ub[1])


def test_features_outside_the_mask_are_fixed():
    batch = tiny_batch(dtype=torch.float64)
    lower, upper = mask_box(batch.x, batch.mask, 5.0, bounds=(0.0, 1.0))
    off = batch.mask == 0
    assert torch.equal(lower[off], batch.x[off]) and torch.equal(upper[off], batch.x[off])
    assert (lower[~off] == 0).all() and (upper[~off] == 1).all()
    # a model that never looks at the masked pixels has zero-width bounds
    model = tiny_mlp(dtype=torch.float64)
    with torch.no_grad():
        model[1].weight.mul_((1 - batch.mask[0]).flatten())
    lb, ub = interval_bounds(model, lower, upper)
    torch.testing.assert_close(lb, ub, rtol=0, atol=1e-14)


def test_mask_box_never_excludes_x():
    x = torch.tensor([[-0.5, 0.5, 1.5]], dtype=torch.float64)
    lower, upper = mask_box(x, torch.ones_like(x), 0.2, bounds=(0.0, 1.0))
    assert (lower <= x).all() and (x <= upper).all()
    torch.testing.assert_close(lower, torch.tensor([[-0.5, 0.3, 1.3]], dtype=torch.float64))
    torch.testing.assert_close(upper, torch.tensor([[-0.3, 0.7, 1.5]], dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_margin_bound_is_at_least_the_naive_bound(name):
    model = MODELS[name](dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    lower, upper = mask_box(batch.x, batch.mask, 1.0)
    lb, ub = interval_bounds(model, lower, upper)
    naive = lb.gather(1, batch.y.view(-1, 1)) - ub
    margins = margin_bounds(model, lower, upper, batch.y)
    assert (margins >= naive - 1e-12).all()
    assert (margins > naive + 1e-6).any()  # strictly tighter somewhere on this model
    assert torch.equal(margins.gather(1, batch.y.view(-1, 1)), torch.zeros(len(batch), 1, dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fused_clean_pass_matches_the_separate_computations(name):
    model = MODELS[name](dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    logits, margins = masked_ibp(model, batch.x, batch.y, batch.mask, 0.3, clean=True)
    assert torch.equal(logits, model(batch.x))
    torch.testing.assert_close(margins, margin_bounds(model, *mask_box(batch.x, batch.mask, 0.3), batch.y),
                               rtol=0, atol=1e-12)
    clipped = masked_ibp(model, batch.x, batch.y, batch.mask, 0.3, bounds=(0.0, 1.0))
    torch.testing.assert_close(clipped, margin_bounds(model, *mask_box(batch.x, batch.mask, 0.3, (0.0, 1.0)), batch.y),
                               rtol=0, atol=1e-12)


def test_bounds_are_differentiable():
    model = tiny_cnn(dtype=torch.float64)
    batch = tiny_batch(n=1, dtype=torch.float64)
    x = batch.x.clone().requires_grad_(True)

    def f(inp):
        lb, ub = interval_bounds(model, *mask_box(inp, batch.mask, 0.2))
        return torch.cat([lb, ub, margin_bounds(model, *mask_box(inp, batch.mask, 0.2), batch.y)], 1)

    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    masked_ibp(model, batch.x, batch.y, batch.mask, 0.2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _sound(model, x, r, samples=30):
    lb, ub = interval_bounds(model, x - r, x + r)
    g = torch.Generator().manual_seed(0)
    for _ in range(samples):
        p = x + r * (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1)
        out = model(p)
        assert (out >= lb - 1e-10).all() and (out <= ub + 1e-10).all()
    return lb, ub


def test_other_supported_layers_are_sound():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(-2, 2)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), bn, nn.LeakyReLU(0.1), nn.AvgPool2d(2), nn.Dropout(0.5),
        nn.Sequential(nn.Tanh(), nn.Flatten()), nn.Linear(48, 5), nn.Sigmoid(), nn.Identity(), nn.Linear(5, 3),
    ).double().eval()
    x = torch.rand(4, 1, 10, 10, dtype=torch.float64)
    _sound(model, x, 0.1 * torch.rand_like(x))
    assert model[4].training is False


def test_batch_norm_in_train_mode_uses_the_batch_statistics():
    # formerly refused; now the clean batch's statistics (here the box centre x) are a fixed affine map
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)).train()
    x = torch.rand(5, 4)
    before = model[1].running_mean.clone()
    lb, ub = interval_bounds(model, x, x)
    torch.testing.assert_close(lb, copy.deepcopy(model)(x))
    assert torch.equal(lb, ub) and torch.equal(model[1].running_mean, before)
    model.eval()
    lb, ub = interval_bounds(model, x, x)
    torch.testing.assert_close(lb, model(x))


class Custom(nn.Module):
    def forward(self, x):
        return x * 2


def test_every_unsupported_module_is_listed_in_one_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Sequential(nn.ReLU(), Custom()), nn.Linear(4, 2))
    x = torch.rand(2, 4)
    with pytest.raises(UserError) as info:
        interval_bounds(model, x, x)
    msg = str(info.value)
    assert "1 (GELU" in msg and "2.1 (Custom" in msg and "\n" not in msg
    assert "ReLU" not in msg.split("Supported")[0]


def test_certified_accuracy_raises_and_restores_the_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 4), nn.LSTM(4, 4))
    model.train()
    batch = tiny_batch()
    data = ExplanationDataset(batch.x, batch.y, batch.mask.bool())
    with pytest.raises(UserError, match="LSTM"):
        ibp_certified_accuracy(model, data, 0.1)
    assert all(m.training for m in model.modules())


def test_certified_accuracy_counts_margins_and_empty_boxes():
    model = tiny_mlp()
    batch = tiny_batch(n=40, partial=False)
    data = ExplanationDataset(batch.x, batch.y, batch.mask.bool())
    clean = (model(batch.x).argmax(1) == batch.y).float().mean().item()
    assert ibp_certified_accuracy(model, data, 0.0) == pytest.approx(clean)
    accs = [ibp_certified_accuracy(model, data, e) for e in (0.0, 0.05, 0.3, 3.0)]
    assert accs == sorted(accs, reverse=True)
    # un-annotated examples have the empty box: certified exactly when clean-correct
    no_ann = ExplanationDataset(batch.x, batch.y, batch.mask.bool(), has_mask=torch.zeros(40, dtype=torch.bool))
    assert ibp_certified_accuracy(model, no_ann, 3.0) == pytest.approx(clean)
    with pytest.warns(UserWarning, match="empty"):
        assert math.isnan(ibp_certified_accuracy(model, data.subset(torch.arange(0)), 0.1))
