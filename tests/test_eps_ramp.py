"""The eps ramp shared by madry, ig_norm and ig_sum_norm: during the warm-up the radius is 0, so the loss
is ERM's cross-entropy exactly (float64); after the ramp the method acts at its full radius, as a method
built with that constant eps does; the ramp's position survives state_dict / load_state_dict."""

import pytest
import torch

from helpers import tiny_batch, tiny_mlp
from rightreasons.methods import StepContext, create_method


def ctx(seed=0):
    return StepContext(generator=torch.Generator().manual_seed(seed), input_range=(0.0, 1.0))


@pytest.mark.parametrize("name", ["madry", "ig_norm", "ig_sum_norm"])
def test_warmup_is_erm_and_after_the_ramp_it_is_the_constant_radius_method(name):
    model, batch = tiny_mlp(dtype=torch.float64), tiny_batch(dtype=torch.float64)
    ramped = create_method(name, eps=0.2, warmup_epochs=2, ramp_epochs=3)
    erm = create_method("erm").loss(model, batch, ctx()).loss
    for epoch in (0, 1, 2):
        ramped.start_epoch(epoch, 10)
        assert ramped.current_eps() == 0.0
        assert torch.equal(ramped.loss(model, batch, ctx()).loss, erm)
    ramped.start_epoch(3, 10)
    assert ramped.current_eps() == pytest.approx(0.2 / 3)
    middle = ramped.loss(model, batch, ctx(1)).loss
    assert not torch.equal(middle, erm)
    ramped.start_epoch(5, 10)
    constant = create_method(name, eps=0.2)
    assert torch.equal(ramped.loss(model, batch, ctx(1)).loss, constant.loss(model, batch, ctx(1)).loss)
    resumed = create_method(name, eps=0.2, warmup_epochs=2, ramp_epochs=3)
    resumed.load_state_dict(ramped.state_dict())
    assert resumed.current_eps() == 0.2
