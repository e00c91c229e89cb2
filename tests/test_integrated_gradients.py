"""Integrated gradients: completeness, analytic linear case, chunking, gradcheck, bounded memory."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rightreasons import UserError
from rightreasons.ops.integrated_gradients import integrated_gradients


def _smooth(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Softplus(), nn.Linear(8, 3)).double()


def _target_score(model, x, y):
    return model(x).gather(1, y.view(-1, 1)).squeeze(1)


@pytest.mark.parametrize("rule", ["right", "midpoint", "trapezoid"])
def test_completeness_error_shrinks_with_steps(rule):
    model = _smooth()
    x = torch.rand(5, 6, dtype=torch.float64) * 2
    baseline = torch.rand(5, 6, dtype=torch.float64) - 0.5
    y = torch.tensor([0, 1, 2, 1, 0])
    gap = _target_score(model, x, y) - _target_score(model, baseline, y)
    errors = []
    for steps in (2, 8, 32, 128):
        attributions = integrated_gradients(model, x, baseline, y, steps, rule=rule)
        assert attributions.shape == x.shape
        errors.append((attributions.sum(1) - gap).abs().max().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 20
    assert errors[-1] < 1e-3


def test_linear_model_is_exact_for_any_steps():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    attributions = integrated_gradients(model, x, 0.5, 2, steps=3)
    torch.testing.assert_close(attributions, model.weight[2].detach() * (x - 0.5), rtol=0, atol=1e-13)


def test_target_forms_agree():
    model = _smooth()
    x = torch.rand(3, 6, dtype=torch.float64)
    y = torch.tensor([2, 2, 2])
    a_int = integrated_gradients(model, x, None, 2, 10)
    a_tensor = integrated_gradients(model, x, None, y, 10)
    a_callable = integrated_gradients(model, x, torch.zeros(6, dtype=torch.float64), lambda z: z[:, 2], 10)
    torch.testing.assert_close(a_int, a_tensor, rtol=0, atol=1e-14)
    torch.testing.assert_close(a_int, a_callable, rtol=0, atol=1e-14)


@pytest.mark.parametrize("rule", ["right", "trapezoid"])
@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunked_equals_unchunked(rule, chunk):
    model = _smooth()
    x = torch.rand(4, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    loss = lambda z: F.cross_entropy(z, y, reduction="none")  # noqa: E731
    full = integrated_gradients(model, x, None, loss, 13, rule=rule)
    chunked = integrated_gradients(model, x, None, loss, 13, chunk_size=chunk, rule=rule)
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-14)
    params = list(model.parameters())
    grads = []
    for size in (None, chunk):
        xr = x.clone().requires_grad_(True)
        out = integrated_gradients(model, xr, None, loss, 13, chunk_size=size, create_graph=True, rule=rule)
        torch.testing.assert_close(out.detach(), full, rtol=0, atol=1e-14)
        grads.append(torch.autograd.grad(out.abs().sum(), [xr] + params, allow_unused=True))
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [None, 2])
def test_gradcheck_wrt_input_and_baseline(chunk):
    model = _smooth()
    y = torch.tensor([0, 2, 1])
    x = torch.rand(3, 6, dtype=torch.float64, requires_grad=True)
    b = (torch.rand(3, 6, dtype=torch.float64) * 0.2).requires_grad_(True)

    def fn(inp, base):
        return integrated_gradients(model, inp, base, y, 5, chunk_size=chunk, create_graph=True)

    assert torch.autograd.gradcheck(fn, (x, b))


@pytest.mark.parametrize("chunk", [None, 2])
def test_gradcheck_wrt_parameters(chunk):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.rand(2, 4, dtype=torch.float64)
    weights = (model[0].weight, model[2].weight)  # gradcheck perturbs these in place: the model sees it

    def fn(*_):
        return integrated_gradients(model, x, None, 1, 5, chunk_size=chunk, create_graph=True)

    assert torch.autograd.gradcheck(fn, weights)


def test_not_differentiable_unless_asked():
    model = _smooth()
    x = torch.rand(2, 6, dtype=torch.float64, requires_grad=True)
    assert not integrated_gradients(model, x, None, 0, 4).requires_grad
    assert integrated_gradients(model, x, None, 0, 4, create_graph=True).requires_grad


class _SavedBytes:
    """Peak bytes of the distinct storages autograd keeps saved for backward while ``fn`` runs (the memory
    a differentiable IG retains; the torch profiler measures the same but is slow to start)."""

    def __init__(self):
        self.refs, self.sizes, self.live, self.peak = {}, {}, 0, 0

    def add(self, key, size):
        if key not in self.refs:
            self.refs[key], self.sizes[key] = 0, size
            self.live += size
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1

    def drop(self, key):
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= self.sizes.pop(key)


class _Saved:
    def __init__(self, tensor, tracker):
        self.tensor, self.tracker = tensor, tracker
        self.key = tensor.untyped_storage().data_ptr()
        tracker.add(self.key, tensor.untyped_storage().nbytes())

    def __del__(self):
        self.tracker.drop(self.key)


def _peak_bytes(fn):
    tracker = _SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: _Saved(t, tracker), lambda saved: saved.tensor):
        fn()
    assert tracker.live == 0  # everything saved was released again
    return tracker.peak


def test_memory_bounded_by_chunk_with_create_graph():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(196, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.rand(16, 196)
    y = torch.randint(0, 10, (16,))

    def run(steps, chunk):
        def body():
            integrated_gradients(model, x, None, y, steps, chunk_size=chunk, create_graph=True).abs().sum().backward()

        return _peak_bytes(body)

    chunked_small, chunked_large = run(8, 4), run(48, 4)
    plain_small, plain_large = run(8, None), run(48, None)
    assert chunked_large < 1.5 * chunked_small  # does not grow with steps for a fixed chunk
    assert plain_large > 3 * plain_small  # whereas the unchunked graph grows ~linearly
    assert chunked_large < plain_large / 3


def test_bad_arguments():
    model = _smooth()
    x = torch.rand(2, 6, dtype=torch.float64)
    with pytest.raises(UserError, match="steps"):
        integrated_gradients(model, x, None, 0, 0)
    with pytest.raises(UserError, match="chunk_size"):
        integrated_gradients(model, x, None, 0, 4, chunk_size=0)
    with pytest.raises(UserError, match="target"):
        integrated_gradients(model, x, None, torch.tensor([0, 1, 2]), 4)
    with pytest.raises(UserError, match="baseline"):
        integrated_gradients(model, x, torch.zeros(3), 0, 4)
    with pytest.raises(UserError, match="rule"):
        integrated_gradients(model, x, None, 0, 4, rule="simpson")
    with pytest.raises(UserError, match="one score per example"):
        integrated_gradients(model, x, None, lambda z: z.sum(), 4)
