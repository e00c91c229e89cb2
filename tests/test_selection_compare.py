"""Comparing checkpoint-selection rules in one run (``compare_selections``): the epoch each rule keeps is the
one an obvious re-implementation picks, recording the comparison changes nothing about training, the test
scores reported for a rule are those of the model that rule keeps, and bench shows the comparison."""

import json
import math
import random

import pytest
import torch

import rightreasons as rr
from data_fixtures import make_idx_dir
from rightreasons.bench.results import collect_rows
from rightreasons.cli import main
from rightreasons.data.dataset import DataSplits, ExplanationDataset
from rightreasons.errors import UserError
from rightreasons.report.summary import render_markdown, summarize
from rightreasons.train.config import SELECTIONS
from rightreasons.train.run import run_training
from rightreasons.train.selection import chosen_epoch, selection_outcomes


@pytest.fixture(autouse=True)
def no_real_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path / "cache"))


def _reference_epoch(history, key):
    """Slow and obvious: the largest non-NaN value, and among equals the earliest epoch."""
    values = [(r[key], r["epoch"]) for r in history if key in r and not math.isnan(r[key])]
    if not values:
        return None
    best = max(v for v, _ in values)
    return min(e for v, e in values if v == best)


def test_the_chosen_epoch_matches_an_obvious_reference_with_ties_and_nan():
    rng = random.Random(0)
    for trial in range(300):
        n = rng.randint(1, 8)
        history = []
        for epoch in range(1, n + 1):
            record = {"epoch": epoch}
            for key in SELECTIONS[1:]:
                if rng.random() < 0.9:  # now and then an epoch without the score
                    record[key] = rng.choice([0.5, 0.75, 1.0, float("nan"), rng.random()])
            history.append(record)
        assert chosen_epoch(history, "last") == n
        for key in SELECTIONS[1:]:
            assert chosen_epoch(history, key) == _reference_epoch(history, key), (trial, key, history)
    assert chosen_epoch([], "val_accuracy") is None


def _splits(n=60, seed=0):
    """Images whose label is written in a masked corner (the shortcut) and, more faintly, elsewhere."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, 6, 6, generator=g) * 0.5
    x[:, 0, 3:, 3:] += 0.15 * y.view(-1, 1, 1)
    mask = torch.zeros(n, 1, 6, 6, dtype=torch.bool)
    mask[:, :, :2, :2] = True
    x[:, 0, :2, :2] = y.view(-1, 1, 1) / 2
    data = ExplanationDataset(x, y, mask, name="toy")
    return DataSplits(data, ExplanationDataset(x[:30].clone(), y[:30], mask[:30], name="toy-val"),
                      ExplanationDataset(x[30:].clone(), y[30:], mask[30:], name="toy-test"))


def _run(select="last", compare=True, seed=0):
    config = rr.TrainConfig(data="toy", model="mlp", model_options={"hidden": [8]}, method="erm", epochs=5,
                            batch_size=12, seed=seed, select=select, compare_selections=compare, threads=1)
    torch.manual_seed(0)
    return run_training(config, data=_splits())


def test_recording_the_comparison_changes_nothing_about_training():
    plain, compared = _run(compare=False), _run(compare=True)
    for a, b in zip(plain.model.state_dict().values(), compared.model.state_dict().values()):
        assert torch.equal(a, b)
    added = {"test_accuracy", "test_worst_group_accuracy", "val_broken_accuracy", "val_broken_worst_group_accuracy"}
    for before, after in zip(plain.metrics["history"], compared.metrics["history"]):
        assert not added & set(before) and added <= set(after)
        assert {k: v for k, v in after.items() if k not in added and k != "seconds"} == \
               {k: v for k, v in before.items() if k != "seconds"}
    assert "selections" not in plain.metrics
    assert set(compared.metrics["selections"]) == set(SELECTIONS)


@pytest.mark.parametrize("select", SELECTIONS)
def test_a_rules_test_scores_are_those_of_the_model_it_keeps(select):
    out = _run(select=select)
    outcome = out.metrics["selections"][select]
    assert outcome["epoch"] == out.metrics["selected_epoch"]
    test = out.metrics["test"]
    assert outcome["test_worst_group_accuracy"] == test["worst_group_accuracy"]
    assert outcome["test_accuracy"] == test["accuracy"]
    # the trajectory does not depend on the rule, so every run reports the same comparison
    assert out.metrics["selections"] == _run(select="last").metrics["selections"]


def test_the_comparison_reads_the_history_as_the_rules_do():
    out = _run()
    history, outcomes = out.metrics["history"], out.metrics["selections"]
    assert outcomes == selection_outcomes(history)
    for rule in SELECTIONS[1:]:
        record = history[outcomes[rule]["epoch"] - 1]
        assert outcomes[rule]["score"] == record[rule] == max(r[rule] for r in history)


@pytest.mark.filterwarnings("ignore:mask_gradient_share")
def test_without_validation_masks_only_the_plain_rules_are_compared():
    splits = _splits()
    for split in (splits.train, splits.val, splits.test):
        split.mask.zero_()
    config = rr.TrainConfig(data="toy", model="mlp", model_options={"hidden": [8]}, method="erm", epochs=2,
                            batch_size=12, compare_selections=True, threads=1)
    out = run_training(config, data=splits)
    assert set(out.metrics["selections"]) == {"last", "val_accuracy", "val_worst_group_accuracy"}


def test_the_comparison_needs_validation_and_test_and_a_bool():
    splits = _splits()
    empty = DataSplits(splits.train, splits.val, ExplanationDataset(splits.test.x[:0], splits.test.y[:0]))
    model = rr.create_model("mlp", splits.train.input_shape, 3, hidden=[8])
    with pytest.raises(UserError, match="compare_selections needs a validation split and a test split"):
        rr.fit(model, rr.create_method("erm"), empty, rr.TrainConfig(epochs=1, compare_selections=True))
    with pytest.raises(UserError, match="compare_selections needs"):
        rr.fit(model, rr.create_method("erm"), splits.train, rr.TrainConfig(epochs=1, compare_selections=True))
    with pytest.raises(UserError, match="'compare_selections' must be true or false"):
        rr.TrainConfig(compare_selections="yes")


def test_bench_reports_every_rule_per_run_and_in_the_summary(tmp_path):
    idx_dir = make_idx_dir(tmp_path / "mnist", n_train=200, n_test=60)[0]
    out = tmp_path / "bench"
    args = ["bench", "--data", "decoy-mnist", "--methods", "rrr", "--seeds", "2", "--epochs", "2", "--threads", "1",
            "--data-option", f"source={idx_dir}", "--compare-selections", "--no-report", "--out", str(out)]
    assert main(args) == 0
    rows = collect_rows(out)
    assert len(rows) == 2
    for row in rows:
        metrics = json.loads((out / "runs" / row["run"] / "metrics.json").read_text())
        for rule, outcome in metrics["selections"].items():
            assert row[f"selection_{rule}_test_worst_group_accuracy"] == outcome["test_worst_group_accuracy"]
            assert row[f"selection_{rule}_epoch"] == outcome["epoch"]
        assert row["selection_last_test_worst_group_accuracy"] == row["test_worst_group_accuracy"]
    summary = (out / "summary.md").read_text()
    assert "Checkpoint selection" in summary
    line = next(t for t in summary.splitlines() if t.startswith("| rrr | 2 |") and "epoch" in t)
    values = [r["selection_val_broken_worst_group_accuracy_test_worst_group_accuracy"] for r in rows]
    mean, low = sum(values) / 2, min(values)
    std = (sum((v - mean) ** 2 for v in values)) ** 0.5  # n - 1 = 1
    epochs = sum(r["selection_val_broken_worst_group_accuracy_epoch"] for r in rows) / 2
    assert line.split(" | ")[-1].rstrip(" |") == f"{mean:.3f} ± {std:.3f} ({low:.3f}; epoch {epochs:.1f})"
    # the plan's command names the switch (so the bench can be rerun as it was)
    assert "--compare-selections" in json.loads((out / "bench.json").read_text())["command"]


def test_a_summary_without_the_comparison_has_no_selection_table():
    rows = [{"dataset": "d", "method": "erm", "seed": 0, "test_worst_group_accuracy": 0.5}]
    assert "Checkpoint selection" not in render_markdown(summarize(rows))


def test_the_train_command_compares_the_rules_and_its_config_trains_again(tmp_path, capsys):
    idx_dir = make_idx_dir(tmp_path / "mnist", n_train=200, n_test=60)[0]
    out = tmp_path / "run"
    args = ["train", "--data", "decoy-mnist", "--method", "rrr", "--epochs", "2", "--threads", "1", "--quiet",
            "--data-option", f"source={idx_dir}", "--compare-selections", "--select", "val_accuracy", "--out", str(out)]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["compare_selections"] is True and config["select"] == "val_accuracy"
    assert set(metrics["selections"]) == set(SELECTIONS)
    assert metrics["selections"]["val_accuracy"]["test_worst_group_accuracy"] == metrics["test"]["worst_group_accuracy"]
    capsys.readouterr()
    # the saved config trains again as it was (the field round-trips through --config)
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.json"), "--quiet", "--out", str(again)]) == 0
    assert json.loads((again / "metrics.json").read_text())["selections"] == metrics["selections"]
