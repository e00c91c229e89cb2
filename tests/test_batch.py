"""Batch as a PyTorch user builds it: defaults for group and has_mask, one-channel masks, .to()."""

import pytest
import torch

from helpers import tiny_mlp
from rightreasons import Batch, create_method
from rightreasons.errors import UserError


def test_defaults_group_is_the_label_and_every_example_is_annotated():
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 1])
    b = Batch(x, y, torch.zeros_like(x))
    assert torch.equal(b.group, y) and b.has_mask.dtype == torch.bool and bool(b.has_mask.all())
    assert len(b) == 4


def test_a_one_channel_mask_covers_every_channel():
    x = torch.rand(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, 0, 0] = 1
    b = Batch(x, torch.tensor([0, 1]), mask)
    assert b.mask.shape == x.shape
    assert b.mask[0, :, 0, 0].tolist() == [1, 1, 1] and b.mask.sum().item() == 3
    # rrr sees the same penalty as with the mask copied per channel
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    full = Batch(x, torch.tensor([0, 1]), mask.expand_as(x).clone())
    rrr = create_method("rrr")
    torch.testing.assert_close(rrr.loss(model, b).loss, rrr.loss(model, full).loss)


@pytest.mark.parametrize("shape", [(2, 2, 4, 4), (2, 3, 4), (1, 3, 4, 4), (2, 3, 4, 5)])
def test_a_mask_that_does_not_fit_is_one_line_naming_both_shapes(shape):
    with pytest.raises(UserError, match=r"mask shape .* does not match x shape \(2, 3, 4, 4\)"):
        Batch(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]), torch.zeros(shape))


def test_to_casts_inputs_and_moves_every_field():
    x = torch.rand(3, 1, 6, 6)
    b = Batch(x, torch.tensor([0, 1, 2]), torch.ones_like(x), has_mask=torch.tensor([True, False, True]))
    d = b.to(torch.float64)
    assert d.x.dtype == d.mask.dtype == torch.float64 and d.y.dtype == torch.long and d.has_mask.dtype == torch.bool
    m = b.to("meta")  # a device without memory: every field lands there
    assert {t.device.type for t in (m.x, m.y, m.mask, m.group, m.has_mask)} == {"meta"}
    assert torch.equal(b.to("cpu").has_mask, b.has_mask)
    out = create_method("rrr").loss(tiny_mlp().to(torch.float64), d)
    assert out.loss.dtype == torch.float64
