"""The training loop: determinism, selection on validation only, non-finite losses, modes, RRR
actually removing a planted shortcut, and run directories."""

import json
import math

import pytest
import torch

from helpers import shortcut_splits
from rightreasons.data import DataSplits
from rightreasons.errors import UserError
from rightreasons.methods import Method, create_method
from rightreasons.train import NonFiniteLossError, TrainConfig, fit, load_run, run_training, save_run
from rightreasons.train.run import build_model, check_out_dir


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def train(method="rrr", seed=0, epochs=2, data=None, **params):
    config = TrainConfig(method=method, seed=seed, epochs=epochs, batch_size=64, params=params)
    data = data or shortcut_splits()
    model = build_model(config, data.input_shape, data.num_classes)
    result = fit(model, create_method(method, **params), data, config)
    return model, result


def test_same_seed_gives_identical_parameters_and_another_seed_does_not():
    a, _ = train(seed=3)
    b, _ = train(seed=3)
    c, _ = train(seed=4)
    assert all(torch.equal(p, q) for p, q in zip(params_of(a), params_of(b)))
    assert not all(torch.equal(p, q) for p, q in zip(params_of(a), params_of(c)))


def test_training_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train()
    assert torch.equal(torch.rand(3), expected)


class Untouchable:
    """A test split that fails loudly if the trainer ever reads it."""

    name = "test"

    def __getattr__(self, item):
        raise AssertionError(f"the trainer read the test split ({item})")

    def __len__(self):
        raise AssertionError("the trainer read the test split (len)")


@pytest.mark.parametrize("select", ["last", "val_accuracy", "val_worst_group_accuracy"])
def test_model_selection_never_reads_the_test_split(select):
    d = shortcut_splits()
    data = DataSplits(d.train, d.val, Untouchable())
    config = TrainConfig(method="erm", epochs=3, batch_size=64, select=select)
    model = build_model(config, d.input_shape, d.num_classes)
    result = fit(model, create_method("erm"), data, config)
    assert len(result.history) == 3
    assert 1 <= result.selected_epoch <= 3
    if select != "last":
        best = max(range(3), key=lambda i: result.history[i][select])
        assert result.selected_epoch == best + 1


class ExplodesAtStep(Method):
    name = "explodes"
    uses_mask = False

    def __init__(self, at):
        super().__init__()
        self.at = at

    def penalties(self, model, batch, x, logits, ctx):
        bad = torch.tensor(math.inf if ctx.step == self.at else 0.0)
        return {"boom_term": bad}


def test_non_finite_loss_stops_training_naming_step_and_term():
    config = TrainConfig(method="erm", epochs=2, batch_size=64)
    data = shortcut_splits()
    model = build_model(config, data.input_shape, data.num_classes)
    with pytest.raises(NonFiniteLossError, match=r"step 11: term\(s\) boom_term"):
        fit(model, ExplodesAtStep(11), data, config)


def test_model_mode_is_restored_after_training_and_after_an_exception():
    config = TrainConfig(method="erm", epochs=1, batch_size=64)
    data = shortcut_splits()
    model = build_model(config, data.input_shape, data.num_classes).eval()
    fit(model, create_method("erm"), data, config)
    assert not model.training
    with pytest.raises(NonFiniteLossError):
        fit(model, ExplodesAtStep(0), data, config)
    assert not model.training


def test_rrr_removes_the_planted_shortcut_that_erm_learns():
    """On the shortcut task the corner patch equals the label in train and is random in test: ERM
    leans on it (high gradient share in the mask), RRR does not and generalises better."""
    data = shortcut_splits(n_train=1500, n_eval=600)
    erm = run_training(TrainConfig(method="erm", epochs=15, batch_size=64), data=data)
    rrr = run_training(TrainConfig(method="rrr", epochs=15, batch_size=64, params={"lam": 10.0}), data=data)
    assert erm.metrics["val"]["accuracy"] > 0.95  # the shortcut makes val (train distribution) easy
    assert rrr.metrics["test"]["worst_group_accuracy"] > erm.metrics["test"]["worst_group_accuracy"] + 0.1
    assert rrr.metrics["test"]["mask_gradient_share"] < erm.metrics["test"]["mask_gradient_share"] / 5


def test_run_directory_round_trip(tmp_path):
    data = shortcut_splits()
    output = run_training(TrainConfig(method="rrr", epochs=1, batch_size=64), data=data)
    save_run(tmp_path / "run", output)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["params"] == {"lam": 10.0, "target": "log_prob_sum", "norm": "squared_l2", "everywhere": False}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("accuracy", "worst_group_accuracy", "mean_group_accuracy", "group_accuracy", "mask_gradient_share"):
        assert key in metrics["test"] and key in metrics["val"]
    assert metrics["train_seconds"] > 0
    model, loaded_config, _ = load_run(tmp_path / "run", data=data)
    assert loaded_config.to_dict() == output.config.to_dict()
    for p, q in zip(model.parameters(), output.model.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(UserError, match="already holds a run"):
        check_out_dir(tmp_path / "run")
    check_out_dir(tmp_path / "run", overwrite=True)


def test_corrupt_weights_give_a_clear_error(tmp_path):
    data = shortcut_splits()
    save_run(tmp_path / "run", run_training(TrainConfig(method="erm", epochs=1, batch_size=64), data=data))
    (tmp_path / "run" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="model.safetensors: cannot read weights"):
        load_run(tmp_path / "run", data=data)


def test_cosine_learning_rate_follows_the_formula_and_constant_stays_put():
    from rightreasons.train.trainer import learning_rate

    cosine = TrainConfig(lr=0.004, lr_schedule="cosine")
    total = 40
    assert learning_rate(cosine, 0, total) == pytest.approx(0.004)
    assert learning_rate(cosine, total // 2, total) == pytest.approx(0.002)
    assert learning_rate(cosine, total, total) == pytest.approx(0.0, abs=1e-15)
    slow = [0.004 * (1 + math.cos(math.pi * s / total)) / 2 for s in range(total)]  # the obvious way
    assert [learning_rate(cosine, s, total) for s in range(total)] == pytest.approx(slow, rel=1e-12)
    constant = TrainConfig(lr=0.004, lr_schedule="constant")
    assert {learning_rate(constant, s, total) for s in range(total)} == {0.004}
    with pytest.raises(UserError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_the_optimiser_uses_the_scheduled_rate_at_every_step():
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    import rightreasons.train.trainer as trainer

    config = TrainConfig(method="erm", epochs=3, batch_size=64, lr=0.01, lr_schedule="cosine", optimizer="sgd")
    data = shortcut_splits()
    model = build_model(config, data.input_shape, data.num_classes)
    original = trainer.make_optimizer
    trainer.make_optimizer = lambda m, c: Spy([p for p in m.parameters()], lr=c.lr)
    try:
        fit(model, create_method("erm"), data, config)
    finally:
        trainer.make_optimizer = original
    total = config.epochs * data.train.num_batches(config.batch_size)
    assert len(seen) == total
    assert seen == pytest.approx([trainer.learning_rate(config, s, total) for s in range(total)])
    assert seen[0] == pytest.approx(0.01) and seen[-1] < 0.01 * 0.01


def test_unset_epochs_train_for_the_named_datasets_default():
    data = shortcut_splits(n_train=64, n_eval=32)
    lines = []
    for name, expected in (("decoy-mnist-half", 20), ("decoy-mnist", 15)):
        config = TrainConfig(data=name, method="erm", batch_size=64, threads=1)
        model = build_model(config.replace(model="mlp"), data.input_shape, data.num_classes)
        lines.clear()
        result = fit(model, create_method("erm"), data, config, log=lines.append)
        assert result.selected_epoch == expected and len(lines) == expected
        assert lines[-1].startswith(f"epoch {expected}/{expected} ")
