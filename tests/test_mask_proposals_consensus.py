"""Proposals that models of other seeds agree on: the agreement score against a slow loop, the keep rule at
its boundary, refusals, and ``propose-masks --agree-with`` end to end."""

import csv
import math

import numpy as np
import pytest
import torch

from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data.examples import write_patches
from rightreasons.errors import UserError
from rightreasons.mask_proposals import agreement, keep_agreed


def _slow_agreement(masks, others):
    """Per example: NaN without a proposal, else the smallest |P & Q| / |P | Q| over the others (0 when Q is
    empty), counted pixel by pixel in float64."""
    out = []
    for i in range(len(masks)):
        p = masks[i].reshape(-1).tolist()
        if not any(p):
            out.append(math.nan)
            continue
        worst = math.inf
        for other in others:
            q = other[i].reshape(-1).tolist()
            inter = sum(1 for a, b in zip(p, q) if a and b)
            union = sum(1 for a, b in zip(p, q) if a or b)
            worst = min(worst, inter / union)
        out.append(worst)
    return torch.tensor(out, dtype=torch.float64)


def test_agreement_matches_a_slow_loop_with_empty_and_identical_proposals():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(12, 1, 6, 7, generator=g) < 0.3
    masks[0] = False                              # no proposal: no agreement
    others = [torch.rand(12, 1, 6, 7, generator=g) < 0.3 for _ in range(3)]
    others[0][1] = masks[1]                        # identical in one run ...
    others[1][1] = masks[1]
    others[2][1] = False                           # ... but nothing in another: 0
    others[0][2], others[1][2], others[2][2] = masks[2], masks[2], masks[2]  # identical everywhere: 1
    got = agreement(masks, others)
    want = _slow_agreement(masks, others)
    assert got.dtype == torch.float64
    assert torch.equal(torch.isnan(got), torch.isnan(want)) and bool(torch.isnan(got[0]))
    assert torch.allclose(got[1:], want[1:], rtol=0, atol=1e-15)
    assert got[1] == 0 and got[2] == 1
    # (N, H, W) masks give the same scores as (N, 1, H, W)
    assert torch.allclose(agreement(masks[:, 0], [o[:, 0] for o in others]), got, equal_nan=True)


def test_keep_agreed_keeps_exactly_the_proposals_at_or_above_the_threshold():
    masks = torch.zeros(4, 1, 2, 2, dtype=torch.bool)
    masks[0, 0, 0, :] = True          # 2 pixels
    masks[1, 0, :, :] = True          # 4 pixels
    masks[2, 0, 1, 1] = True          # 1 pixel
    other = torch.zeros_like(masks)
    other[0, 0, 0, 0] = True          # IoU 1/2
    other[1, 0, 0, 0] = True          # IoU 1/4
    other[2, 0, 1, 1] = True          # IoU 1
    other[3, 0, 0, 0] = True          # a proposal where the first has none
    kept, selected, score = keep_agreed(masks, [other], 0.5)
    assert selected.tolist() == [True, False, True, False]
    assert torch.equal(kept[0], masks[0]) and torch.equal(kept[2], masks[2]) and not kept[1].any() and not kept[3].any()
    assert score[:3].tolist() == [0.5, 0.25, 1.0] and math.isnan(score[3])
    assert keep_agreed(masks, [other], 0.25)[1].tolist() == [True, True, True, False]
    for bad in (0, -0.1, 1.5, True, "0.3", float("nan")):
        with pytest.raises(UserError, match="min_iou"):
            keep_agreed(masks, [other], bad)
    with pytest.raises(UserError, match="at least one other"):
        keep_agreed(masks, [], 0.3)
    with pytest.raises(UserError, match=r"other model 1 have shape \(3, 1, 2, 2\)"):
        agreement(masks, [other[:3]])


def _rows(folder):
    with open(folder / "proposals.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _proposal_masks(folder, size):
    """(N, 16, 16) bool of the train rows' proposals as the folder loads them."""
    data = load_dataset(f"folder:{folder}", size=size)
    return data.train.mask[:, 0].bool() & data.train.has_mask[:, None, None]


def test_cli_agree_with_keeps_what_the_other_runs_propose_too(tmp_path, capsys):
    data = write_patches(tmp_path / "patches", seed=3, size=16, n_train=40, n_val=10, n_test=20)
    runs = []
    for seed in (0, 1, 2):
        run = tmp_path / f"erm-{seed}"
        assert main(["train", "--data", f"folder:{data}", "--data-option", "size=16", "--model", "cnn", "--method",
                     "erm", "--epochs", "2", "--threads", "1", "--seed", str(seed), "--out", str(run)]) == 0
        runs.append(run)
    flags = ["--threads", "1", "--select", "all", "--threshold", "0.5"]
    alone = []
    for k, run in enumerate(runs):
        assert main(["propose-masks", str(run), "--out", str(tmp_path / f"alone-{k}"), *flags]) == 0
        alone.append(_proposal_masks(tmp_path / f"alone-{k}", 16))
    capsys.readouterr()
    out = tmp_path / "agreed"
    assert main(["propose-masks", str(runs[0]), "--agree-with", str(runs[1]), "--agree-with", str(runs[2]),
                 "--min-agreement", "0.1", "--out", str(out), *flags]) == 0
    text = capsys.readouterr().out
    # the rule, recomputed from the three runs' own proposals
    score = _slow_agreement(alone[0].numpy(), [a.numpy() for a in alone[1:]])
    want = torch.nan_to_num(score, nan=-1) >= 0.1
    got = _proposal_masks(out, 16)
    assert torch.equal(got.flatten(1).any(1), want)
    assert torch.equal(got, alone[0] & want[:, None, None])
    assert 0 < int(want.sum()) < int(alone[0].flatten(1).any(1).sum())  # the check drops some, keeps some
    assert f"train: {int(want.sum())} of {int(alone[0].flatten(1).any(1).sum())} proposals agreed on" in text
    rows = [r for r in _rows(out) if r["split"] == "train"]
    assert list(rows[0]) == ["file", "split", "proposed", "proposal", "true_mask", "iou", "occlusion_drop",
                             "agreement"]
    written = np.array([float(r["agreement"] or "nan") for r in rows])  # no proposal: an empty cell
    assert np.allclose(written, score.numpy(), atol=5e-5, equal_nan=True)
    assert all(r["agreement"] == "" for r in _rows(out) if r["split"] != "train")
    assert "agreement" not in _rows(tmp_path / "alone-0")[0]  # the column is only there with --agree-with


def test_cli_agree_with_refusals(tmp_path, capsys):
    data = write_patches(tmp_path / "patches", seed=3, size=16, n_train=20, n_val=6, n_test=6)
    small, other_size = tmp_path / "erm16", tmp_path / "erm8"
    for run, size in ((small, 16), (other_size, 8)):
        assert main(["train", "--data", f"folder:{data}", "--data-option", f"size={size}", "--model", "cnn",
                     "--method", "erm", "--epochs", "1", "--threads", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    cases = [
        (["--agree-with", str(small)], "is the run that proposes"),
        (["--agree-with", str(other_size)], "weights do not fit"),
        (["--agree-with", str(tmp_path / "missing")], "missing"),
        (["--source", "teacher", "--agree-with", str(other_size)], "--agree-with: applies to --source saliency"),
        (["--agree-with", str(other_size), "--min-agreement", "0"], "--min-agreement"),
    ]
    for k, (extra, message) in enumerate(cases):
        out = tmp_path / f"out-{k}"
        assert main(["propose-masks", str(small), "--out", str(out), "--threads", "1", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
        assert not out.exists()
