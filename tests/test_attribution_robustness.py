"""Attribution robustness: Kendall tau-b and top-k intersection against slow references, and the attack."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import shortcut_splits, tiny_cnn, trained_tiny_mlp
from rightreasons.data import ExplanationDataset
from rightreasons.errors import UserError
from rightreasons.metrics.attribution_robustness import attribution_robustness, kendall_tau, topk_intersection


def slow_kendall(a, b):
    """Pair counting straight from the definition of tau-b."""
    concordant = discordant = tied_a = tied_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0:
            tied_a += 1
        if db == 0:
            tied_b += 1
        if da * db > 0:
            concordant += 1
        elif da * db < 0:
            discordant += 1
    pairs = len(a) * (len(a) - 1) // 2
    denominator = math.sqrt((pairs - tied_a) * (pairs - tied_b))
    return (concordant - discordant) / denominator if denominator else math.nan


def slow_topk(a, b, k):
    order = lambda v: sorted(range(len(v)), key=lambda i: (-v[i], i))[:k]  # noqa: E731
    return len(set(order(a)) & set(order(b))) / k


def test_kendall_known_cases():
    a = torch.tensor([0.1, 0.5, 0.3, 2.0, -1.0])
    assert kendall_tau(a, a).item() == 1.0
    assert kendall_tau(a, -a).item() == -1.0
    assert kendall_tau(a, a.exp()).item() == 1.0  # rank based: monotone maps do not matter
    assert math.isnan(kendall_tau(a, torch.ones(5)).item())
    # one swapped adjacent pair out of 10: (9 - 1) / 10
    assert kendall_tau(torch.tensor([1.0, 2, 3, 4, 5]), torch.tensor([2.0, 1, 3, 4, 5])).item() == pytest.approx(0.8)
    # scipy.stats.kendalltau([1, 2, 3, 4], [1, 1, 2, 3]) = 5 / sqrt(6 * 5)
    assert (kendall_tau(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 1, 2, 3])).item()
            == pytest.approx(5 / math.sqrt(30)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(-2, 2)), min_size=2, max_size=40))
def test_kendall_matches_pair_counting_with_ties(pairs):
    a = [float(p[0]) for p in pairs]
    b = [float(p[1]) for p in pairs]
    got = kendall_tau(torch.tensor(a), torch.tensor(b)).item()
    want = slow_kendall(a, b)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12)


def test_kendall_batched_rows_and_continuous_values():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(7, 60, generator=g, dtype=torch.float64)
    b = a + 0.3 * torch.rand(7, 60, generator=g, dtype=torch.float64)
    b[2] = a[2].round(decimals=1)  # heavy ties in one row
    got = kendall_tau(a, b)
    assert got.shape == (7,)
    for row in range(7):
        assert got[row].item() == pytest.approx(slow_kendall(a[row].tolist(), b[row].tolist()), abs=1e-12)


def test_kendall_scipy_agreement_if_available():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 6, (200,), generator=g).double()
    b = a + torch.randint(0, 4, (200,), generator=g).double()
    assert kendall_tau(a, b).item() == pytest.approx(stats.kendalltau(a.numpy(), b.numpy())[0], abs=1e-12)


def test_topk_known_cases_and_slow_reference():
    a = torch.tensor([5.0, 4, 3, 2, 1])
    assert topk_intersection(a, a, 2).item() == 1.0
    assert topk_intersection(a, -a, 2).item() == 0.0
    assert topk_intersection(a, torch.tensor([5.0, 0, 3, 2, 1]), 2).item() == 0.5
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (6, 30), generator=g).double()  # ties: broken by lower index first
    y = torch.randint(0, 4, (6, 30), generator=g).double()
    got = topk_intersection(x, y, 7)
    for row in range(6):
        assert got[row].item() == pytest.approx(slow_topk(x[row].tolist(), y[row].tolist(), 7))
    with pytest.raises(UserError, match="k must be"):
        topk_intersection(a, a, 6)
    with pytest.raises(UserError, match="same shape"):
        kendall_tau(a, a[:3])


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    splits = shortcut_splits(n_train=300, n_eval=60)
    return splits, trained_tiny_mlp(splits)


def test_no_attack_means_perfect_agreement(setup):
    splits, model = setup
    out = attribution_robustness(model, splits.val, attack_eps=0.0, attack_steps=3, k=5, ig_steps=8)
    assert out["topk_intersection"] == 1.0 and out["kendall"] == 1.0
    with torch.no_grad():
        correct = int((model(splits.val.x).argmax(1) == splits.val.y).sum())
    assert out["evaluated"] == correct and out["misclassified"] == len(splits.val) - correct


@pytest.mark.parametrize("attribution", ["ig", "gradient"])
@pytest.mark.parametrize("criterion", ["kendall", "topk"])
def test_attack_changes_attributions(setup, attribution, criterion):
    splits, model = setup
    model.train()
    out = attribution_robustness(model, splits.val, attack_eps=0.3, attack_steps=10, k=5, step_size=0.05,
                                 attribution=attribution, ig_steps=8, criterion=criterion, max_examples=30)
    assert model.training and all(m.training for m in model.modules())  # mode restored
    assert 0 <= out["topk_intersection"] < 1 and -1 <= out["kendall"] < 1
    assert out["evaluated"] + out["misclassified"] == 30


def test_stronger_attack_does_no_better(setup):
    splits, model = setup
    kwargs = dict(k=5, step_size=0.02, ig_steps=8, max_examples=30, criterion="kendall")
    weak = attribution_robustness(model, splits.val, attack_eps=0.02, attack_steps=5, **kwargs)
    strong = attribution_robustness(model, splits.val, attack_eps=0.3, attack_steps=20, **kwargs)
    assert strong["kendall"] < weak["kendall"]


def test_cnn_and_mask_region(setup):
    splits, _ = setup
    model = tiny_cnn(classes=2)
    out = attribution_robustness(model, splits.val, attack_eps=0.3, attack_steps=3, k=4, ig_steps=4,
                                 region="mask", max_examples=20)
    assert out["no_mask"] == 0 and out["evaluated"] + out["misclassified"] == 20


def test_empty_masks_give_nan_and_a_warning(setup):
    splits, model = setup
    val = splits.val
    bare = ExplanationDataset(val.x, val.y, num_classes=2)  # no annotations at all
    with pytest.warns(RuntimeWarning, match="no non-empty mask"):
        out = attribution_robustness(model, bare, attack_eps=0.3, attack_steps=2, k=5, region="mask", ig_steps=4)
    assert math.isnan(out["topk_intersection"]) and math.isnan(out["kendall"]) and out["evaluated"] == 0


def test_no_correct_prediction_gives_nan_and_a_warning(setup):
    splits, model = setup
    with torch.no_grad():
        wrong = 1 - model(splits.val.x).argmax(1)
    data = ExplanationDataset(splits.val.x, wrong, num_classes=2)
    with pytest.warns(RuntimeWarning, match="no correctly classified"):
        out = attribution_robustness(model, data, attack_eps=0.3, attack_steps=2, k=5, ig_steps=4)
    assert math.isnan(out["kendall"]) and out["misclassified"] == len(data)


def test_bad_arguments(setup):
    splits, model = setup
    with pytest.raises(UserError, match="k must be"):
        attribution_robustness(model, splits.val, k=37)
    with pytest.raises(UserError, match="attribution"):
        attribution_robustness(model, splits.val, k=5, attribution="lrp")
    with pytest.raises(UserError, match="attack_steps"):
        attribution_robustness(model, splits.val, k=5, attack_steps=-1)
