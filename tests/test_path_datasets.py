"""``PREFIX:PATH`` dataset specs: a published dataset's downloaded files read by a registered loader."""

import pytest
import torch

from rightreasons.data import registry
from rightreasons.data.dataset import DataSplits, ExplanationDataset
from rightreasons.errors import UserError


def _splits(path, seed):
    x = torch.full((4, 3), float(seed))
    ds = ExplanationDataset(x, torch.tensor([0, 1, 0, 1]), name=path)
    return DataSplits(ds, ds, ds, info={"path": path})


@pytest.fixture
def prefix(monkeypatch):
    monkeypatch.setattr(registry, "PATH_DATASETS", dict(registry.PATH_DATASETS))
    for table in ("_DEFAULT_MODELS", "_DEFAULT_EPOCHS", "_DEFAULT_BATCH_SIZES"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    calls = []

    @registry.register_path_dataset("replica-set", default_model="cnn", default_epochs=3, default_batch_size=7)
    def load(path, seed=0, **options):
        calls.append((path, seed, options))
        return _splits(path, seed)

    return calls


def test_spec_reaches_the_loader_with_path_seed_and_options(prefix):
    splits = registry.load_dataset("replica-set:some/dir:with:colons", seed=5, size=32)
    assert prefix == [("some/dir:with:colons", 5, {"size": 32})]
    assert splits.info["path"] == "some/dir:with:colons"
    assert float(splits.train.x[0, 0]) == 5.0


def test_defaults_hold_for_any_path(prefix):
    assert registry.default_model("replica-set:/a") == "cnn"
    assert registry.default_epochs("replica-set:/b/c") == 3
    assert registry.default_batch_size("replica-set:x") == 7
    assert registry.default_model("folder:/a") == registry.DEFAULT_MODEL


def test_missing_path_is_one_line_error(prefix):
    with pytest.raises(UserError, match="replica-set:"):
        registry.load_dataset("replica-set:")
    assert prefix == []


def test_bad_prefixes_refused(prefix):
    for bad in ("folder", "csv", "Upper", "has space", ""):
        with pytest.raises(ValueError):
            registry.register_path_dataset(bad)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_path_dataset("replica-set")(lambda path, seed=0: None)


def test_unknown_prefix_is_an_unknown_dataset(prefix):
    with pytest.raises(UserError):
        registry.load_dataset("nosuchprefix:/tmp")
