"""The wrong-reason score: binarised saliency overlapping the mask, on masks with known answers."""

import math

import pytest
import torch
from torch import nn

from rightreasons.data import ExplanationDataset
from rightreasons.errors import UserError
from rightreasons.metrics.wrong_reason import binarize, wrong_reason, wrong_reason_score


def test_binarize_threshold_and_top_fraction():
    s = torch.tensor([[1.0, -0.9, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert binarize(s, 0.67).tolist() == [[True, True, False, False], [False, False, False, False]]
    assert binarize(s, 0.0).tolist() == [[True, True, True, False], [False, False, False, False]]
    assert binarize(s, top_fraction=0.25).tolist() == [[True, False, False, False], [False, False, False, False]]
    assert binarize(s, top_fraction=0.5).tolist() == [[True, True, False, False], [False, False, False, False]]
    with pytest.raises(UserError, match="threshold"):
        binarize(s, 1.0)
    with pytest.raises(UserError, match="top_fraction"):
        binarize(s, top_fraction=0.0)


def test_known_answers_all_in_none_in_half_in():
    mask = torch.zeros(3, 1, 4, 4)
    mask[:, :, :2] = 1  # top half is the shortcut
    sal = torch.zeros(3, 1, 4, 4)
    sal[0, 0, 0, :] = 1.0  # all salient features inside the mask
    sal[1, 0, 3, :] = 1.0  # none inside
    sal[2, 0, 0, :2] = 1.0  # half inside
    sal[2, 0, 3, :2] = 1.0
    assert wrong_reason(sal, mask).tolist() == [1.0, 0.0, 0.5]
    # IoU: 4 of the 8 mask pixels / union 8; 0 / 12; 2 / (8 + 2)
    assert wrong_reason(sal, mask, overlap="iou").tolist() == pytest.approx([0.5, 0.0, 0.2])


def test_small_gradients_below_the_threshold_do_not_count():
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 1
    sal = torch.tensor([[[[0.1, 0.0], [0.0, 1.0]]]])  # a little gradient inside, the peak outside
    assert wrong_reason(sal, mask).item() == 0.0
    assert wrong_reason(sal, mask, threshold=0.05).item() == 0.5


def test_undefined_examples_are_nan_and_shapes_are_checked():
    mask = torch.zeros(2, 4)
    mask[0, 0] = 1
    sal = torch.zeros(2, 4)
    sal[1, 0] = 1.0
    out = wrong_reason(sal, mask)  # example 0: zero saliency; example 1: empty mask
    assert out.isnan().all()
    with pytest.raises(UserError, match=r"saliency shape \(2, 4\) does not match mask shape \(2, 3\)"):
        wrong_reason(sal, torch.zeros(2, 3))
    with pytest.raises(UserError, match="overlap"):
        wrong_reason(sal, mask, overlap="dice")


def _linear_model(weights):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(weights))
    return model


def test_dataset_score_of_a_model_that_reads_only_the_mask_or_only_outside():
    x = torch.rand(6, 1, 2, 2)
    y = torch.randint(0, 2, (6,))
    mask = torch.zeros(6, 1, 2, 2, dtype=torch.bool)
    mask[:, 0, 0, 0] = True
    data = ExplanationDataset(x, y, mask, num_classes=2)
    inside = _linear_model([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])  # the gradient lives on pixel (0, 0) only
    outside = _linear_model([[0, 0, 0, 1.0], [0, 0, 0, -1.0]])
    assert wrong_reason_score(inside, data) == pytest.approx(1.0)
    assert wrong_reason_score(outside, data) == pytest.approx(0.0)
    inside.train()
    wrong_reason_score(inside, data)
    assert inside.training  # mode restored


def test_no_annotated_example_gives_nan_and_a_warning():
    x = torch.rand(4, 1, 2, 2)
    data = ExplanationDataset(x, torch.tensor([0, 1, 0, 1]), None, num_classes=2, name="plain")
    model = _linear_model([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    with pytest.warns(RuntimeWarning, match="no annotated example"):
        assert math.isnan(wrong_reason_score(model, data))


def test_evaluate_reports_the_same_score_as_the_standalone_metric():
    from rightreasons.metrics.evaluate import evaluate

    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 1, 2, 2, generator=g)
    y = torch.randint(0, 2, (50,), generator=g)
    mask = torch.zeros(50, 1, 2, 2, dtype=torch.bool)
    mask[:, 0, 0, :] = True  # half the pixels
    has = torch.arange(50) % 3 != 0  # partial annotation
    data = ExplanationDataset(x, y, mask, has_mask=has, num_classes=2)
    for weights in ([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], [[0, 0, 0, 1.0], [0, 0, 0, -1.0]],
                    torch.randn(2, 4, generator=g).tolist()):
        model = _linear_model(weights)
        got = evaluate(model, data, batch_size=7)["wrong_reason"]  # several batches
        assert got == pytest.approx(wrong_reason_score(model, data))
    assert evaluate(_linear_model([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]), data)["wrong_reason"] == pytest.approx(1.0)
