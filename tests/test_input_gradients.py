"""Input gradients against the analytic expressions for a linear softmax model, and double backprop
(the RRR penalty's parameter gradient) against finite differences."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from helpers import tiny_batch
from rightreasons.methods import StepContext, create_method
from rightreasons.ops import input_gradients


def linear_model(d=7, k=4, seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(d, k).double()
    x = torch.randn(5, d, dtype=torch.float64)
    y = torch.randint(0, k, (5,))
    return model, x, y


def test_log_prob_sum_gradient_matches_analytic():
    model, x, y = linear_model()
    W = model.weight.detach()
    p = torch.softmax(model(x), 1).detach()
    k = W.shape[0]
    expected = W.sum(0) - k * p @ W  # d/dx sum_k log p_k = sum_k W_k - K sum_j p_j W_j
    grad, _ = input_gradients(model, x, "log_prob_sum")
    torch.testing.assert_close(grad, expected)


def test_logit_sum_and_loss_and_target_logit_gradients_match_analytic():
    model, x, y = linear_model(seed=1)
    W = model.weight.detach()
    p = torch.softmax(model(x), 1).detach()
    grad, _ = input_gradients(model, x, "logit_sum")
    torch.testing.assert_close(grad, W.sum(0).expand_as(x))
    grad, _ = input_gradients(model, x, "loss", y)
    torch.testing.assert_close(grad, p @ W - W[y])  # d CE / dx = sum_j p_j W_j - W_y
    grad, _ = input_gradients(model, x, "target_logit", y)
    torch.testing.assert_close(grad, W[y])


def test_input_gradients_do_not_touch_parameter_grads_or_input():
    model, x, y = linear_model()
    x0 = x.clone()
    input_gradients(model, x, "log_prob_sum")
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x0) and not x.requires_grad


@pytest.mark.parametrize("norm", ["squared_l2", "l1"])
def test_rrr_penalty_parameter_gradients_pass_gradcheck(norm):
    batch = tiny_batch(n=3, in_shape=(1, 3, 3), dtype=torch.float64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    method = create_method("rrr", lam=2.0, norm=norm)
    params = list(model.parameters())
    # gradcheck perturbs its inputs: route the parameters through a functional call
    names = [n for n, _ in model.named_parameters()]

    def functional(*values):
        def f(x):
            return functional_call(model, dict(zip(names, values)), (x,))

        wrapper = _Wrap(f)
        return method.loss(wrapper, batch, StepContext()).loss

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert torch.autograd.gradcheck(functional, inputs, eps=1e-6, atol=1e-5)


class _Wrap(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)
