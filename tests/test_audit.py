"""audit(): a model trained on the shortcut gets "relies"; one trained with RRR, or on data without the
shortcut, gets "does_not_rely"; no masks -> "cannot_audit"; IBP reports when it does not apply."""

import pytest
import torch
from torch import nn

from helpers import tiny_mlp
from rightreasons import TrainConfig, create_method, fit
from rightreasons.audit import audit, summary
from rightreasons.data import DataSplits, ExplanationDataset


def splits(shortcut_in_train: bool, seed: int = 0, n: int = 600, margin: float = 0.2) -> DataSplits:
    """6x6 images, class = bottom half brighter (by ``margin``); a 2x2 corner equals the label in train
    (if ``shortcut_in_train``) and is random in test. The corner is masked everywhere."""
    g = torch.Generator().manual_seed(seed)

    def make(n, correlated):
        x = torch.rand(n, 1, 6, 6, generator=g)
        y = torch.randint(0, 2, (n,), generator=g)
        x[:, 0, 3:] = (x[:, 0, 3:] + margin * (2 * y.view(-1, 1, 1) - 1)).clamp(0, 1)
        shade = y.float() if correlated else torch.randint(0, 2, (n,), generator=g).float()
        x[:, 0, :2, :2] = shade.view(-1, 1, 1)
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[:, 0, :2, :2] = True
        return ExplanationDataset(x, y, mask, num_classes=2, name="shortcut")

    return DataSplits(make(n, shortcut_in_train), make(200, shortcut_in_train), make(300, False))


def trained(method: str, data: DataSplits, **params) -> nn.Module:
    model = tiny_mlp((1, 6, 6), classes=2, seed=0)
    fit(model, create_method(method, **params), data, TrainConfig(epochs=15, batch_size=50, lr=1e-2, threads=1))
    return model


@pytest.fixture(scope="module")
def shortcut_data():
    return splits(True)


def test_erm_on_the_shortcut_relies_on_the_masked_region(shortcut_data):
    result = audit(trained("erm", shortcut_data), shortcut_data.test, steps=10)
    assert result["verdict"] == "relies", result["summary"]
    assert result["randomised_flip_rate"] >= 0.10
    assert result["masked_pgd_accuracy"] < result["annotated_accuracy"] - 0.3
    assert result["summary"].startswith("RELIES ON THE MASKED REGION: ")
    assert result["ibp_certified_accuracy"] is not None and result["ibp_not_applicable"] is None
    assert result["annotated_examples"] == 300 and result["eps"] == 1.0
    assert result["mask_area"] == pytest.approx(4 / 36)


def test_rrr_and_clean_training_do_not_rely_on_it(shortcut_data):
    rrr = audit(trained("rrr", shortcut_data, lam=100.0), shortcut_data.test, steps=10)
    assert rrr["verdict"] == "does_not_rely", rrr["summary"]
    assert rrr["summary"].startswith("DOES NOT RELY ON THE MASKED REGION: ")
    clean = splits(False, seed=1)
    result = audit(trained("erm", clean), clean.test, steps=10)
    assert result["verdict"] == "does_not_rely", result["summary"]
    assert result["mask_gradient_share"] < 0.05


def test_no_masks_cannot_be_audited():
    x = torch.rand(20, 1, 6, 6)
    data = ExplanationDataset(x, torch.arange(20) % 2)
    result = audit(tiny_mlp((1, 6, 6), 2), data)
    assert result["verdict"] == "cannot_audit" and result["annotated_examples"] == 0
    assert result["summary"].startswith("CANNOT AUDIT: no example in this split has a mask")
    assert result["accuracy"] is not None


def test_ibp_not_applicable_names_the_layer(shortcut_data):
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.GELU(), nn.Linear(8, 2))
    result = audit(model, shortcut_data.test.subset(torch.arange(20)), steps=2)
    assert result["ibp_certified_accuracy"] is None
    assert "GELU" in result["ibp_not_applicable"] and "IBP" not in summary(result)


def test_audit_is_seeded_and_leaves_the_model_and_global_rng_alone(shortcut_data):
    model = tiny_mlp((1, 6, 6), 2)
    model.train()
    state = torch.random.get_rng_state()
    a = audit(model, shortcut_data.test, steps=2, seed=5)
    b = audit(model, shortcut_data.test, steps=2, seed=5)
    assert a == b and model.training and torch.equal(state, torch.random.get_rng_state())
