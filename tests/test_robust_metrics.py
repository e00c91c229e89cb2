"""robust_metrics (metrics.json and `rightreasons evaluate`): known answers on hand-built linear models,
NaN without masks, None when there is no box or no interval-bound rule."""

import math

import pytest
import torch
from torch import nn

from rightreasons.data import ExplanationDataset
from rightreasons.metrics.robust import robust_metrics


def _data(with_masks=True, input_range=(0.0, 1.0)):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 2, 2, generator=g)
    y = (x[:, 0, 1, 1] > 0.5).long()  # the label is pixel (1, 1); the mask covers pixel (0, 0)
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[:, 0, 0, 0] = True
    return ExplanationDataset(x, y, mask if with_masks else None, num_classes=2, input_range=input_range)


def _linear(w_inside, w_label):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        centre = 0.5 * (w_label - w_inside)  # z0 - z1 = 2 (w_inside (x00 - 1/2) - w_label (x11 - 1/2))
        model[1].bias.copy_(torch.tensor([centre, -centre]))
        model[1].weight[:, 0] = torch.tensor([w_inside, -w_inside])
        model[1].weight[:, 3] = torch.tensor([-w_label, w_label])
    return model


def test_a_model_blind_to_the_mask_keeps_its_accuracy_and_is_certified():
    out = robust_metrics(_linear(0.0, 10.0), _data())
    assert out["robust_eps"] == 1.0 and out["pgd_steps"] == 20
    assert out["masked_pgd_accuracy"] == 1.0  # the label pixel decides, the masked pixel has no weight
    correct_with_margin = 1.0  # every x[1,1] != 0.5 exactly, so the linear margin is > 0
    assert out["ibp_certified_accuracy"] == pytest.approx(correct_with_margin)


def test_a_model_that_reads_the_mask_is_broken_by_pgd_and_never_certified():
    out = robust_metrics(_linear(100.0, 1.0), _data())
    assert out["masked_pgd_accuracy"] == 0.0  # setting the masked pixel to 0 or 1 flips every decision
    assert out["ibp_certified_accuracy"] == 0.0
    small = robust_metrics(_linear(100.0, 1.0), _data(), eps=0.0)
    assert small["masked_pgd_accuracy"] == small["ibp_certified_accuracy"]  # a point box: both are clean accuracy


def test_no_mask_gives_nan_and_no_finite_range_gives_none():
    out = robust_metrics(_linear(0.0, 10.0), _data(with_masks=False))
    assert math.isnan(out["masked_pgd_accuracy"]) and math.isnan(out["ibp_certified_accuracy"])
    out = robust_metrics(_linear(0.0, 10.0), _data(input_range=(-math.inf, math.inf)))
    assert out["masked_pgd_accuracy"] is None and "not finite" in out["robust_note"]
    assert robust_metrics(_linear(0.0, 10.0), _data(input_range=(-math.inf, math.inf)), eps=0.5)["robust_eps"] == 0.5


def test_unsupported_layer_keeps_pgd_and_names_the_layer_for_ibp():
    class Odd(nn.Module):
        def forward(self, x):
            return x * x.sigmoid()

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), Odd(), nn.Linear(4, 2))
    out = robust_metrics(model, _data())
    assert 0 <= out["masked_pgd_accuracy"] <= 1
    assert out["ibp_certified_accuracy"] is None and "Odd" in out["ibp_note"]
