"""Group DRO (Sagawa et al. 2020): one group is ERM, weights move to the worst group, state round-trips,
and on data with a minority group it raises worst-group accuracy over ERM."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_batch, tiny_mlp
from rightreasons.data import DataSplits, ExplanationDataset
from rightreasons.errors import UserError
from rightreasons.methods import StepContext, create_method
from rightreasons.metrics import evaluate
from rightreasons.train.config import TrainConfig
from rightreasons.train.trainer import fit


def ctx(step=0):
    return StepContext(step=step, generator=torch.Generator().manual_seed(0))


def test_one_group_is_erm():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(dtype=torch.float64)
    batch.group.zero_()
    method = create_method("group_dro", step_size=0.5, adjustment=1.0)
    for step in range(3):  # q stays [1] whatever the step size
        out = method.loss(model, batch, ctx(step))
        torch.testing.assert_close(out.loss, F.cross_entropy(model(batch.x), batch.y), rtol=1e-12, atol=1e-12)
    assert method.state_dict()["q"] == [1.0]


def test_weights_move_toward_the_worst_group_and_the_loss_follows():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(n=8, dtype=torch.float64)
    batch.group.copy_(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    per_example = F.cross_entropy(model(batch.x), batch.y, reduction="none").detach()
    losses = torch.stack([per_example[:4].mean(), per_example[4:].mean()])
    worst = int(losses.argmax())
    method = create_method("group_dro", step_size=1.0)
    out = method.loss(model, batch, ctx())
    q = torch.tensor(method.state_dict()["q"], dtype=torch.float64)
    expected = torch.softmax(losses, 0)  # uniform prior times exp(eta * loss), normalised
    torch.testing.assert_close(q, expected)
    torch.testing.assert_close(out.loss, (expected * losses).sum())
    before = q[worst].item()
    for step in range(1, 20):
        method.loss(model, batch, ctx(step))
    assert method.state_dict()["q"][worst] > before > 0.5


def test_adjustment_favours_small_groups():
    model = tiny_mlp(dtype=torch.float64)
    batch = tiny_batch(n=8, dtype=torch.float64)
    batch.y.zero_()
    batch.group.copy_(torch.tensor([0, 0, 0, 0, 0, 0, 1, 1]))
    plain, adjusted = create_method("group_dro", adjustment=0.0), create_method("group_dro", adjustment=5.0)
    plain.loss(model, batch, ctx())
    adjusted.loss(model, batch, ctx())
    assert adjusted.state_dict()["q"][1] > plain.state_dict()["q"][1]


def test_q_grows_with_the_group_ids_seen_and_num_groups_fixes_it():
    model = tiny_mlp()
    batch = tiny_batch(n=4)
    method = create_method("group_dro", step_size=0.0)
    batch.group.copy_(torch.tensor([0, 1, 0, 1]))
    method.loss(model, batch, ctx())
    assert method.state_dict()["q"] == pytest.approx([0.5, 0.5])
    batch.group.copy_(torch.tensor([3, 1, 0, 1]))
    method.loss(model, batch, ctx())
    assert method.state_dict()["q"] == pytest.approx([0.25] * 4)  # uniform stays uniform
    fixed = create_method("group_dro", num_groups=3)
    assert fixed.state_dict()["q"] == pytest.approx([1 / 3] * 3)
    with pytest.raises(UserError, match="group id 3 out of range for num_groups=3"):
        fixed.loss(model, batch, ctx())


def test_state_round_trips_and_bad_state_is_refused():
    model = tiny_mlp()
    a = create_method("group_dro", step_size=0.3)
    for step in range(3):
        a.loss(model, tiny_batch(seed=step), ctx(step))
    a.start_epoch(1, 4)
    b = create_method("group_dro", step_size=0.3)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    batch = tiny_batch(seed=9)
    torch.testing.assert_close(a.loss(model, batch, ctx()).loss, b.loss(model, batch, ctx()).loss)
    with pytest.raises(UserError, match="unknown state keys"):
        b.load_state_dict({"weights": [1.0]})
    with pytest.raises(UserError, match="does not fit"):
        create_method("group_dro", num_groups=2).load_state_dict(
            {"q": [0.2, 0.3, 0.5], "counts": [0] * 3, "running": [0] * 3})


def test_group_sizes_come_from_the_last_complete_epoch():
    model = tiny_mlp()
    method = create_method("group_dro")
    batch = tiny_batch(n=6)
    batch.group.copy_(torch.tensor([0, 0, 0, 0, 1, 1]))
    method.start_epoch(0, 2)
    method.loss(model, batch, ctx())
    method.loss(model, batch, ctx(1))
    method.start_epoch(1, 2)
    assert method.state_dict()["counts"] == [8.0, 4.0]
    assert method.state_dict()["running"] == [0.0, 0.0]


def _minority_splits(seed=0):
    """Label = sign of feature 0 (noisy: 85% agreement); feature 1 = label in 95% of training examples
    (the shortcut, clean); group = 2 * label + shortcut. At test the shortcut is random."""
    g = torch.Generator().manual_seed(seed)

    def make(n, p_agree):
        y = torch.randint(0, 2, (n,), generator=g)
        core = torch.where(torch.rand(n, generator=g) < 0.85, y, 1 - y).float()
        shortcut = torch.where(torch.rand(n, generator=g) < p_agree, y, 1 - y)
        x = torch.stack([core * 2 - 1, shortcut.float() * 2 - 1], 1) + 0.3 * torch.randn(n, 2, generator=g)
        return ExplanationDataset(x.view(n, 1, 2), y, None, 2 * y + shortcut, num_classes=2, num_groups=4)

    return DataSplits(make(2000, 0.95), make(500, 0.95), make(2000, 0.5))


def test_group_dro_beats_erm_worst_group_on_a_minority_group_problem():
    data = _minority_splits()
    config = TrainConfig(epochs=15, batch_size=100, lr=0.01, seed=0, threads=1)
    worst = {}
    for name, params in (("erm", {}), ("group_dro", {"step_size": 0.1})):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        fit(model, create_method(name, **params), data, config)
        worst[name] = evaluate(model, data.test, mask_share=False)["worst_group_accuracy"]
    assert worst["group_dro"] > worst["erm"] + 0.1, worst
    assert not math.isnan(worst["erm"])


class _Interrupt(Exception):
    pass


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    """q and the group counts are checkpointed: 4 epochs straight == 2 epochs, stop, resume to 4."""
    from rightreasons.train.run import build_model

    data = _minority_splits()
    config = TrainConfig(method="group_dro", epochs=4, batch_size=200, seed=3, params={"step_size": 0.1}, threads=1)

    def fresh():
        return build_model(config, data.input_shape, data.num_classes), create_method("group_dro", step_size=0.1)

    model, method = fresh()
    straight = fit(model, method, data, config)

    def stop(line):
        if line.startswith("epoch 2/"):
            raise _Interrupt(line)

    model2, method2 = fresh()
    with pytest.raises(_Interrupt):
        fit(model2, method2, data, config, checkpoint_dir=tmp_path / "ckpt", log=stop)
    model3, method3 = fresh()
    resumed = fit(model3, method3, data, config, checkpoint_dir=tmp_path / "ckpt", resume=True)
    for p, q in zip(model.parameters(), model3.parameters()):
        assert torch.equal(p, q)
    assert method3.state_dict() == method.state_dict()
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
