"""Candidates unusual for their position and label purity: slow float64 references, a hand-built dataset
where a class-exclusive mark must be chosen over a larger mark that both classes carry, and the command."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from rightreasons.cli import main
from rightreasons.data.dataset import ExplanationDataset
from rightreasons.data.examples import write_patches
from rightreasons.errors import UserError
from rightreasons.mask_proposals import (
    atypicality,
    label_purity,
    propose_masks,
    reference_statistics,
)


def test_reference_statistics_match_numpy_on_an_evenly_spaced_sample():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(23, 2, 3, 4, generator=gen, dtype=torch.float64)
    data = ExplanationDataset(x.float(), torch.zeros(23, dtype=torch.long), name="r")
    median, mad = reference_statistics(data, batch_size=5, limit=8)  # every 3rd example: 0, 3, ..., 21
    sample = x.float().numpy()[::3]
    assert sample.shape[0] == 8
    # torch's median of an even count is the lower middle value
    ref_med = np.sort(sample, 0)[(len(sample) - 1) // 2]
    ref_mad = np.sort(np.abs(sample - ref_med), 0)[(len(sample) - 1) // 2]
    assert np.array_equal(median.numpy(), ref_med) and np.array_equal(mad.numpy(), ref_mad)
    z = atypicality(x[:2].float(), median, mad, floor=0.01)
    for b, i, j in itertools.product(range(2), range(3), range(4)):
        want = np.mean([abs(float(x[b, c, i, j]) - ref_med[c, i, j]) / (ref_mad[c, i, j] + 0.01) for c in range(2)])
        assert abs(float(z[b, i, j]) - want) < 1e-5
    with pytest.raises(UserError, match="reference"):
        atypicality(torch.zeros(1, 2, 4, 3), median, mad)


def _purity_reference(desc, labels, owners, k):
    out = []
    for i in range(len(desc)):
        others = [(float(np.linalg.norm(desc[i] - desc[j])), j) for j in range(len(desc)) if owners[j] != owners[i]]
        others.sort()  # ties: the earlier candidate first
        near = others[:k]
        out.append(sum(labels[j] == labels[i] for _, j in near) / len(near) if near else 0.0)
    return out


def test_label_purity_matches_a_brute_force_loop_with_ties_and_shared_owners():
    rng = np.random.default_rng(0)
    for trial in range(30):
        m = int(rng.integers(1, 14))
        desc = rng.integers(0, 3, (m, 2)).astype(np.float64)  # small integers: many equal distances
        labels = rng.integers(0, 2, m)
        owners = rng.integers(0, 5, m)
        k = int(rng.integers(1, 6))
        got = label_purity(torch.tensor(desc), torch.tensor(labels), torch.tensor(owners), k)
        assert got.dtype == torch.float64
        assert got.tolist() == pytest.approx(_purity_reference(desc, labels, owners, k), abs=1e-12), trial
    assert label_purity(torch.zeros(0, 3), torch.zeros(0), torch.zeros(0), 3).numel() == 0


def marked_images(n=40, size=12):
    """Grey images, 0.5 everywhere with mild noise. Class 0: a 2x2 mark of 1.0 in a corner (chosen at random).
    Every third image of either class: a 3x3 mark of 0.0 at the centre. So the centre mark is larger and as
    unusual, but both classes carry it; only the corner mark tells the class."""
    gen = torch.Generator().manual_seed(2)
    x = 0.5 + 0.01 * torch.randn(n, 1, size, size, generator=gen)
    y = torch.arange(n) % 2
    corner, centre = torch.zeros(n, size, size, dtype=torch.bool), torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        if y[i] == 0:
            corners = [(0, 0), (0, size - 2), (size - 2, 0), (size - 2, size - 2)]
            r, c = corners[int(torch.randint(4, (1,), generator=gen))]
            corner[i, r:r + 2, c:c + 2] = True
        if i % 3 == 0:
            centre[i, 5:8, 5:8] = True
    x[corner[:, None]] = 1.0
    x[centre[:, None]] = 0.0
    return ExplanationDataset(x, y, name="marks"), corner, centre


def test_purity_picks_the_class_exclusive_mark_over_a_larger_shared_one():
    data, corner, centre = marked_images()
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 2))
    settings = dict(candidates_from="atypical", choose="largest", select="all", dilate=0, min_area=2, candidates=2)
    plain = propose_masks(model, data, **settings)[:, 0]
    both = corner & centre.any((1, 2))[:, None, None]
    assert torch.equal(plain[both.any((1, 2))], centre[both.any((1, 2))])  # the larger mark wins without purity
    pure = propose_masks(model, data, min_purity=0.9, **settings)[:, 0]
    assert torch.equal(pure, corner)  # with it: exactly the corner marks, never the centre one


def test_default_candidates_are_unchanged_and_bad_settings_refused():
    data, _, _ = marked_images(n=12)
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 2))
    a = propose_masks(model, data, select="all")
    b = propose_masks(model, data, select="all", candidates_from="saliency", min_purity=0.0)
    assert torch.equal(a, b)
    for bad, match in [(dict(candidates_from="edges"), "candidates_from"), (dict(min_purity=1.5), "min_purity"),
                       (dict(purity_k=0), "purity_k"), (dict(atypical_threshold=0), "atypical_threshold")]:
        with pytest.raises(UserError, match=match):
            propose_masks(model, data, **bad)


def test_cli_proposes_with_atypical_candidates_and_purity(tmp_path, capsys):
    patches = write_patches(tmp_path / "patches", seed=3, size=16, n_train=40, n_val=10, n_test=20)
    run = tmp_path / "erm"
    assert main(["train", "--data", f"folder:{patches}", "--data-option", "size=16", "--model", "cnn", "--method",
                 "erm", "--epochs", "1", "--threads", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "proposed"
    assert main(["propose-masks", str(run), "--out", str(out), "--threads", "1", "--select", "all",
                 "--candidates-from", "atypical", "--min-purity", "0.9"]) == 0
    assert capsys.readouterr().out.startswith("train: ")
    assert main(["propose-masks", str(run), "--out", str(tmp_path / "x"), "--min-purity", "2"]) == 2
    assert "--min-purity" in capsys.readouterr().err
    assert main(["propose-masks", str(run), "--out", str(tmp_path / "y"), "--source", "teacher",
                 "--candidates-from", "atypical"]) == 2
    assert "--candidates-from: applies to --source saliency only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
