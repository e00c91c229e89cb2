"""Augmentation in training: the config field ``augment`` (and ``train --augment PRESET --augment-option
KEY=VALUE``), validated in one line; no augmentation leaves training bit for bit as it was; with it, the
same seed gives the same run, another seed another, and a resumed run equals an uninterrupted one."""

import json

import pytest
import torch

from helpers import shortcut_splits, tiny_cnn
from rightreasons.cli import main
from rightreasons.data import ExplanationDataset
from rightreasons.errors import UserError
from rightreasons.methods import create_method
from rightreasons.train import TrainConfig, fit


class Interrupt(Exception):
    pass


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _fit(config, data, **kwargs):
    model = tiny_cnn(classes=2)
    return model, fit(model, create_method("rrr"), data, config, **kwargs)


def test_no_augmentation_is_training_as_before_and_flips_change_it():
    data = shortcut_splits(n_train=128, n_eval=32)
    base = TrainConfig(epochs=1, batch_size=32)
    plain, _ = _fit(base, data)
    none, _ = _fit(base.replace(augment={"preset": "none"}), data)
    flipped, _ = _fit(base.replace(augment={"preset": "flip"}), data)
    again, _ = _fit(base.replace(augment={"preset": "flip"}), data)
    other, _ = _fit(base.replace(augment={"preset": "flip"}, seed=1), data)
    assert torch.equal(_params(plain), _params(none))
    assert not torch.equal(_params(plain), _params(flipped))
    assert torch.equal(_params(flipped), _params(again))
    assert not torch.equal(_params(flipped), _params(other))


def test_a_resumed_augmented_run_equals_an_uninterrupted_one(tmp_path):
    data = shortcut_splits(n_train=128, n_eval=32)
    config = TrainConfig(epochs=3, batch_size=32, augment={"preset": "strong", "brightness": 0.1})
    whole, straight = _fit(config, data)

    def stop(line):
        if line.startswith("epoch 1/"):
            raise Interrupt(line)

    with pytest.raises(Interrupt):
        _fit(config, data, checkpoint_dir=tmp_path, log=stop)
    resumed, history = _fit(config, data, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(_params(resumed), _params(whole))
    assert [h["loss"] for h in history.history] == [h["loss"] for h in straight.history]


@pytest.mark.parametrize("augment, message", [
    ("standard", "config field 'augment' must be an object"),
    ({"hflip": 2}, "config field 'augment': .*hflip"),
    ({"preset": "wild"}, "config field 'augment': .*wild"),
    ({"spin": 1}, "config field 'augment': .*spin"),
])
def test_bad_augmentation_settings_are_one_line_errors(augment, message):
    with pytest.raises(UserError, match=message):
        TrainConfig(augment=augment)


def test_augmenting_data_that_are_not_images_is_refused_before_training():
    x = torch.rand(64, 5)
    y = (x[:, 0] > 0.5).long()
    table = ExplanationDataset(x, y, name="table")
    model = torch.nn.Sequential(torch.nn.Linear(5, 2))
    with pytest.raises(UserError, match=r"augmentation needs image batches \(B, C, H, W\), got \(1, 5\)"):
        fit(model, create_method("erm"), table, TrainConfig(epochs=1, augment={"preset": "flip"}))
    assert model[0].weight.grad is None


def test_the_train_command_records_the_preset_and_its_overrides(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", "toy-colors", "--method", "erm", "--epochs", "1", "--threads", "1",
                 "--augment", "flip", "--augment-option", "vflip=0.5", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["augment"] == {"preset": "flip", "vflip": 0.5}
    assert main(["train", "--data", "toy-colors", "--epochs", "1", "--augment-option", "hflip=7",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
