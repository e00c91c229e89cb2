"""TrainConfig: JSON round trip, unknown keys and wrong types rejected with the field named."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rightreasons.errors import UserError
from rightreasons.train import TrainConfig


def test_round_trip(tmp_path):
    config = TrainConfig(method="erm", epochs=3, params={}, data_options={"val": "decorrelated"})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.load(path) == config


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"epoch": 3}, "unknown field 'epoch'"),
        ({"epochs": "3"}, "'epochs' must be a positive integer or null"),
        ({"epochs": 0}, "'epochs' must be a positive integer"),
        ({"epochs": True}, "'epochs' must be a positive integer"),
        ({"lr": -1.0}, "'lr' must be > 0"),
        ({"lr": True}, "'lr' must be float"),
        ({"optimizer": "rmsprop"}, "'optimizer' must be one of"),
        ({"params": [1, 2]}, "'params' must be dict"),
        ({"select": "test_accuracy"}, "'select' must be one of"),
        ({"threads": 0}, "'threads' must be a positive integer"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, raw, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match=message) as info:
        TrainConfig.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{\"epochs\": 3,,}")
    with pytest.raises(UserError, match="invalid JSON at line 1"):
        TrainConfig.load(path)
    with pytest.raises(UserError, match="cannot read config"):
        TrainConfig.load(tmp_path / "nope.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["data", "epochs", "lr", "seed", "params", "threads", "select", "bogus"]),
                       json_values, max_size=4))
def test_fuzzed_configs_load_or_raise_user_error(raw):
    try:
        config = TrainConfig.from_dict(raw)
    except UserError as exc:
        assert "\n" not in str(exc)
    else:
        assert config.epochs is None or (isinstance(config.epochs, int) and config.epochs >= 1)
        assert isinstance(config.epoch_count(), int) and config.epoch_count() >= 1
        assert isinstance(config.lr, float) and config.lr > 0


def test_auto_model_is_the_datasets_default_and_is_written_resolved():
    from rightreasons.data import default_model, register_dataset
    from rightreasons.train.run import resolved_config

    assert TrainConfig().model == "auto"
    assert TrainConfig(data="decoy-mnist").model_name() == "mlp"
    assert TrainConfig(data="decoy-mnist-half").model_name() == "cnn-strided"
    assert TrainConfig(data="folder:/some/images").model_name() == "mlp"
    assert TrainConfig(data="decoy-mnist-half", model="mlp").model_name() == "mlp"
    resolved = resolved_config(TrainConfig(data="decoy-mnist-half", method="erm"))
    assert resolved.model == "cnn-strided" and resolved.to_dict()["model"] == "cnn-strided"
    assert default_model("no-such-dataset") == "mlp"
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("decoy-mnist-half", default_model="mlp")(lambda seed=0: None)
    assert default_model("decoy-mnist-half") == "cnn-strided"  # a refused registration changes nothing


def test_unset_epochs_are_the_datasets_default_and_written_resolved():
    from rightreasons.data import default_epochs
    from rightreasons.train.run import resolved_config

    assert TrainConfig().epochs is None
    assert TrainConfig(data="decoy-mnist").epoch_count() == 15
    assert TrainConfig(data="decoy-mnist-half").epoch_count() == 20
    assert TrainConfig(data="csv:/some/table.csv").epoch_count() == 15
    assert TrainConfig(data="decoy-mnist-half", epochs=3).epoch_count() == 3
    resolved = resolved_config(TrainConfig(data="decoy-mnist-half", method="erm"))
    assert resolved.epochs == 20 and resolved.to_dict()["epochs"] == 20
    assert default_epochs("no-such-dataset") == 15


def test_unset_batch_size_is_the_datasets_default_and_written_resolved():
    from rightreasons.data import default_batch_size
    from rightreasons.train.run import resolved_config

    assert TrainConfig().batch_size is None
    assert TrainConfig(data="decoy-mnist").batch_size_used() == 256
    assert TrainConfig(data="decoy-mnist-half").batch_size_used() == 64
    assert TrainConfig(data="folder:/some/images").batch_size_used() == 256
    assert TrainConfig(data="decoy-mnist-half", batch_size=100).batch_size_used() == 100
    resolved = resolved_config(TrainConfig(data="decoy-mnist-half", method="erm"))
    assert resolved.batch_size == 64 and resolved.to_dict()["batch_size"] == 64
    assert default_batch_size("no-such-dataset") == 256


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "64"])
def test_a_nonsense_batch_size_names_the_field(bad):
    with pytest.raises(UserError, match="config field 'batch_size' must be a positive integer or null"):
        TrainConfig(batch_size=bad)


def test_fit_trains_with_the_datasets_default_batch_size():
    """A config that leaves batch_size unset trains with the dataset's: the sizes of the batches the
    model sees in training show which one was used."""
    import torch

    from rightreasons.data.dataset import ExplanationDataset
    from rightreasons.methods import create_method
    from rightreasons.train.trainer import fit

    x = torch.rand(130, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    data = ExplanationDataset(x, (x.mean((1, 2, 3)) > 0.5).long(), name="tiny")
    seen = {}
    for name in ("decoy-mnist", "decoy-mnist-half"):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        sizes = seen.setdefault(name, [])
        def record(module, inputs, output, sizes=sizes):  # training steps only (fit's eval-mode probe aside)
            if module.training:
                sizes.append(len(inputs[0]))

        model.register_forward_hook(record)
        fit(model, create_method("erm"), data, TrainConfig(data=name, method="erm", epochs=1, threads=1))
    assert seen == {"decoy-mnist": [130], "decoy-mnist-half": [64, 64, 2]}


@pytest.mark.parametrize("field", ["default_epochs", "default_batch_size"])
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "20"])
def test_a_dataset_cannot_register_a_nonsense_epoch_count_or_batch_size(field, bad):
    from rightreasons.data import DATASETS, register_dataset

    with pytest.raises(ValueError, match=f"{field} must be a positive integer"):
        register_dataset("never-registered", **{field: bad})
    assert "never-registered" not in DATASETS.names()


def test_auto_model_is_the_split_version_for_a_method_that_needs_one():
    from rightreasons.train.run import resolved_config

    assert TrainConfig(method="feature_kl").model_name() == "split-mlp"
    assert TrainConfig(method="feature_kl", data="decoy-mnist-half").model_name() == "split-cnn-strided"
    assert TrainConfig(method="rrr", data="decoy-mnist-half").model_name() == "cnn-strided"
    assert TrainConfig(method="feature_kl", model="split-mlp-ross").model_name() == "split-mlp-ross"
    assert resolved_config(TrainConfig(method="feature_kl")).model == "split-mlp"
