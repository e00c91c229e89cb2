"""Devices: the names --device takes, what they resolve to here and on a machine with a GPU (simulated),
one-line errors for a device that is not there, random draws that do not depend on the device, models
loaded on the CPU, and the device coming from the model in fit and in every metric."""

import pytest
import torch
from torch import nn

from helpers import shortcut_splits, tiny_mlp
from rightreasons.devices import check_device_name, model_device, rand_like, resolve_device
from rightreasons.errors import UserError
from rightreasons.methods import create_method
from rightreasons.metrics.evaluate import evaluate
from rightreasons.train.config import TrainConfig
from rightreasons.train.run import run_training
from rightreasons.train.trainer import fit


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps", " cpu "])
def test_device_names_of_every_form_are_accepted(name):
    assert check_device_name(name) == name.strip()


@pytest.mark.parametrize("name", ["gpu", "cpu:1", "cuda:x", "mps:0", "", "CUDA", "cuda:-1"])
def test_other_device_names_are_one_line_errors(name):
    with pytest.raises(UserError, match="expected one of auto, cpu, cuda, cuda:N, mps"):
        check_device_name(name)


def test_auto_is_the_cpu_here_and_the_first_gpu_where_cuda_is_available(monkeypatch):
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_a_gpu_that_is_not_there_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available on this machine.*use --device cpu"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match="MPS is not available"):
        resolve_device("mps")
    with pytest.raises(UserError, match="config field 'device'"):
        TrainConfig(device="gpu")


def test_random_draws_come_from_the_generator_on_its_own_device():
    x = torch.zeros(3, 4, dtype=torch.float64)
    a = rand_like(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, torch.rand(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    b = rand_like(x, torch.Generator().manual_seed(5), normal=True)
    assert torch.equal(b, torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    assert a.dtype == x.dtype and a.device == x.device
    if torch.cuda.is_available():  # pragma: no cover - needs a GPU: same draws on the GPU
        assert torch.equal(rand_like(x.cuda(), torch.Generator().manual_seed(5)).cpu(), a)


def test_model_device_is_the_first_parameters_and_the_cpu_without_any():
    assert model_device(tiny_mlp()) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")


def test_training_on_the_cpu_by_name_equals_auto_here_bit_for_bit():
    if torch.cuda.is_available() or resolve_device("auto").type != "cpu":  # pragma: no cover
        pytest.skip("auto is not the CPU on this machine")
    data = shortcut_splits(n_train=128, n_eval=64)
    runs = [run_training(TrainConfig(data="toy-colors", method="rrr", epochs=1, model="mlp", device=d), data=data)
            for d in ("cpu", "auto")]
    for (name, a), (_, b) in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_model_split_over_devices_is_refused_before_training():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 4), nn.ReLU(), nn.Linear(4, 2, device="meta"))
    with pytest.raises(UserError, match="meta device"):
        fit(model, create_method("erm"), shortcut_splits(n_train=32, n_eval=16), TrainConfig(epochs=1))


def test_metrics_return_cpu_numbers_whatever_the_device_of_the_batches():
    data = shortcut_splits(n_train=64, n_eval=64)
    out = evaluate(tiny_mlp(classes=2), data.test)
    assert 0.0 <= out["accuracy"] <= 1.0
