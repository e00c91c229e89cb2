"""guided_curve and ``rightreasons guided-masks``: the curve's budgets and nested revealed sets on a tiny
dataset, each strategy's choice on hand-built models, the files written, and the refusals."""

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from rightreasons.cli import main
from rightreasons.data.dataset import DataSplits, ExplanationDataset
from rightreasons.errors import UserError
from rightreasons.guided import (
    choose,
    curve_svg,
    guided_curve,
    parse_budgets,
    random_key,
    saliency_concentration,
    smallest_budget,
    uncertainty_scores,
    write_curve,
)
from rightreasons.train.config import TrainConfig


def shortcut_splits(n_train=48, seed=0, side=6, n_val=12, n_test=20, centre=slice(2, 4)):
    """Two classes of 1 x 6 x 6 images: a faint class signal in the middle, a bright class-coding corner pixel
    (the shortcut, masked) in train; in test the corner is random. Every third training example is
    un-annotated (its mask can never be revealed)."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        y = torch.arange(n) % 2
        x = 0.1 * torch.rand((n, 1, side, side), generator=g)
        x[:, 0, centre, centre] += 0.3 * y.view(-1, 1, 1).float()
        corner = y if name == "train" else torch.randint(0, 2, (n,), generator=g)
        x[:, 0, 0, 0] = corner.float()
        mask = torch.zeros((n, 1, side, side), dtype=torch.bool)
        mask[:, 0, 0, 0] = True
        has_mask = torch.arange(n) % 3 != 2 if name == "train" else torch.ones(n, dtype=torch.bool)
        parts.append(ExplanationDataset(x, y, mask, None, has_mask, num_classes=2, name=f"shortcut/{name}"))
    return DataSplits(*parts)


def tiny_config(**changes):
    settings = dict(data="shortcut", model="mlp", model_options={"hidden": [8]}, method="rrr", epochs=2,
                    batch_size=16, threads=1)
    return TrainConfig(**{**settings, **changes})


def test_curve_has_the_budgets_and_nested_revealed_sets(one_thread):
    data = shortcut_splits()
    pool = set(torch.nonzero(data.train.has_mask).flatten().tolist())  # 32 annotated examples
    seen = []
    curve = guided_curve(tiny_config(), budgets=[10, 3, "all", 100], data=data, seeds=[0, 1],
                         on_row=lambda c: seen.append(len(c.rows)))
    assert seen == list(range(1, len(curve.rows) + 1))
    assert len(curve.rows) == 2 * 3 * 5
    for strategy in ("random", "uncertainty", "saliency"):
        for seed in (0, 1):
            rows = [r for r in curve.rows if r["strategy"] == strategy and r["seed"] == seed]
            assert [r["budget"] for r in rows] == [0, 3, 10, 32, 100]
            assert [r["revealed"] for r in rows] == [0, 3, 10, 32, 32]
            sets = curve.revealed[strategy][seed]
            assert [len(sets[b]) for b in (0, 3, 10, 32, 100)] == [0, 3, 10, 32, 32]
            for small, large in ((0, 3), (3, 10), (10, 32), (32, 100)):
                assert set(sets[small]) <= set(sets[large])
            assert set(sets[100]) == pool  # un-annotated examples are never revealed
            for r in rows:
                assert 0 <= r["worst_group_accuracy"] <= r["accuracy"] <= 1 and math.isfinite(r["mask_share"])
    # random takes prefixes of one seeded order over the annotated examples
    key = random_key(0, len(data.train))
    order = [i for i in np.argsort(key, kind="stable").tolist() if i in pool]
    assert curve.revealed["random"][0][10] == sorted(order[:10])
    # budget 0 (no masks) is one model per seed, shared by the strategies; "all" is the same for all of them
    for seed in (0, 1):
        for budget in (0, 32):
            values = {r["worst_group_accuracy"] for r in curve.rows if r["seed"] == seed and r["budget"] == budget}
            assert len(values) == 1


def test_steps_train_from_scratch_so_a_point_depends_only_on_the_revealed_set(one_thread):
    data = shortcut_splits()
    one = guided_curve(tiny_config(), budgets=[5, 12], strategies=["random"], data=data)
    two = guided_curve(tiny_config(), budgets=[12], strategies=["random"], data=data)
    assert one.revealed["random"][0][12] == two.revealed["random"][0][12]
    assert one.rows[-1]["worst_group_accuracy"] == two.rows[-1]["worst_group_accuracy"]
    assert one.rows[-1]["accuracy"] == two.rows[-1]["accuracy"]
    balanced = guided_curve(tiny_config(), budgets=[4, 10], strategies=["random"], data=data, balance=True)
    assert [r["strategy"] for r in balanced.rows] == ["random+balance"] * 3
    y = data.train.y
    for budget, per_class in ((4, 2), (10, 5)):
        idx = torch.tensor(balanced.revealed["random+balance"][0][budget])
        assert [int((y[idx] == c).sum()) for c in (0, 1)] == [per_class, per_class]


class Margins(nn.Module):
    """logits (x_0, -x_0) of the flattened input: the margin grows with |x_0|."""

    def forward(self, x):
        v = x.flatten(1)[:, :1]
        return torch.cat([v, -v], dim=1)


class Squares(nn.Module):
    """logits (sum x^2, 0): the input gradient of log p_0 + log p_1 is (1 - 2 p_0) * 2x, proportional to x."""

    def forward(self, x):
        s = x.flatten(1).pow(2).sum(1, keepdim=True)
        return torch.cat([s, torch.zeros_like(s)], dim=1)


def hand_dataset(x):
    return ExplanationDataset(x, torch.zeros(len(x), dtype=torch.long), num_classes=2)


def test_uncertainty_picks_the_smallest_margin():
    x = torch.zeros(5, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([2.0, -1.5, 0.1, 3.0, -0.4])
    data = hand_dataset(x)
    scores = uncertainty_scores(Margins(), x)
    p = torch.sigmoid(2 * x[:, 0, 0, 0].abs())
    assert torch.allclose(scores, p - (1 - p), atol=1e-6)
    everyone = torch.arange(5)
    assert choose("uncertainty", Margins(), data, everyone, 1).tolist() == [2]
    assert choose("uncertainty", Margins(), data, everyone, 3).tolist() == [2, 4, 1]
    assert choose("uncertainty", Margins(), data, torch.tensor([0, 1, 3]), 1).tolist() == [1]  # candidates only


def test_saliency_picks_the_example_whose_gradient_is_concentrated():
    x = torch.full((4, 1, 5, 4), 0.5)  # D = 20 pixels; top_fraction 0.1 -> the top 2
    x[1] = 0.01
    x[1, 0, 3, 2] = 1.0  # one bright pixel: |grad| concentrated there
    x[2, 0, :, :2] = 0.9  # half the image
    x[3] = torch.linspace(0.05, 1.0, 20).view(1, 5, 4)
    data = hand_dataset(x)
    score = saliency_concentration(Squares(), x, top_fraction=0.1)
    a = x.flatten(1).abs()
    expected = a.topk(2, dim=1).values.sum(1) / a.sum(1)  # |grad| is proportional to |x| per example
    assert torch.allclose(score, expected, atol=1e-5)
    assert choose("saliency", Squares(), data, torch.arange(4), 1, top_fraction=0.1).tolist() == [1]
    assert choose("saliency", Squares(), data, torch.tensor([0, 2, 3]), 1, top_fraction=0.1).tolist() == [3]
    # channels are summed to pixels (the top 2 of 20 pixels, not the top 6 of 60 values)
    rgb = torch.cat([x, torch.zeros_like(x), torch.zeros_like(x)], dim=1)
    assert torch.allclose(saliency_concentration(Squares(), rgb, top_fraction=0.1), score, atol=1e-5)
    assert saliency_concentration(Squares(), torch.zeros(1, 1, 2, 2)).tolist() == [0.0]  # zero gradient


def test_random_takes_the_smallest_keys_and_balance_spreads_over_classes():
    x = torch.zeros(8, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([0.1, 0.2, 0.3, 0.4, 3.0, 3.1, 3.2, 3.3])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    data = ExplanationDataset(x, y, num_classes=2)
    key = np.array([0.5, 0.1, 0.9, 0.3, 0.2, 0.8, 0.05, 0.7])
    assert choose("random", None, data, torch.arange(8), 3, random_key=key).tolist() == [6, 1, 4]
    assert choose("uncertainty", Margins(), data, torch.arange(8), 4).tolist() == [0, 1, 2, 3]
    assert choose("uncertainty", Margins(), data, torch.arange(8), 4, balance=True).tolist() == [0, 4, 1, 5]


def test_smallest_budget_and_the_picture():
    rows = [{"strategy": s, "seed": seed, "budget": b, "worst_group_accuracy": v}
            for s, values in (("random", (0.2, 0.5, 0.85, 0.95)), ("saliency", (0.2, 0.91, 0.93, 0.97)))
            for seed in (0, 1) for b, v in zip((0, 10, 100, 1000), values)]
    rows[2]["worst_group_accuracy"] = 0.96  # random seed 0 at 100: the mean over seeds (0.905) reaches 0.9
    assert smallest_budget(rows, 0.9) == {"random": 100, "saliency": 10}
    assert smallest_budget(rows, 0.99) == {"random": None, "saliency": None}
    svg = curve_svg(rows, 0.9)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and ">random<" in svg and ">1000<" in svg


def test_refusals():
    with pytest.raises(UserError, match="positive whole numbers or 'all'"):
        parse_budgets([10, 0])
    with pytest.raises(UserError, match="at least one budget"):
        parse_budgets([])
    assert parse_budgets(["all", 30, 10, 30]) == [10, 30, "all"]
    data = shortcut_splits()
    with pytest.raises(UserError, match="unknown strategy 'oracle'"):
        guided_curve(tiny_config(), [3], ["oracle"], data=data)
    with pytest.raises(UserError, match="method 'erm' does not read masks"):
        guided_curve(tiny_config(method="erm"), [3], data=data)
    bare = DataSplits(*(ExplanationDataset(s.x, s.y, num_classes=2) for s in (data.train, data.val, data.test)))
    bare.train.has_mask[:] = False
    with pytest.raises(UserError, match="no annotated training example"):
        guided_curve(tiny_config(), [3], data=bare)


def test_command_writes_the_curve_and_reports_the_budgets(tmp_path, capsys, one_thread):
    out = tmp_path / "curve"
    args = ["guided-masks", "--data", "toy-colors", "--data-option", "n_train=60", "--data-option", "n_val=10",
            "--data-option", "n_test=20", "--epochs", "1", "--budgets", "5,all", "--strategy", "random,saliency",
            "--threads", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "random: worst-group 0.9 at" in printed and "saliency: worst-group 0.9 at" in printed
    with open(out / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["strategy"], r["budget"], r["revealed"]) for r in rows] == [
        ("random", "0", "0"), ("random", "5", "5"), ("random", "60", "60"),
        ("saliency", "0", "0"), ("saliency", "5", "5"), ("saliency", "60", "60")]
    assert (out / "curve.svg").read_text().startswith("<svg") and (out / "revealed.json").exists()
    assert main(args) == 2  # an existing curve is not overwritten
    assert "already holds curve.csv" in capsys.readouterr().err
    assert main(args[:-3] + ["--budgets", "5,x", "--out", str(tmp_path / "other")]) == 2
    assert "--budgets: expected comma-separated" in capsys.readouterr().err


def test_write_curve_files(tmp_path):
    data = shortcut_splits()
    curve = guided_curve(tiny_config(), [4], ["random"], data=data)
    paths = write_curve(tmp_path, curve)
    assert [p.name for p in paths] == ["curve.csv", "curve.svg", "revealed.json"]
    header = paths[0].read_text().splitlines()[0]
    assert header == ("strategy,seed,budget,revealed,accuracy,worst_group_accuracy,mean_group_accuracy,mask_share,"
                      "train_seconds")
