"""A method that cannot handle the model refuses it before the first training step (not when a warm-up
ends), naming the offending layer; a model it can handle trains."""

import pytest
import torch
from torch import nn

from helpers import shortcut_splits
from rightreasons import TrainConfig, create_method, fit
from rightreasons.errors import UserError


class Custom(nn.Module):
    """A model with a layer without an IBP or CD rule (GELU), and without the split-model protocol."""

    def __init__(self):
        super().__init__()
        self.flatten, self.act, self.linear = nn.Flatten(), nn.GELU(), nn.Linear(36, 2)

    def forward(self, x):
        return self.linear(self.act(self.flatten(x)))


class Counting:
    """Wraps a method and counts its loss calls."""

    def __init__(self, method):
        self.method, self.calls = method, 0

    def __getattr__(self, name):
        return getattr(self.method, name)

    def loss(self, *args, **kwargs):
        self.calls += 1
        return self.method.loss(*args, **kwargs)


@pytest.mark.parametrize("name, says", [("ibp_ex", r"act \(GELU: no IBP rule"),
                                        ("ibp_ex+rrr", r"act \(GELU: no IBP rule"),
                                        ("cdep", r"no rule for: act \(GELU\)"),
                                        ("feature_kl", "Custom is not a split model")])
def test_unsupported_model_fails_before_the_first_step(name, says):
    model = Custom()
    before = [p.detach().clone() for p in model.parameters()]
    method = Counting(create_method(name))  # ibp_ex's warm-up epoch alone would train it as ERM
    with pytest.raises(UserError, match=says):
        fit(model, method, shortcut_splits(), TrainConfig(epochs=2, batch_size=64))
    assert method.calls == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_batch_norm_in_training_is_accepted_by_ibp():
    # formerly refused; IBP now bounds train-mode batch norm with the clean batch's statistics
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    method = Counting(create_method("ibp_ex"))
    fit(model, method, shortcut_splits(n_train=128), TrainConfig(epochs=1, batch_size=64))
    assert method.calls == 2


@pytest.mark.parametrize("name", ["ibp_ex", "cdep", "rrr"])
def test_a_supported_model_trains(name):
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 2))
    method = Counting(create_method(name))
    fit(model, method, shortcut_splits(n_train=128), TrainConfig(epochs=1, batch_size=64))
    assert method.calls == 2
