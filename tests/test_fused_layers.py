"""The fused double-backward layers (``rightreasons.layers``) and the fused interval rules for batch norm and
ReLU (``ops.interval_batch_norm``, ``ops.interval_relu``): each is checked against autograd's generic
differentiation of the plain layers or of the generic interval rules, in float64."""

import copy
import importlib

import pytest
import torch
from torch import nn

from rightreasons.layers import BatchNorm2d, Conv2d, fused_double_backward
from rightreasons.layers import conv as conv_module
from rightreasons.layers.batch_norm import _TrainBatchNorm
from rightreasons.layers.conv import _Conv2d
from rightreasons.methods import create_method
from rightreasons.models import create_model
from rightreasons.ops.interval_relu import relu_box

ib = importlib.import_module("rightreasons.ops.interval_bounds")


def _second_order(model, x, seed=1):
    """Gradients (w.r.t. x and every parameter) of an input-gradient penalty plus a parameter-gradient
    penalty: every branch of a double backward (upstream of gx, of gW and of gb) is used."""
    xx = x.clone().requires_grad_()
    out = model(xx)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out.shape, generator=g, dtype=out.dtype)
    value = (torch.tanh(out) * w).sum()
    params = [p for p in model.parameters() if p.requires_grad]
    gx, *gp = torch.autograd.grad(value, [xx] + params, create_graph=True)
    weights = torch.rand(gx.shape, generator=g, dtype=gx.dtype)  # else the upstream is orthogonal to xhat
    penalty = (weights * gx ** 2).sum() + sum((p ** 2).sum() for p in gp) + value
    return [out.detach(), gx.detach(), *torch.autograd.grad(penalty, [xx] + params)]


def _assert_all_close(a, b, rtol=1e-10):
    assert len(a) == len(b)
    for s, t in zip(a, b):
        s, t = s.detach(), t.detach()
        scale = float(s.abs().max()) + 1e-30
        assert float((s - t).abs().max()) <= rtol * scale


@pytest.mark.parametrize("options", [dict(stride=1, padding=1), dict(stride=2, padding=1, bias=False),
                                     dict(stride=1, padding=2, dilation=2, groups=2), dict(stride=2, padding=0)])
def test_conv_double_backward_matches_autograds_in_float64(options):
    torch.manual_seed(0)
    plain = nn.Conv2d(4, 6, 3, **options).double()
    fused = Conv2d(4, 6, 3, **options).double()
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(3, 4, 9, 9, dtype=torch.float64)
    _assert_all_close(_second_order(plain, x), _second_order(fused, x))


@pytest.mark.parametrize("affine, momentum, zero_weight", [(True, 0.1, False), (False, 0.1, False),
                                                           (True, None, False), (True, 0.1, True)])
def test_batch_norm_double_backward_matches_autograds_in_float64(affine, momentum, zero_weight):
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3, affine=affine, momentum=momentum).double()
    if affine:
        with torch.no_grad():
            plain.weight.uniform_(0.5, 2.0)
            plain.bias.uniform_(-1.0, 1.0)
            if zero_weight:  # zero_init_residual starts blocks with a zero BN weight
                plain.weight[1] = 0.0
    fused = BatchNorm2d(3, affine=affine, momentum=momentum).double()
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3 + 2
    for _ in range(2):  # the running statistics move identically
        _assert_all_close(_second_order(plain, x), _second_order(fused, x))
        for a, b in zip(plain.buffers(), fused.buffers()):
            assert torch.equal(a, b)


def test_gradgradcheck_of_both_functions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
    gamma = (torch.rand(2, dtype=torch.float64, generator=g) + 0.5).requires_grad_()
    beta = torch.randn(2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: _TrainBatchNorm.apply(x, w, b, None, None, 0.1, 1e-5), (x, gamma, beta))
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: _Conv2d.apply(x, w, b, (2, 2), (1, 1), (1, 1), 1), (x, weight, bias))


def _erm_steps(model, x, y, fused, steps=2):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        if fused:
            with fused_double_backward(model):
                loss = nn.functional.cross_entropy(model(x), y)
        else:
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return model.state_dict()


def test_first_order_training_is_bit_identical_in_float32():
    torch.manual_seed(0)
    model = create_model("resnet-small", (3, 16, 16), 4).train()
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 4, (8,))
    a = _erm_steps(copy.deepcopy(model), x, y, fused=False)
    b = _erm_steps(copy.deepcopy(model), x, y, fused=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_rrr_gradients_agree_with_the_plain_layers_in_float64(monkeypatch):
    torch.manual_seed(0)
    model = create_model("resnet-small", (3, 16, 16), 4).double().train()
    x, y = torch.rand(6, 3, 16, 16, dtype=torch.float64), torch.randint(0, 4, (6,))
    mask = (torch.rand(6, 3, 16, 16) > 0.6).double()
    from rightreasons.batch import Batch
    batch = Batch(x, y, mask)
    grads = []
    for fused in (True, False):
        if not fused:  # the reference: the model's own nn layers, differentiated twice by autograd
            monkeypatch.setattr("rightreasons.methods.base.fused_double_backward",
                                lambda model: __import__("contextlib").nullcontext())
        m = copy.deepcopy(model)
        loss = create_method("rrr", lam=10.0).loss(m, batch).loss
        grads.append(torch.autograd.grad(loss, list(m.parameters())))
    _assert_all_close(grads[0], grads[1])


def test_an_input_gradient_pass_computes_no_weight_gradient(monkeypatch):
    masks = []
    original = conv_module._backward_kernel

    def recording(gy, x, weight, bias_sizes, geometry, mask):
        masks.append(tuple(mask))
        return original(gy, x, weight, bias_sizes, geometry, mask)

    monkeypatch.setattr(conv_module, "_backward_kernel", recording)
    layer = Conv2d(2, 3, 3, padding=1)
    x = torch.rand(2, 2, 6, 6, requires_grad=True)
    torch.autograd.grad(layer(x).sum(), x)
    assert masks == [(True, False, False)]
    masks.clear()
    layer(x).sum().backward()
    assert masks == [(True, True, True)]
    assert layer.weight.grad is not None


def test_the_swap_is_undone_also_on_an_exception_and_keeps_the_state_dict():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    keys = list(model.state_dict())
    with fused_double_backward(model):
        assert [type(m) for m in model] == [Conv2d, BatchNorm2d, nn.ReLU]
        assert list(model.state_dict()) == keys
        with fused_double_backward(model):  # nested: the outer block restores
            pass
        assert type(model[0]) is Conv2d
    assert [type(m) for m in model] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    with pytest.raises(RuntimeError):
        with fused_double_backward(model):
            raise RuntimeError("inside")
    assert [type(m) for m in model] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


def test_low_precision_and_eval_mode_take_the_layers_own_path():
    layer = BatchNorm2d(3).eval()
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    assert layer(x).grad_fn.name() == "NativeBatchNormBackward0"
    layer.train()
    assert "NativeBatchNorm" not in layer(x).grad_fn.name()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).grad_fn.name() == "NativeBatchNormBackward0"
    conv = Conv2d(3, 2, 3, padding="same")
    assert conv(x).grad_fn.name() == "ConvolutionBackward0"


# -- the fused interval rules ----------------------------------------------------------------------
def _ibp_outputs(model, x, y, mask):
    xx = x.clone().requires_grad_()
    logits, margins = ib.masked_ibp(model, xx, y, mask, 0.1, clean=True)
    lower, upper = ib.interval_bounds(model, xx - 0.05, xx + 0.07)
    loss = 0.3 * logits.sum() + (margins ** 2).sum() + (upper - lower).sum()
    grads = torch.autograd.grad(loss, [xx] + list(model.parameters()))
    return [logits, margins, lower, upper, *grads, *[b.clone() for b in model.buffers()]]


@pytest.mark.parametrize("rule", ["batch_norm", "relu"])
def test_fused_interval_rules_match_the_generic_rules_in_float64(monkeypatch, rule):
    torch.manual_seed(0)
    model = create_model("resnet-small", (3, 16, 16), 5).double().train()
    x, y = torch.rand(6, 3, 16, 16, dtype=torch.float64), torch.randint(0, 5, (6,))
    mask = (torch.rand(6, 1, 16, 16) > 0.7).double()
    fused = _ibp_outputs(copy.deepcopy(model), x, y, mask)
    monkeypatch.setattr(ib, "fusable" if rule == "batch_norm" else "relu_fusable", lambda *args: False)
    generic = _ibp_outputs(copy.deepcopy(model), x, y, mask)
    _assert_all_close(fused, generic, rtol=1e-12)


def test_relu_box_with_zero_radius_is_the_relu_exactly():
    c = torch.randn(1000)
    centre, radius, point = relu_box(c, torch.zeros(1000), c)
    assert torch.equal(centre, torch.relu(c)) and torch.equal(point, torch.relu(c))
    assert torch.equal(radius, torch.zeros(1000))
