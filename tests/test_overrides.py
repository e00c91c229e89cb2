"""Building a run's config from a base and overrides (what every training command does), and loading a
saved run onto another dataset, without click."""

import pytest

from helpers import shortcut_splits
from rightreasons.errors import UserError
from rightreasons.train import TrainConfig, apply_overrides, load_run_on, parse_assignments, run_training, save_run


def test_fields_replace_and_assignments_merge():
    base = TrainConfig(method="rrr", params={"lam": 3.0}, data_options={"val": "decorrelated"})
    config = apply_overrides(base, {"epochs": 4, "lr": None}, ["target=loss"], ["limit_train=10"], {"hidden": [8]})
    assert config.epochs == 4 and config.lr == base.lr
    assert config.params == {"lam": 3.0, "target": "loss"}
    assert config.data_options == {"val": "decorrelated", "limit_train": 10}
    assert config.model_options == {"hidden": [8]}


def test_another_method_drops_the_old_methods_parameters():
    config = apply_overrides(TrainConfig(method="rrr", params={"lam": 3.0}), {"method": "pgd_ex"}, ["eps=0.5"])
    assert config.method == "pgd_ex" and config.params == {"eps": 0.5}


def test_values_are_json_literals_never_code():
    assert parse_assignments(["a=1", "b=0.5", "c=true", "d=[1, 2]", "e=__import__('os')"], "--param") == {
        "a": 1, "b": 0.5, "c": True, "d": [1, 2], "e": "__import__('os')"}
    with pytest.raises(UserError, match="--param 'lam': expected KEY=VALUE"):
        parse_assignments(["lam"], "--param")
    with pytest.raises(UserError, match="unknown setting 'colour'"):
        apply_overrides(TrainConfig(), {"colour": "red"})
    with pytest.raises(UserError, match="'lr' must be > 0"):
        apply_overrides(TrainConfig(), {"lr": -1.0})


def test_a_run_loads_onto_its_own_data_or_another(tmp_path, monkeypatch):
    import rightreasons.train.run as run

    splits = shortcut_splits(n_train=64, n_eval=32)
    config = TrainConfig(data="toy-colors", method="erm", epochs=1, batch_size=32, model="mlp")
    output = run_training(config, data=splits)
    save_run(tmp_path / "r", output)
    asked = []

    def fake_load(name, seed=0, **options):
        asked.append((name, seed, options))
        return splits

    monkeypatch.setattr(run, "load_dataset", fake_load)
    config_with_options = TrainConfig.load(tmp_path / "r" / "config.json")
    assert config_with_options.data == "toy-colors"
    load_run_on(tmp_path / "r", None, {"annotate": "none"})
    load_run_on(tmp_path / "r", "decoy-mnist", {"limit_train": 5})
    assert asked == [("toy-colors", 0, {"annotate": "none"}), ("decoy-mnist", 0, {"limit_train": 5})]
    with pytest.raises(UserError, match="no such run directory"):
        load_run_on(tmp_path / "missing", "decoy-mnist")
