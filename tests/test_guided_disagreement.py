"""The ``disagreement`` strategy of the guided loop: the committee's mean pairwise total-variation score against
a slow reference and hand-computed values, its ranking, the committee's training masks, an end-to-end curve
that never reads the masks of examples it has not revealed, and the ``--committee`` refusal."""

import math

import pytest
import torch
from torch import nn

import rightreasons.guided.steps as steps
import test_guided as guided_tests
from rightreasons.cli import main
from rightreasons.data.dataset import ExplanationDataset
from rightreasons.errors import UserError
from rightreasons.find_another.core import top_gradient_masks
from rightreasons.guided import choose, disagreement_scores, guided_curve, train_committee


def reference_scores(models, x):
    """Mean over pairs a < b of 0.5 * sum_k |p_a(k) - p_b(k)|, in Python floats (float64), one example at a
    time, every model in eval mode."""
    logits = []
    for model in models:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits.append(model(x).tolist())
        model.train(was_training)
    out = []
    for n in range(len(x)):
        probs = []
        for rows in logits:
            z = rows[n]
            top = max(z)
            e = [math.exp(v - top) for v in z]
            probs.append([v / sum(e) for v in e])
        pairs = []
        for a in range(len(probs)):
            for b in range(a + 1, len(probs)):
                pairs.append(0.5 * sum(abs(probs[a][k] - probs[b][k]) for k in range(len(probs[a]))))
        out.append(sum(pairs) / len(pairs))
    return out


def test_pairwise_total_variation_matches_a_slow_reference(one_thread):
    torch.manual_seed(0)
    models = [nn.Linear(4, 5), nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5)),
              nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5))]  # left in train mode: scoring must use eval mode
    for model in models:
        for p in model.parameters():
            p.data.mul_(3.0)  # logits spread enough that the softmax outputs differ visibly
    x = torch.randn(9, 4)
    expected = reference_scores(models, x)
    score = disagreement_scores(models, x, batch_size=4)  # several batches
    assert score.dtype == torch.float64 and score.shape == (9,)
    assert score.tolist() == pytest.approx(expected, abs=1e-6)  # float32 logits, batched
    assert max(expected) - min(expected) > 0.05  # the values are not all alike
    assert models[2].training  # the mode is restored
    assert disagreement_scores(models[:2], x).tolist() == pytest.approx(reference_scores(models[:2], x), abs=1e-6)
    with pytest.raises(UserError, match="at least 2 models"):
        disagreement_scores(models[:1], x)


class Permuted(nn.Module):
    """The logits are the input with the classes permuted: output k is input ``perm[k]``."""

    def __init__(self, perm):
        super().__init__()
        self.perm = list(perm)

    def forward(self, x):
        return x[:, self.perm]


def logits_of(probabilities):
    return torch.tensor(probabilities).log()


# softmax(log p) = p; with the classes permuted cyclically, q = (p1, p2, p0)
PROBS = [[0.5, 0.25, 0.25], [0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
# 0.5 * (|0.5-0.25| + |0.25-0.25| + |0.25-0.5|), 0.5 * (0.5 + 0.1 + 0.6), 0, (the same), 0.5 * (0.2 + 0.3 + 0.5)
TV = [0.25, 0.6, 0.0, 0.6, 0.5]


def test_identical_members_agree_and_permuted_classes_give_known_distances():
    x = logits_of(PROBS)
    same = disagreement_scores([nn.Identity(), nn.Identity()], x)
    assert same.tolist() == [0.0] * 5
    cyclic = Permuted([1, 2, 0])
    assert disagreement_scores([nn.Identity(), cyclic], x).tolist() == pytest.approx(TV, abs=1e-6)
    # three members: the pairs (id, id) = 0, (id, cyclic) = TV, (id, cyclic) = TV -> 2 TV / 3
    three = disagreement_scores([nn.Identity(), nn.Identity(), cyclic], x)
    assert three.tolist() == pytest.approx([2 * t / 3 for t in TV], abs=1e-6)
    # a swap of classes 0 and 1 on the first row: 0.5 * (0.25 + 0.25 + 0) = 0.25; on the uniform row 0
    swapped = disagreement_scores([nn.Identity(), Permuted([1, 0, 2])], x)
    assert swapped[[0, 2]].tolist() == pytest.approx([0.25, 0.0], abs=1e-6)


def test_choose_disagreement_ranks_by_the_score_with_ties_to_the_lower_index():
    x = logits_of(PROBS)
    data = ExplanationDataset(x, torch.tensor([0, 1, 0, 1, 0]), num_classes=3)
    committee = [Permuted([1, 2, 0])]
    everyone = torch.arange(5)
    # scores (0.25, 0.6, 0, 0.6, 0.5): examples 1 and 3 tie exactly (same input)
    assert choose("disagreement", nn.Identity(), data, everyone, 5, committee_models=committee).tolist() == [
        1, 3, 4, 0, 2]
    assert choose("disagreement", nn.Identity(), data, everyone, 2, committee_models=committee).tolist() == [1, 3]
    assert choose("disagreement", nn.Identity(), data, torch.tensor([0, 2, 3]), 1,
                  committee_models=committee).tolist() == [3]  # candidates only
    # balance: class 0 = (4, 0, 2) by score, class 1 = (1, 3); rounds {1, 4}, {3, 0}, {2}, each by score
    assert choose("disagreement", nn.Identity(), data, everyone, 5, balance=True,
                  committee_models=committee).tolist() == [1, 4, 3, 0, 2]
    with pytest.raises(UserError, match="needs committee_models"):
        choose("disagreement", nn.Identity(), data, everyone, 2)


def shortcut_splits(n_train=36, seed=0):
    """test_guided's data at 1 x 5 x 5 (the class signal in the centre pixel), 10 validation and 16 test images."""
    return guided_tests.shortcut_splits(n_train, seed, side=5, n_val=10, n_test=16, centre=slice(2, 3))


def tiny_config(**changes):
    return guided_tests.tiny_config(**{"batch_size": 12, **changes})


def test_committee_models_train_on_the_revealed_masks_or_the_previous_models_top_gradients(one_thread,
                                                                                           monkeypatch):
    data = shortcut_splits()
    train = data.train
    trained_on = []
    real_fit = steps.fit

    def recording_fit(model, method, splits, config, **kwargs):
        trained_on.append((splits.train.mask.clone(), splits.train.has_mask.clone(), config.seed))
        return real_fit(model, method, splits, config, **kwargs)

    monkeypatch.setattr(steps, "fit", recording_fit)
    revealed = torch.zeros(len(train), dtype=torch.bool)
    revealed[[0, 1, 2, 4]] = True  # example 2 is un-annotated: its mask stays hidden
    torch.manual_seed(1)
    model0 = nn.Sequential(nn.Flatten(), nn.Linear(25, 6), nn.ReLU(), nn.Linear(6, 2))
    members = train_committee(tiny_config(seed=3), data, revealed, model0, 2)
    assert [m.index for m in members] == [1, 2] and len(trained_on) == 2
    shown = revealed & train.has_mask
    true_masks = train.mask & shown.view(-1, 1, 1, 1)
    assert int(true_masks.sum()) == 3
    expected1 = true_masks | top_gradient_masks(model0, train.x, 0.67, "log_prob_sum")
    expected2 = expected1 | top_gradient_masks(members[0].model, train.x, 0.67, "log_prob_sum")
    assert not torch.equal(expected1, true_masks) and not torch.equal(expected2, expected1)
    for (mask, has_mask, seed), expected, member in zip(trained_on, (expected1, expected2), members):
        assert torch.equal(mask, expected) and torch.equal(member.train_mask, expected)
        assert bool(has_mask.all()) and seed == 3
        assert 0 <= member.metrics["worst_group_accuracy"] <= member.metrics["accuracy"] <= 1


def test_curve_with_disagreement_never_reads_unrevealed_masks(one_thread):
    data = shortcut_splits()
    pool = set(torch.nonzero(data.train.has_mask).flatten().tolist())
    lines = []
    curve = guided_curve(tiny_config(), budgets=[4, 9], strategies=["disagreement"], data=data, committee=1,
                         log=lines.append)
    rows = curve.rows
    assert [(r["strategy"], r["budget"], r["revealed"]) for r in rows] == [
        ("disagreement", 0, 0), ("disagreement", 4, 4), ("disagreement", 9, 9)]
    sets = curve.revealed["disagreement"][0]
    assert set(sets[0]) <= set(sets[4]) <= set(sets[9]) <= pool and len(sets[9]) == 9
    # one committee model per step that chooses, logged with its test worst-group accuracy
    committee_lines = [line for line in lines if "committee" in line and "worst-group" in line]
    assert len(committee_lines) == 2
    assert "committee for budget 4, model 1/1: worst-group" in committee_lines[0]
    assert "committee for budget 9, model 1/1: worst-group" in committee_lines[1]

    # the masks of the examples never revealed up to the last budget, all ones or all zeros: the same choices
    hidden = torch.ones(len(data.train), dtype=torch.bool)
    hidden[sets[9]] = False
    chosen = []
    for value in (True, False):
        changed = shortcut_splits()
        changed.train.mask[hidden] = value
        other = guided_curve(tiny_config(), budgets=[4, 9], strategies=["disagreement"], data=changed, committee=1)
        chosen.append(other.revealed["disagreement"][0])
    assert chosen[0][4] == chosen[1][4] == sets[4]
    assert chosen[0][9] == chosen[1][9] == sets[9]

    balanced = guided_curve(tiny_config(), budgets=[4], strategies=["disagreement"], data=data, balance=True)
    idx = torch.tensor(balanced.revealed["disagreement+balance"][0][4])
    assert [int((data.train.y[idx] == c).sum()) for c in (0, 1)] == [2, 2]
    for bad in (0, True, 1.5):
        with pytest.raises(UserError, match="committee must be an integer >= 1"):
            guided_curve(tiny_config(), [4], ["disagreement"], data=data, committee=bad)


def test_command_refuses_a_committee_below_one(tmp_path, capsys):
    for value in ("0", "-1", "two"):
        out = tmp_path / f"curve-{value}"
        assert main(["guided-masks", "--data", "toy-colors", "--strategy", "disagreement", "--committee", value,
                     "--threads", "1", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: --committee: expected a whole number >= 1")
        assert not out.exists()


def test_command_passes_the_committee_size_on(tmp_path, capsys, one_thread):
    out = tmp_path / "curve"
    assert main(["guided-masks", "--data", "toy-colors", "--data-option", "n_train=40", "--data-option", "n_val=10",
                 "--data-option", "n_test=20", "--epochs", "1", "--budgets", "5", "--strategy", "disagreement",
                 "--committee", "2", "--threads", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "disagreement: worst-group 0.9 at" in captured.out
    assert "committee for budget 5, model 2/2: worst-group" in captured.err
    assert "model 3/2" not in captured.err and (out / "curve.csv").exists()
