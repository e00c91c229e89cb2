"""Selecting the epoch on a validation split whose shortcut is broken inside the masks."""

import pytest
import torch

from rightreasons.data.dataset import DataSplits, ExplanationDataset
from rightreasons.data.shortcut_break import break_shortcut
from rightreasons.data.text import TextDataset, Vocabulary
from rightreasons.errors import UserError


def _images(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=g)
    mask = torch.zeros(n, 1, 4, 4, dtype=torch.bool)
    mask[:, :, 0, :2] = True
    has = torch.ones(n, dtype=torch.bool)
    has[-1] = False  # one example without annotation: left alone
    return ExplanationDataset(x, torch.arange(n) % 3, mask, has_mask=has, name="toy")


@pytest.mark.parametrize("how", ["random", "swap"])
def test_only_the_masked_region_of_annotated_examples_changes(how):
    data = _images()
    broken = break_shortcut(data, how, seed=1)
    outside = ~data.mask
    assert torch.equal(broken.x[outside], data.x[outside])
    assert torch.equal(broken.x[-1], data.x[-1])
    inside = data.mask[:-1]
    assert not torch.equal(broken.x[:-1][inside], data.x[:-1][inside])
    assert torch.equal(broken.y, data.y) and torch.equal(broken.mask, data.mask)
    assert torch.equal(broken.has_mask, data.has_mask) and torch.equal(broken.group, data.group)
    again = break_shortcut(data, how, seed=1)
    assert torch.equal(again.x, broken.x)  # seeded
    assert not torch.equal(break_shortcut(data, how, seed=2).x, broken.x)
    assert data.x.equal(_images().x)  # the input split is untouched


def test_swap_copies_another_class_masked_pixels():
    data = _images()
    broken = break_shortcut(data, "swap", seed=3)
    annotated = torch.arange(len(data) - 1)
    for i in annotated.tolist():
        region = broken.x[i][data.mask[i]]
        donors = [j for j in annotated.tolist() if int(data.y[j]) != int(data.y[i])
                  and torch.equal(data.x[j][data.mask[j]], region)]
        assert donors, i


def test_random_values_lie_in_the_data_range():
    data = ExplanationDataset(torch.full((6, 1, 3, 3), 0.5), torch.arange(6) % 2, torch.ones(6, 1, 3, 3),
                              input_range=(-2.0, -1.0))
    broken = break_shortcut(data, "random", seed=0)
    assert bool(((broken.x >= -2.0) & (broken.x <= -1.0)).all())
    unbounded = ExplanationDataset(data.x, data.y, data.mask, input_range=(float("-inf"), float("inf")))
    with pytest.raises(UserError, match="not finite"):
        break_shortcut(unbounded, "random")


def test_text_masked_tokens_are_replaced():
    vocab = Vocabulary([f"w{i}" for i in range(20)])
    ids = torch.tensor([[2, 3, 4, 0], [5, 6, 7, 8], [9, 10, 0, 0], [11, 12, 13, 14]])
    mask = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    data = TextDataset(ids, torch.tensor([0, 1, 0, 1]), vocab, mask=mask)
    swapped = break_shortcut(data, "swap", seed=0)
    assert torch.equal(swapped.ids[~mask], ids[~mask])
    assert int(swapped.ids[0, 1]) in (5, 8, 13)  # a masked token of a class-1 document
    random = break_shortcut(data, "random", seed=0)
    assert torch.equal(random.ids[~mask], ids[~mask]) and bool((random.ids[mask] >= 2).all())
    assert random.words[0][1] == vocab.words[int(random.ids[0, 1])]


def test_unannotated_validation_and_streaming_are_refused():
    data = ExplanationDataset(torch.rand(4, 2), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(UserError, match="no annotated example"):
        break_shortcut(data)


def test_fit_selects_on_the_broken_split_and_records_it():
    import rightreasons as rr

    torch.manual_seed(0)
    data = _images(n=30)
    splits = DataSplits(data, data, data)
    model = rr.create_model("mlp", data.input_shape, 3, hidden=[8])
    result = rr.fit(model, rr.create_method("erm"), splits,
                    rr.TrainConfig(epochs=3, batch_size=10, select="val_broken_worst_group_accuracy"))
    scores = [r["val_broken_worst_group_accuracy"] for r in result.history]
    assert all("val_broken_accuracy" in r for r in result.history)
    assert result.selected_epoch == 1 + scores.index(max(scores))
    with pytest.raises(UserError, match="val_break"):
        rr.TrainConfig(val_break="blur").validate()
