"""Find-another-explanation (Ross et al. 2017): top-gradient masks, the union of the previous models'
masks, run directories and the rule report; on a small Toy Colors the first model uses the corners and
the second is pushed off them."""

import json

import pytest
import torch
from torch import nn

from helpers import shortcut_splits
from rightreasons.cli import main
from rightreasons.data import DataSplits, ExplanationDataset, load_dataset
from rightreasons.data.toy_colors import CORNERS, TOP_MIDDLE
from rightreasons.errors import UserError
from rightreasons.find_another import find_another_explanation, rule_report, top_gradient_masks, toy_colors_conflict_set
from rightreasons.find_another.toy_colors_rules import region_mask
from rightreasons.train.config import TrainConfig
from rightreasons.train.run import load_run


def test_top_gradient_masks_follow_the_threshold_rule():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():  # d(sum of logits)/dx = column sums = [1, 0.5, -0.8, 0.1] for every example
        model[1].weight.copy_(torch.tensor([[0.5, 0.5, -0.4, 0.0], [0.5, 0.0, -0.4, 0.1]]))
    x = torch.rand(3, 1, 2, 2)
    masks = top_gradient_masks(model, x, threshold=0.67, target="logit_sum", batch_size=2)
    assert masks.shape == x.shape and masks.dtype == torch.bool
    assert masks.flatten(1).tolist() == [[True, False, True, False]] * 3
    assert (top_gradient_masks(model, x, threshold=0.4, target="logit_sum").flatten(1)[0].tolist()
            == [True, True, True, False])


def _unannotated(data: DataSplits) -> DataSplits:
    def strip(d):
        return ExplanationDataset(d.x, d.y, None, d.group, num_classes=d.num_classes, name=d.name)

    return DataSplits(strip(data.train), strip(data.val), strip(data.test), data.info)


def test_each_model_is_penalised_on_the_union_of_the_previous_models_top_gradients():
    data = _unannotated(shortcut_splits(n_train=200, n_eval=100))
    config = TrainConfig(data="toy-colors", epochs=2, batch_size=50, threads=1)
    models = find_another_explanation(config, data, n_models=3, threshold=0.5)
    assert [m.index for m in models] == [1, 2, 3]
    assert not models[0].train_mask.any()  # nothing to penalise for the first model
    assert torch.equal(models[1].train_mask, models[0].top_mask)  # the second covers the first's top pixels
    assert torch.equal(models[2].train_mask, models[0].top_mask | models[1].top_mask)
    assert (models[0].top_mask.any(1).all() if models[0].top_mask.dim() == 2
            else models[0].top_mask.flatten(1).any(1).all())
    fa = models[1].metrics["find_another"]
    assert fa["index"] == 2 and fa["penalised_fraction"] == pytest.approx(models[0].top_mask.float().mean().item())
    assert models[1].config.method == "rrr" and models[1].config.params["lam"] == 10.0


def test_the_data_masks_are_part_of_the_first_mask_and_the_method_must_read_masks():
    data = shortcut_splits(n_train=100, n_eval=50)  # the corner patch is annotated
    config = TrainConfig(data="toy-colors", epochs=1, batch_size=50, threads=1)
    first = find_another_explanation(config, data, n_models=1)[0]
    assert torch.equal(first.train_mask, data.train.mask)
    with pytest.raises(UserError, match="method 'erm' does not read masks"):
        find_another_explanation(config.replace(method="erm"), data)
    with pytest.raises(UserError, match="n_models"):
        find_another_explanation(config, data, n_models=0)


def test_conflict_set_rules_disagree_independently():
    x, y_corners, y_top = toy_colors_conflict_set(400, seed=3)
    idx = (x * 255).round()
    corners_equal = torch.stack([(idx[:, :, r, c] == idx[:, :, 4, 4]).all(1) for r, c in CORNERS]).all(0)
    tm = [idx[:, :, 0, c] for c in (1, 2, 3)]
    distinct = ~((tm[0] == tm[1]).all(1) | (tm[0] == tm[2]).all(1) | (tm[1] == tm[2]).all(1))
    assert torch.equal(corners_equal, y_corners == 0)
    assert torch.equal(distinct, y_top == 0)
    agree = (y_corners == y_top).float().mean().item()
    assert 0.4 < agree < 0.6


def test_rule_report_recognises_a_hand_made_corner_model():
    class CornerRule(nn.Module):  # class 0 iff the four corners equal (a smooth version)
        def forward(self, x):
            c = torch.stack([x[:, :, r, c] for r, c in CORNERS], 1)
            spread = (c - c.mean(1, keepdim=True)).pow(2).sum((1, 2))
            return torch.stack([-20 * spread, -20 * (0.05 - spread)], 1)

    test = load_dataset("toy-colors", seed=0, annotate="none", n_train=2, n_val=2, n_test=200).test
    report = rule_report(CornerRule(), test, n=400)
    assert report["rule"] == "corners"
    assert report["corners_rule_accuracy"] > 0.95 and report["top_middle_rule_accuracy"] < 0.65
    assert report["corners_gradient_share"] == pytest.approx(1.0) and report["top_middle_gradient_share"] == 0.0
    assert region_mask(TOP_MIDDLE).sum().item() == 9


def test_on_small_toy_colors_the_second_model_leaves_the_corners():
    data = load_dataset("toy-colors", seed=0, annotate="none", n_train=1500, n_val=100, n_test=1000)
    config = TrainConfig(data="toy-colors", epochs=10, batch_size=64, lr=0.01, lr_schedule="constant", threads=1)
    first, second = find_another_explanation(config, data, n_models=2)
    r1, r2 = (rule_report(m.model, data.test, n=1000) for m in (first, second))
    assert r1["rule"] == "corners", r1
    assert r1["corners_gradient_share"] > 0.4 > r1["top_middle_gradient_share"] * 2, r1
    assert r2["corners_gradient_share"] < 0.6 * r1["corners_gradient_share"], (r1, r2)
    assert r2["top_middle_gradient_share"] > 2 * r1["top_middle_gradient_share"], (r1, r2)
    assert r2["corners_rule_accuracy"] < r1["corners_rule_accuracy"] - 0.2, (r1, r2)


def test_cli_writes_run_directories_and_a_rule_report(tmp_path, capsys):
    out = tmp_path / "fa"
    args = ["find-another", "--data", "toy-colors", "--data-option", "annotate=none", "--data-option", "n_train=300",
            "--data-option", "n_val=50", "--data-option", "n_test=100", "--models", "2", "--epochs", "1",
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert "report.json" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert [row["model"] for row in report] == [1, 2]
    assert {"rule", "corners_rule_accuracy", "top_middle_gradient_share", "accuracy"} <= set(report[1])
    for k in (1, 2):
        run = out / f"model-{k}"
        assert {p.name for p in run.iterdir()} >= {"model.safetensors", "config.json", "metrics.json",
                                                   "train_mask.safetensors"}
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["find_another"]["index"] == k and "rules" in metrics["find_another"]
    model, config, _ = load_run(out / "model-2")
    assert config.method == "rrr" and config.data_options["annotate"] == "none"
    assert main(args) == 2  # an existing run is not overwritten
    assert "already holds a run" in capsys.readouterr().err
