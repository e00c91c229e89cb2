"""Weight averaging (``ema_decay``): the kept weights are the exponential moving average of the weights after
every step, computed here by an obvious float64 loop over recorded weights; averaging changes nothing about
training; resume is exact with it; the comparison of selection rules reports the unaveraged last epoch; bad
decays are refused in one line."""

import json

import pytest
import torch
from torch import nn

import rightreasons as rr
from data_fixtures import make_idx_dir
from helpers import shortcut_splits
from rightreasons.bench.results import collect_rows
from rightreasons.cli import main
from rightreasons.errors import UserError
from rightreasons.methods import create_method
from rightreasons.metrics.evaluate import evaluate
from rightreasons.train import averaging
from rightreasons.train.averaging import WeightAverage, decay_at
from rightreasons.train.checkpoint import latest_checkpoint
from rightreasons.train.run import build_model, run_training


def _reference_average(snapshots, decay):
    """Slow and obvious, in float64: avg_0 = w_0; avg_t = d * avg_{t-1} + (1 - d) * w_t with
    d = min(decay, (1 + t) / (10 + t)) for t = 1, 2, ... (t updates came before)."""
    avg = {k: v.double().clone() for k, v in snapshots[0].items()}
    for t, weights in enumerate(snapshots[1:], start=1):
        d = min(decay, (1.0 + t) / (10.0 + t))
        for k in avg:
            if avg[k].is_floating_point():
                avg[k] = d * avg[k] + (1.0 - d) * weights[k].double()
            else:
                avg[k] = weights[k].clone()
    return avg


def test_the_decay_warms_up_then_holds():
    assert decay_at(0.999, 0) == pytest.approx(0.1)
    assert decay_at(0.999, 90) == pytest.approx(91 / 100)
    assert decay_at(0.9, 10_000) == 0.9
    values = [decay_at(0.99, t) for t in range(2000)]
    assert all(a <= b for a, b in zip(values, values[1:])) and values[-1] == 0.99


def test_updates_follow_the_formula_with_batchnorm_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    average, snapshots = WeightAverage(0.8), []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(40):
        x = torch.randn(16, 4)
        opt.zero_grad()
        model(x).logsumexp(1).mean().backward()
        opt.step()
        average.update(model)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    expected = _reference_average(snapshots, 0.8)
    for name, value in average.weights.items():
        if value.is_floating_point():
            torch.testing.assert_close(value.double(), expected[name], rtol=1e-5, atol=1e-6)
        else:  # the batch counter is copied, not averaged
            assert torch.equal(value, snapshots[-1][name]) and value.item() == 40
    # the average is not the last weights (it could not fail otherwise)
    assert not torch.allclose(average.weights["0.weight"], snapshots[-1]["0.weight"])


def test_applied_swaps_the_average_in_and_the_weights_back_even_after_an_error():
    model = nn.Linear(3, 2)
    average = WeightAverage(0.5)
    average.update(model)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    average.weights["weight"].add_(1.0)
    with average.applied(model):
        assert torch.equal(model.weight, own["weight"] + 1.0)
    assert torch.equal(model.weight, own["weight"])
    with pytest.raises(RuntimeError, match="boom"), average.applied(model):
        raise RuntimeError("boom")
    assert torch.equal(model.weight, own["weight"])


def _fit(data, config, **kwargs):
    model = build_model(config, data.input_shape, data.num_classes)
    result = rr.fit(model, create_method(config.method), data, config, **kwargs)
    return model, result


def test_the_kept_model_is_the_average_of_the_weights_after_every_step(monkeypatch):
    data = shortcut_splits(n_train=300, n_eval=100)
    config = rr.TrainConfig(method="rrr", epochs=3, batch_size=50, seed=2, threads=1, ema_decay=0.9)
    snapshots = []
    update = WeightAverage.update

    def recording_update(self, model):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        update(self, model)

    monkeypatch.setattr(averaging.WeightAverage, "update", recording_update)
    averaged, _ = _fit(data, config)
    assert len(snapshots) == 3 * 6
    expected = _reference_average(snapshots, 0.9)
    for name, value in averaged.state_dict().items():
        torch.testing.assert_close(value.double(), expected[name], rtol=1e-5, atol=1e-6)
    # training itself is unchanged: the last weights seen are those of the same run without averaging
    monkeypatch.undo()
    plain, _ = _fit(data, config.replace(ema_decay=None))
    for name, value in plain.state_dict().items():
        assert torch.equal(value, snapshots[-1][name]), name


def test_validation_and_selection_read_the_averaged_weights():
    data = shortcut_splits(n_train=300, n_eval=100)
    config = rr.TrainConfig(method="erm", epochs=3, batch_size=50, seed=1, threads=1, ema_decay=0.95,
                            select="val_accuracy")
    model, result = _fit(data, config)
    kept = evaluate(model, data.val, mask_share=False)
    record = result.history[result.selected_epoch - 1]
    assert record["val_accuracy"] == max(r["val_accuracy"] for r in result.history) == kept["accuracy"]
    assert record["val_worst_group_accuracy"] == kept["worst_group_accuracy"]


def test_resume_with_averaging_is_exact(tmp_path):
    data = shortcut_splits(n_train=300, n_eval=100)
    config = rr.TrainConfig(method="rrr", epochs=4, batch_size=50, seed=5, threads=1, ema_decay=0.9)
    straight, _ = _fit(data, config)

    class Stop(Exception):
        pass

    def stop_after_two(line):
        if line.startswith("epoch 2/"):
            raise Stop

    with pytest.raises(Stop):
        _fit(data, config, checkpoint_dir=tmp_path, log=stop_after_two)
    assert latest_checkpoint(tmp_path).name == "epoch-0002"
    resumed, _ = _fit(data, config, checkpoint_dir=tmp_path, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(UserError, match="different ema_decay"):
        _fit(data, config.replace(ema_decay=0.5), checkpoint_dir=tmp_path, resume=True)


def test_the_comparison_reports_the_last_epochs_own_weights():
    data = shortcut_splits(n_train=300, n_eval=100)
    config = rr.TrainConfig(method="rrr", epochs=4, batch_size=20, lr=0.01, lr_schedule="constant", seed=4, threads=1,
                            ema_decay=0.9, compare_selections=True)
    output = run_training(config, data=data)
    selections = output.metrics["selections"]
    plain = run_training(config.replace(ema_decay=None, compare_selections=False), data=data)
    raw = selections["last_unaveraged"]
    assert raw["epoch"] == 4
    assert raw["test_accuracy"] == plain.metrics["test"]["accuracy"]
    assert raw["test_worst_group_accuracy"] == plain.metrics["test"]["worst_group_accuracy"]
    # the rules read the averaged weights: the last epoch's record is the kept (averaged) model's, not the weights'
    last = output.metrics["history"][-1]
    assert selections["last"]["test_accuracy"] == last["test_accuracy"] == output.metrics["test"]["accuracy"]
    assert last["test_raw_accuracy"] == raw["test_accuracy"] != last["test_accuracy"]


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.9", float("nan")])
def test_bad_decays_are_refused_in_one_line(bad):
    with pytest.raises(UserError, match="'ema_decay' must be a number in \\(0, 1\\)"):
        rr.TrainConfig(ema_decay=bad)


def test_the_cli_refuses_a_decay_of_one(tmp_path, capsys):
    assert main(["train", "--data", "toy-colors", "--ema-decay", "1", "--out", str(tmp_path / "run")]) == 2
    assert "ema-decay" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def no_real_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path / "cache"))


def test_bench_averages_and_reports_the_unaveraged_last_epoch(tmp_path, no_real_mnist):
    idx_dir = make_idx_dir(tmp_path / "mnist", n_train=200, n_test=60)[0]
    out = tmp_path / "bench"
    args = ["bench", "--data", "decoy-mnist", "--methods", "rrr", "--seeds", "2", "--epochs", "2", "--threads", "1",
            "--data-option", f"source={idx_dir}", "--compare-selections", "--ema-decay", "0.9", "--no-report",
            "--out", str(out)]
    assert main(args) == 0
    rows = collect_rows(out)
    assert len(rows) == 2
    for row in rows:
        config = json.loads((out / "runs" / row["run"] / "config.json").read_text())
        metrics = json.loads((out / "runs" / row["run"] / "metrics.json").read_text())
        assert config["ema_decay"] == 0.9
        raw = metrics["history"][-1]["test_raw_worst_group_accuracy"]
        assert row["selection_last_unaveraged_test_worst_group_accuracy"] == raw
    summary = (out / "summary.md").read_text()
    header = next(t for t in summary.splitlines() if t.startswith("| method | runs | last epoch"))
    assert header.rstrip(" |").endswith("last epoch, not averaged")
    line = next(t for t in summary.splitlines() if t.startswith("| rrr | 2 |") and "epoch" in t)
    values = [r["selection_last_unaveraged_test_worst_group_accuracy"] for r in rows]
    assert line.split(" | ")[-1].startswith(f"{sum(values) / 2:.3f} ± ")
    assert "--ema-decay 0.9" in json.loads((out / "bench.json").read_text())["command"]
