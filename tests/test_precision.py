"""Precision: bf16 / fp16 autocast in training (bf16 runs on the CPU, and so does fp16 with loss scaling),
the gradient-penalty recipe for scaled input gradients (exact in float64 with a power-of-two scale), fp32
untouched, the loss scaler saved in checkpoints (exact resume), and one-line errors for other names."""

import pytest
import torch
import torch.nn.functional as F

from helpers import shortcut_splits, tiny_batch, tiny_mlp
from rightreasons.errors import UserError
from rightreasons.methods import StepContext, create_method
from rightreasons.precision import autocast, grad_scaler, input_grad, input_grad_scale
from rightreasons.train.config import TrainConfig
from rightreasons.train.trainer import fit


def ctx(seed=0):
    return StepContext(generator=torch.Generator().manual_seed(seed), input_range=(0.0, 1.0))


def test_scaled_input_gradients_are_unscaled_exactly():
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(dtype=torch.float64)
    x = batch.x.clone().requires_grad_(True)
    score = F.log_softmax(model(x), 1).sum()
    (plain,) = torch.autograd.grad(score, x, retain_graph=True)
    with input_grad_scale(2.0 ** 14):
        (scaled,) = input_grad(score, x, create_graph=True)
    assert torch.equal(plain, scaled)  # a power of two scales and unscales without rounding
    (outside,) = input_grad(score, x)
    assert torch.equal(plain, outside)


@pytest.mark.parametrize("name", ["rrr", "certainty", "ig_norm", "ig_sum_norm", "pgd_ex", "madry"])
def test_every_input_gradient_method_gives_the_same_loss_and_parameter_gradients_under_a_scale(name):
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(dtype=torch.float64)
    method = create_method(name)

    def loss_and_grads():
        out = method.loss(model, batch, ctx(3))
        return out.loss, torch.autograd.grad(out.loss, list(model.parameters()))

    plain, plain_grads = loss_and_grads()
    with input_grad_scale(2.0 ** 10):
        scaled, scaled_grads = loss_and_grads()
    torch.testing.assert_close(scaled, plain, rtol=1e-12, atol=0)
    for a, b in zip(plain_grads, scaled_grads):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-14)


def test_autocast_contexts():
    cpu = torch.device("cpu")
    with autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert grad_scaler(cpu, "bf16") is None and grad_scaler(cpu, "fp16") is not None
    with pytest.raises(UserError, match="precision 'fp8'"):
        autocast(cpu, "fp8")
    with pytest.raises(UserError, match="config field 'precision'"):
        TrainConfig(precision="fp8")


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("method", ["erm", "rrr", "pgd_ex", "ibp_ex", "ig_norm"])
def test_bf16_training_runs_on_the_cpu_and_stays_near_fp32(method):
    data = shortcut_splits(n_train=256, n_eval=64)
    results = {}
    for precision in ("fp32", "bf16"):
        model = tiny_mlp(classes=2)
        result = fit(model, create_method(method), data, TrainConfig(epochs=2, batch_size=64, precision=precision))
        results[precision] = (model, result.history[-1]["loss"])
    (m32, l32), (m16, l16) = results["fp32"], results["bf16"]
    assert torch.isfinite(torch.tensor(l16))
    assert abs(l16 - l32) <= 0.05 * abs(l32) + 0.02  # bf16 keeps about 3 significant digits
    assert not torch.equal(_params(m32), _params(m16))  # it really ran in another precision
    assert all(p.dtype == torch.float32 for p in m16.parameters())  # weights stay float32


def test_fp16_training_with_an_input_gradient_penalty_scales_and_resumes_exactly(tmp_path):
    data = shortcut_splits(n_train=256, n_eval=64)
    config = TrainConfig(epochs=3, batch_size=64, precision="fp16")
    whole = tiny_mlp(classes=2)
    straight = fit(whole, create_method("rrr"), data, config)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in straight.history)

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(line):
        if line.startswith("epoch 1/"):
            raise Interrupt(line)

    with pytest.raises(Interrupt):
        fit(tiny_mlp(classes=2), create_method("rrr"), data, config, checkpoint_dir=tmp_path,
            log=stop_after_first_epoch)
    saved = torch.load(tmp_path / "epoch-0001" / "state.pt", weights_only=True)
    assert saved["scaler"]["scale"] > 0  # the loss scale is part of the checkpoint
    resumed_model = tiny_mlp(classes=2, seed=7)
    resumed = fit(resumed_model, create_method("rrr"), data, config, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(_params(resumed_model), _params(whole))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]


def test_fp32_training_is_unchanged_by_the_precision_machinery():
    data = shortcut_splits(n_train=128, n_eval=64)
    a, b = tiny_mlp(classes=2), tiny_mlp(classes=2)
    fit(a, create_method("rrr"), data, TrainConfig(epochs=1, batch_size=32))
    fit(b, create_method("rrr"), data, TrainConfig(epochs=1, batch_size=32, precision="fp32"))
    assert torch.equal(_params(a), _params(b))
