"""Interval bounds on general module graphs (torch.fx): a small ResNet of torchvision-style BasicBlocks and a
functional variant (F.relu, torch.cat, views, pooling functions), in eval mode and with batch norm in train
mode; a slow interval-arithmetic reference; one error for everything unsupported; precision; IBP-Ex training."""

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import shortcut_splits, tiny_batch, tiny_cnn
from rightreasons import TrainConfig, fit
from rightreasons.errors import UserError
from rightreasons.methods import StepContext, create_method
from rightreasons.ops.interval_bounds import (
    check_bounded,
    interval_bounds,
    layers,
    margin_bounds,
    mask_box,
    masked_ibp,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + identity), in-place ReLU and +=."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, classes=3, width=4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class FunctionalNet(nn.Module):
    """Functional activations and pooling, +=, torch.cat of two branches, views built from sizes, constants."""

    def __init__(self, classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(4)
        self.conv_b = nn.Conv2d(4, 2, 1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        a = self.bn_a(self.conv_a(x))
        a += x
        a = torch.relu(a)
        b = self.conv_b(x).sigmoid() * 2.0 - 1.0
        h = F.max_pool2d(torch.cat([a, b], dim=1), 2)
        p = F.adaptive_avg_pool2d(h, 1).view(h.size(0), -1)
        q = torch.tanh(torch.mean(F.avg_pool2d(h, 2), dim=(2, 3)))
        z = torch.cat((p, 0.5 * q), 1)
        return self.fc(z.reshape(z.shape[0], -1))


def _randomise(model):
    """Batch norms that are not the identity: running statistics and affine parameters drawn at random."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(3 * torch.rand(c, generator=g) - 1.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return model


def resnet(dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    return _randomise(ResNet(**kw)).to(dtype).eval()


def functional(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return _randomise(FunctionalNet()).to(dtype).eval()


MODELS = {"resnet": resnet, "functional": functional}


def _batch(dtype=torch.float64, n=4):
    return tiny_batch(n=n, in_shape=(1, 8, 8), dtype=dtype)


def _fixed_statistics(model, clean):
    """The function IBP bounds for a train-mode model: an eval-mode copy whose batch norms normalise with
    the statistics (mean, biased variance) that the train-mode forward pass computes on the clean batch."""
    train, fixed = copy.deepcopy(model).train(), copy.deepcopy(model).eval()
    stats = {}
    for name, m in train.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_pre_hook(lambda m, inp, name=name: stats.__setitem__(
                name, torch.var_mean(inp[0], dim=(0, 2, 3), correction=0)))
    with torch.no_grad():
        expected = train(clean)
        for name, m in fixed.named_modules():
            if name in stats:
                m.running_var.copy_(stats[name][0])
                m.running_mean.copy_(stats[name][1])
        torch.testing.assert_close(fixed(clean), expected, rtol=0, atol=1e-12)  # the same function at x
    return fixed


def _vertices(lower, upper):
    """All corners of a box whose free coordinates are few (one example)."""
    free = (upper != lower).flatten().nonzero().squeeze(1)
    for bits in itertools.product((0, 1), repeat=len(free)):
        v = lower.flatten().clone()
        v[free] = torch.where(torch.tensor(bits, dtype=torch.bool), upper.flatten()[free], lower.flatten()[free])
        yield v.view_as(lower)


def _points(lower, upper, n=60):
    """(n + corners, B, ...) points of the box: uniform draws, then every corner of each example's box."""
    g = torch.Generator().manual_seed(1)
    uniform = [lower + (upper - lower) * torch.rand(lower.shape, generator=g, dtype=lower.dtype) for _ in range(n)]
    corners = torch.stack([torch.stack(list(_vertices(lower[k], upper[k]))) for k in range(len(lower))], 1)
    return torch.cat([torch.stack(uniform), corners])


def _assert_inside(f, points, lb, ub, y=None, margins=None, tol=1e-12):
    with torch.no_grad():
        out = torch.stack([f(p) for p in points])
    assert (out >= lb - tol).all() and (out <= ub + tol).all()
    if margins is not None:
        true = out.gather(2, y.view(1, -1, 1).expand(len(points), -1, 1)) - out
        assert (true >= margins - tol).all()
    return out


# -- eps = 0 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_eps_zero_gives_the_forward_pass_in_eval_mode(name):
    model = MODELS[name]()
    x = _batch().x
    lb, ub = interval_bounds(model, x, x)
    assert torch.equal(lb, ub)
    torch.testing.assert_close(lb, model(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eps_zero_gives_the_forward_pass_in_train_mode(name):
    model = MODELS[name]().train()
    batch = _batch()
    reference = copy.deepcopy(model)  # its running statistics move on its own forward; model's must not
    before = [b.clone() for b in model.buffers()]
    lb, ub = interval_bounds(model, batch.x, batch.x)
    assert torch.equal(lb, ub)
    torch.testing.assert_close(lb, reference(batch.x), rtol=0, atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))  # the bounds updated nothing
    logits, margins = masked_ibp(model, batch.x, batch.y, batch.mask, 0.0, clean=True)
    torch.testing.assert_close(logits, reference(batch.x), rtol=0, atol=1e-12)
    torch.testing.assert_close(margins, logits.gather(1, batch.y.view(-1, 1)) - logits, rtol=0, atol=1e-12)


# -- soundness ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_sampled_points_and_corners_stay_inside_in_eval_mode(name):
    model = MODELS[name]()
    batch = _batch()
    lower, upper = mask_box(batch.x, batch.mask, 0.5, bounds=(0.0, 1.0))  # 4 free pixels: 16 corners each
    lb, ub = interval_bounds(model, lower, upper)
    margins = margin_bounds(model, lower, upper, batch.y)
    out = _assert_inside(model, _points(lower, upper), lb, ub, batch.y, margins)
    assert (ub - lb).min() > 1e-4 and out.std(0).max() > 1e-4  # a real box, and the points do move the logits
    torch.testing.assert_close(masked_ibp(model, batch.x, batch.y, batch.mask, 0.5, bounds=(0.0, 1.0)), margins,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sampled_points_stay_inside_with_batch_norm_in_train_mode(name):
    """In train mode batch norm normalises with the clean batch's statistics, a fixed affine map; the bounds
    hold for the network with those statistics frozen (``_fixed_statistics``), evaluated at every point.
    interval_bounds takes the box centre as the clean batch; masked_ibp takes x (here off-centre: clipped)."""
    model = MODELS[name]().train()
    batch = _batch()
    lower, upper = mask_box(batch.x, batch.mask, 0.5)
    lb, ub = interval_bounds(model, lower, upper)
    _assert_inside(_fixed_statistics(model, (lower + upper) / 2), _points(lower, upper), lb, ub)
    lower, upper = mask_box(batch.x, batch.mask, 0.5, bounds=(0.0, 1.0))
    margins = masked_ibp(model, batch.x, batch.y, batch.mask, 0.5, bounds=(0.0, 1.0))
    fixed = _fixed_statistics(model, batch.x)
    lb, ub = interval_bounds(fixed, lower, upper)
    _assert_inside(fixed, _points(lower, upper), lb, ub, batch.y, margins)
    # the eval-mode bounds of the frozen network are the train-mode bounds with clean batch x
    torch.testing.assert_close(margins, margin_bounds(fixed, lower, upper, batch.y), rtol=0, atol=1e-10)


def test_train_mode_bounds_differ_from_eval_mode_bounds():
    """Train mode really uses the batch's statistics (not the running ones)."""
    model = resnet()
    x = _batch().x
    eval_lb, _ = interval_bounds(model, x, x)
    train_lb, _ = interval_bounds(model.train(), x, x)
    assert (eval_lb - train_lb).abs().max() > 1e-3


# -- a slow reference in lower/upper form ---------------------------------------------------------------
def _ref_conv(conv, lo, hi):
    w = conv.weight.detach().double()
    wp, wn = w.clamp(min=0), w.clamp(max=0)

    def f(t, weight):
        return F.conv2d(t, weight, None, conv.stride, conv.padding)

    return f(lo, wp) + f(hi, wn), f(hi, wp) + f(lo, wn)


def _ref_bn(bn, lo, hi):
    a = (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)).view(1, -1, 1, 1)
    c = bn.bias.detach().double().view(1, -1, 1, 1) - bn.running_mean.double().view(1, -1, 1, 1) * a
    return torch.where(a >= 0, a * lo, a * hi) + c, torch.where(a >= 0, a * hi, a * lo) + c


def _ref_relu(lo, hi):
    return lo.clamp(min=0), hi.clamp(min=0)


def _ref_block(block, lo, hi):
    low, high = _ref_relu(*_ref_bn(block.bn1, *_ref_conv(block.conv1, lo, hi)))
    low, high = _ref_bn(block.bn2, *_ref_conv(block.conv2, low, high))
    id_low, id_high = lo, hi
    if block.downsample is not None:
        id_low, id_high = _ref_bn(block.downsample[1], *_ref_conv(block.downsample[0], lo, hi))
    return _ref_relu(low + id_low, high + id_high)  # interval sum: lower ends add, upper ends add


def _ref_resnet(model, lo, hi):
    lo, hi = lo.double(), hi.double()
    low, high = _ref_relu(*_ref_bn(model.bn1, *_ref_conv(model.conv1, lo, hi)))
    low, high = _ref_block(model.layer2, *_ref_block(model.layer1, low, high))
    low, high = low.mean((2, 3)), high.mean((2, 3))
    w, b = model.fc.weight.detach().double(), model.fc.bias.detach().double()
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    return low @ wp.T + high @ wn.T + b, high @ wp.T + low @ wn.T + b


def test_residual_network_agrees_with_slow_interval_arithmetic_in_float32():
    model = resnet(dtype=torch.float32)
    batch = _batch(dtype=torch.float32)
    lower, upper = mask_box(batch.x, batch.mask, 0.4, bounds=(0.0, 1.0))
    lb, ub = interval_bounds(model, lower, upper)
    assert lb.dtype == torch.float32
    slow_lb, slow_ub = _ref_resnet(model, lower, upper)
    torch.testing.assert_close(lb.double(), slow_lb, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ub.double(), slow_ub, rtol=1e-6, atol=1e-6)
    assert (ub - lb).max() > 1e-3  # the box is not degenerate, so the comparison means something


# -- the Sequential path and the traced path ----------------------------------------------------------
class Wrapped(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def test_a_sequential_traced_inside_a_module_gives_the_same_numbers():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(27, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    wrapped = Wrapped(seq)
    batch = tiny_batch(dtype=torch.float64)
    for mode in ("eval", "train"):
        getattr(seq, mode)()
        box = mask_box(batch.x, batch.mask, 0.3, bounds=(0.0, 1.0))
        for a, b in zip(interval_bounds(seq, *box), interval_bounds(wrapped, *box)):
            assert torch.equal(a, b)
        assert torch.equal(margin_bounds(seq, *box, batch.y), margin_bounds(wrapped, *box, batch.y))
        first, second = copy.deepcopy(seq), copy.deepcopy(wrapped)
        for a, b in zip(masked_ibp(first, batch.x, batch.y, batch.mask, 0.3, clean=True),
                        masked_ibp(second, batch.x, batch.y, batch.mask, 0.3, clean=True)):
            assert torch.equal(a, b)
        assert all(torch.equal(a, b) for a, b in zip(first.buffers(), second.buffers()))
    assert [name for name, _ in layers(wrapped)][:2] == ["inner.0", "inner.1"]
    assert [name for name, _ in layers(seq)][:2] == ["0", "1"]


def test_layers_of_the_residual_network_are_named_by_their_paths():
    names = [name for name, _ in layers(resnet())]
    assert names[:3] == ["conv1", "bn1", "relu"] and "layer2.downsample.1" in names and names[-1] == "fc"


# -- margins -----------------------------------------------------------------------------------------
def test_margin_bounds_need_a_final_linear_layer_of_the_graph():
    class Scaled(ResNet):
        def forward(self, x):
            return 2 * super().forward(x)

    model = Scaled().double().eval()
    batch = _batch()
    lb, ub = interval_bounds(model, batch.x, batch.x)  # the plain bounds work
    torch.testing.assert_close(lb, model(batch.x), rtol=0, atol=1e-12)
    with pytest.raises(UserError, match="end in nn.Linear"):
        margin_bounds(model, batch.x, batch.x, batch.y)
    with pytest.raises(UserError, match="end in nn.Linear"):
        check_bounded(model, margin=True)
    check_bounded(model)


def test_margin_bound_is_tighter_than_the_naive_bound_on_the_residual_network():
    model = resnet()
    batch = _batch()
    lower, upper = mask_box(batch.x, batch.mask, 1.0)
    lb, ub = interval_bounds(model, lower, upper)
    margins = margin_bounds(model, lower, upper, batch.y)
    naive = lb.gather(1, batch.y.view(-1, 1)) - ub
    assert (margins >= naive - 1e-12).all() and (margins > naive + 1e-6).any()


# -- errors ---------------------------------------------------------------------------------------------
class OddBlock(BasicBlock):
    def __init__(self, c):
        super().__init__(c, c)
        self.act = nn.GELU()

    def forward(self, x):
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + torch.sin(x)
        return self.relu(out)


def _odd_resnet():
    model = resnet()
    model.layer1 = OddBlock(4).double().eval()
    return model


def test_an_unsupported_layer_and_function_in_a_block_are_named_in_one_error_before_any_work():
    model = _odd_resnet()
    calls = []
    model.conv1.register_forward_pre_hook(lambda m, inp: calls.append(1))
    x = _batch().x
    for call in (lambda: interval_bounds(model, x, x), lambda: check_bounded(model), lambda: layers(model),
                 lambda: masked_ibp(model, x, torch.zeros(len(x), dtype=torch.long), torch.ones_like(x), 0.1)):
        with pytest.raises(UserError) as info:
            call()
        msg = str(info.value)
        assert "layer1.act (GELU: no IBP rule)" in msg and "torch.sin" in msg and "in layer1 (OddBlock)" in msg
        assert "\n" not in msg and "layer1.conv1" not in msg and "add" not in msg.split("Supported")[0]
    assert calls == []
    with pytest.raises(UserError, match="GELU"):
        create_method("ibp_ex").check_model(model)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        h = self.fc(x.flatten(1))
        if h.sum() > 0:
            return h
        return -h


def test_data_dependent_control_flow_gives_the_one_line_fx_error():
    x = _batch(dtype=torch.float32).x
    for call in (lambda: interval_bounds(Branchy(), x, x), lambda: check_bounded(Branchy(), margin=True),
                 lambda: create_method("ibp_ex").check_model(Branchy())):
        with pytest.raises(UserError) as info:
            call()
        msg = str(info.value)
        assert "torch.fx cannot trace Branchy" in msg and "cannot be used as inputs to control flow" in msg
        assert "\n" not in msg


def test_an_in_place_operation_on_a_tensor_read_again_is_refused():
    class Aliasing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(128, 3)

        def forward(self, x):
            y = self.conv(x)
            y.relu_()  # eager PyTorch changes y itself: fc sees relu(y)
            return self.fc(y.flatten(1))

    x = _batch(dtype=torch.float32).x
    with pytest.raises(UserError, match=r"relu_ \(Tensor.relu_\): in-place operation on a tensor read again"):
        interval_bounds(Aliasing(), x, x)


def test_the_cached_graph_follows_attributes_and_submodules():
    class Gated(ResNet):
        skip = True

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            if self.skip:
                x = self.layer1(x)
            return self.fc(torch.flatten(self.avgpool(self.layer2(x)), 1))

    model = _randomise(Gated()).double().eval()
    x = _batch().x
    for change in (None, lambda: setattr(model, "skip", False), lambda: setattr(model, "fc", nn.Linear(8, 3).double()),
                   lambda: model.train()):
        if change is not None:
            change()
        lb, _ = interval_bounds(model, x, x)
        torch.testing.assert_close(lb, copy.deepcopy(model)(x), rtol=0, atol=1e-12)


# -- batch norm's running statistics ---------------------------------------------------------------------
@pytest.mark.parametrize("clip", [None, (0.0, 1.0)])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_running_statistics_are_updated_once_from_the_clean_batch(name, clip):
    model = MODELS[name]().train()
    batch = _batch()
    plain = copy.deepcopy(model)
    before = [b.clone() for b in model.buffers()]
    logits, _ = masked_ibp(model, batch.x, batch.y, batch.mask, 0.5, bounds=clip, clean=True)
    expected = plain(batch.x)  # one plain forward pass of the clean batch
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    for (key, a), b, old in zip(model.named_buffers(), plain.buffers(), before):
        assert torch.equal(a, b), key
        assert not torch.equal(a, old), key  # they did move
    # the bounds alone never touch them
    margin_bounds(model, *mask_box(batch.x, batch.mask, 0.5), batch.y)
    masked_ibp(model, batch.x, batch.y, batch.mask, 0.5, bounds=clip)
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), plain.buffers()))


# -- precision --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_bfloat16_boxes_are_bounded_in_float32(mode):
    model = getattr(resnet(dtype=torch.float32), mode)()
    batch = _batch(dtype=torch.float32)
    lower, upper = (t.bfloat16() for t in mask_box(batch.x, batch.mask, 0.5))
    lb, ub = interval_bounds(model, lower, upper)
    assert lb.dtype == ub.dtype == torch.float32
    lb32, ub32 = interval_bounds(model, lower.float(), upper.float())
    assert torch.equal(lb, lb32) and torch.equal(ub, ub32)
    margins = masked_ibp(model, batch.x.bfloat16(), batch.y, batch.mask, 0.5)
    assert margins.dtype == torch.float32
    assert torch.equal(margins, masked_ibp(model, batch.x.bfloat16().float(), batch.y, batch.mask, 0.5))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        auto = interval_bounds(model, lower.float(), upper.float())
        logits, auto_margins = masked_ibp(copy.deepcopy(model), batch.x, batch.y, batch.mask, 0.5, clean=True)
    assert auto[0].dtype == torch.float32 and torch.equal(auto[0], lb32) and torch.equal(auto[1], ub32)
    assert logits.dtype == auto_margins.dtype == torch.float32
    assert torch.equal(auto_margins, masked_ibp(copy.deepcopy(model), batch.x, batch.y, batch.mask, 0.5))


def test_a_bfloat16_model_is_refused_with_a_clear_error():
    model = resnet(dtype=torch.bfloat16)
    x = _batch(dtype=torch.bfloat16).x
    with pytest.raises(UserError, match="float32, but the model's parameters are torch.bfloat16"):
        interval_bounds(model, x, x)


# -- IBP-Ex on the residual network ----------------------------------------------------------------------
def test_ibp_ex_trains_the_residual_network_with_batch_norm_in_train_mode():
    model = resnet(dtype=torch.float32).train()
    method = create_method("ibp_ex", warmup_epochs=0.0, ramp_epochs=0.0, eps=0.5)
    method.check_model(model)
    method.start_epoch(0, 1)
    batch = _batch(dtype=torch.float32, n=6)
    out = method.loss(model, batch, StepContext(generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(out.loss) and out.terms["ibp_ex"] > 0
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    # and through fit, which checks the model before the first step
    torch.manual_seed(0)
    fit(_randomise(ResNet(classes=2)), create_method("ibp_ex", warmup_epochs=0.0, ramp_epochs=1.0),
        shortcut_splits(n_train=64, n_eval=32), TrainConfig(epochs=1, batch_size=32))


def test_tiny_sequential_cnn_with_batch_norm_in_train_mode_is_accepted():
    model = nn.Sequential(*list(tiny_cnn())[:1], nn.BatchNorm2d(4), *list(tiny_cnn())[1:]).train()
    check_bounded(model, margin=True)
    batch = tiny_batch()
    lb, ub = interval_bounds(model, batch.x, batch.x)
    torch.testing.assert_close(lb, copy.deepcopy(model)(batch.x))
