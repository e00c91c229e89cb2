"""Mask proposals from a model's saliency: post-processing on hand-made maps, a model whose gradient lies
on a known square, IoU, the written folder, and the command end to end."""

import math

import pytest
import torch
from torch import nn

from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data.dataset import ExplanationDataset
from rightreasons.data.examples import write_patches
from rightreasons.errors import UserError
from rightreasons.mask_proposals import (
    connected_components,
    iou_summary,
    mask_iou,
    postprocess,
    propose_masks,
    write_proposals,
)


def square(h, w, r0, r1, c0, c1):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m


def linear_on_square(size=8, rows=(2, 5), cols=(3, 6)):
    """A linear model whose weights (hence input gradients) are non-zero only on a 3x3 square."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 2))
    with torch.no_grad():
        w = torch.zeros(2, 3, size, size)
        w[0, :, rows[0]:rows[1], cols[0]:cols[1]] = 1.0
        model[1].weight.copy_(w.flatten(1))
        model[1].bias.zero_()
    return model, square(size, size, rows[0], rows[1], cols[0], cols[1])


def image_data(n=6, size=8):
    torch.manual_seed(1)
    return ExplanationDataset(torch.rand(n, 3, size, size), torch.arange(n) % 2, name="tiny")


@pytest.mark.parametrize("choose", ["occlusion", "largest"])
def test_gradient_on_a_known_square_gives_that_square(choose):
    model, sq = linear_on_square()
    model.train()
    data = image_data()
    got = propose_masks(model, data, dilate=0, min_area=1, select="all", choose=choose, batch_size=4)
    assert got.shape == (6, 1, 8, 8) and got.dtype == torch.bool and got.device.type == "cpu"
    assert torch.equal(got, sq.expand(6, 1, 8, 8))
    assert model.training  # mode restored
    dilated = propose_masks(model, data, dilate=1, min_area=1, select="all", choose=choose)
    assert torch.equal(dilated, square(8, 8, 1, 6, 2, 7).expand(6, 1, 8, 8))
    ig = propose_masks(model, data, dilate=0, min_area=1, select="all", attribution="ig")
    assert torch.equal(ig[:, 0] & ~sq, torch.zeros(6, 8, 8, dtype=torch.bool)) and ig.flatten(1).any(1).all()
    # deterministic
    assert torch.equal(dilated, propose_masks(model, data, dilate=1, min_area=1, select="all", choose=choose))


def test_selection_relied_keeps_only_compact_proposals_the_model_relies_on():
    model, sq = linear_on_square()
    data = image_data()
    at = dict(dilate=0, min_area=1, select="relied")
    masks, selected, drop = propose_masks(model, data, min_drop=-1e9, max_fraction=0.15, return_details=True, **at)
    assert selected.all() and torch.equal(masks, sq.expand(6, 1, 8, 8)) and drop.shape == (6,)
    assert not propose_masks(model, data, min_drop=-1e9, max_fraction=0.12, **at).any()  # 9 / 64 = 0.14 > 0.12
    assert not propose_masks(model, data, min_drop=1e9, max_fraction=1.0, **at).any()


def test_threshold_and_top_fraction():
    s = torch.tensor([[[1.0, 0.8, 0.0, 0.0],
                       [0.6, 0.0, 0.0, 0.0],
                       [0.0, 0.0, 0.0, 0.0],
                       [0.0, 0.0, 0.0, 0.4]]])
    at = dict(dilate=0, min_area=1, components=10)
    assert postprocess(s, threshold=0.7, **at)[0, 0].nonzero().tolist() == [[0, 0], [0, 1]]
    assert postprocess(s, threshold=0.4, **at)[0, 0].nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [3, 3]]
    # top_fraction 3/16: the three most salient pixels
    assert postprocess(s, top_fraction=3 / 16, **at)[0, 0].nonzero().tolist() == [[0, 0], [0, 1], [1, 0]]
    # never a zero-saliency pixel, even when the top fraction reaches them
    assert int(postprocess(s, top_fraction=1.0, **at).sum()) == 4
    assert not postprocess(torch.zeros(1, 4, 4), **at).any()


def test_components_min_area_connectivity_and_dilation():
    s = torch.zeros(1, 7, 7)
    s[0, 0:2, 0:2] = 1.0      # 4 pixels
    s[0, 4:7, 4:7] = 1.0      # 9 pixels
    s[0, 2, 2] = 1.0          # touches the first block diagonally only
    at = dict(threshold=0.5, dilate=0)
    big = postprocess(s, components=1, min_area=1, connectivity=4, **at)[0, 0]
    assert torch.equal(big, square(7, 7, 4, 7, 4, 7))
    two = postprocess(s, components=2, min_area=1, connectivity=4, **at)[0, 0]
    assert int(two.sum()) == 13 and not two[2, 2]
    eight = postprocess(s, components=2, min_area=1, connectivity=8, **at)[0, 0]
    assert int(eight.sum()) == 14 and eight[2, 2]  # the diagonal pixel joins the first block
    assert int(postprocess(s, components=3, min_area=5, connectivity=4, **at).sum()) == 9  # blocks of 4 and 1 dropped
    assert not postprocess(s, components=1, min_area=10, **at).any()
    one = torch.zeros(1, 5, 5)
    one[0, 2, 2] = 1.0
    assert torch.equal(postprocess(one, threshold=0.5, dilate=1, min_area=1)[0, 0], square(5, 5, 1, 4, 1, 4))
    assert torch.equal(postprocess(one, threshold=0.5, dilate=2, min_area=1)[0, 0], torch.ones(5, 5, dtype=torch.bool))
    labels = connected_components(s > 0, 4)[0]
    assert len(torch.unique(labels[labels > 0])) == 3


def test_postprocess_refuses_bad_settings():
    for kwargs in (dict(threshold=0), dict(threshold=1.5), dict(top_fraction=0), dict(dilate=-1),
                   dict(components=0), dict(connectivity=6), dict(threshold=float("nan"))):
        with pytest.raises(UserError, match="propose_masks"):
            postprocess(torch.rand(1, 4, 4), **kwargs)


def test_mask_iou_and_summary_by_hand():
    p = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    t = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    p[0, 0, 0, 0:2] = True        # 2 pixels
    t[0, 0, 0, 1:4] = True        # 3 pixels, 1 shared: IoU 1/4
    t[1, 0, 2:4, 2:4] = True      # 4 true pixels, nothing proposed: IoU 0
    iou = mask_iou(p, t)          # example 2: both empty -> NaN
    assert iou[0].item() == pytest.approx(0.25) and iou[1].item() == 0 and math.isnan(iou[2].item())
    p[2, 0, 0, 0] = True          # a proposal on an example whose true mask is empty
    s = iou_summary(p, t)
    assert s["mean_iou"] == pytest.approx(0.125)  # (1/4 + 0) / 2
    assert s["recall"] == pytest.approx(1 / 7)    # 1 of the 3 + 4 true pixels covered
    assert s["precision"] == pytest.approx(1 / 2)
    assert s["proposed_on_empty"] == 1 and s["with_true_mask"] == 2
    only_first = iou_summary(p, t, has_mask=torch.tensor([True, False, False]))
    assert only_first["mean_iou"] == pytest.approx(0.25) and only_first["proposed_on_empty"] == 0


def test_non_image_data_is_refused_in_one_line():
    data = ExplanationDataset(torch.rand(4, 5), torch.arange(4) % 2, name="table")
    model = nn.Linear(5, 2)
    with pytest.raises(UserError) as err:
        propose_masks(model, data)
    assert "(N, 5)" in str(err.value) and "table" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return write_patches(tmp_path_factory.mktemp("pm") / "patches", seed=3, size=16, n_train=40, n_val=10,
                         n_test=20)


def test_written_folder_loads_with_the_proposals_as_train_masks(patches, tmp_path):
    data = load_dataset(f"folder:{patches}")
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with torch.no_grad():
        w = torch.zeros(2, 3, 16, 16)
        w[0, :, 1:4, 2:5] = 1.0
        model[1].weight.copy_(w.flatten(1))
    masks, selected, drop = propose_masks(model, data.train, dilate=0, min_area=1, select="all",
                                          return_details=True)
    selected[0] = False  # an example without a proposal: an empty mask cell
    out = write_proposals(tmp_path / "out", patches, ["train"], {"train": masks}, seed=0,
                          selected={"train": selected}, drop={"train": drop})
    new = load_dataset(f"folder:{out}")
    assert [len(new.train), len(new.val), len(new.test)] == [40, 10, 20]
    assert torch.equal(new.train.x, data.train.x) and torch.equal(new.train.y, data.train.y)
    assert torch.equal(new.train.mask[:, :1].bool(), masks & selected[:, None, None, None])
    assert torch.equal(new.train.has_mask, selected)
    assert torch.equal(new.test.mask, data.test.mask) and torch.equal(new.val.has_mask, data.val.has_mask)
    assert (out / "proposals.csv").read_text().startswith("file,split,proposed,proposal,true_mask,iou")
    before = sorted(p.name for p in patches.rglob("*"))
    with pytest.raises(UserError, match="not empty"):
        write_proposals(out, patches, ["train"], {"train": masks})
    write_proposals(out, patches, ["train"], {"train": masks}, overwrite=True)
    assert load_dataset(f"folder:{out}").train.has_mask.all()
    assert sorted(p.name for p in patches.rglob("*")) == before  # the source is never modified
    with pytest.raises(UserError, match="outside the source folder"):
        write_proposals(patches / "inner", patches, ["train"], {"train": masks})
    with pytest.raises(UserError, match="40 train rows"):
        write_proposals(tmp_path / "short", patches, ["train"], {"train": masks[:3]})


def test_cli_end_to_end_on_a_tiny_run(patches, tmp_path, capsys):
    run = tmp_path / "erm"
    assert main(["train", "--data", f"folder:{patches}", "--data-option", "size=16", "--model", "cnn", "--method",
                 "erm", "--epochs", "1", "--threads", "1", "--out", str(run)]) == 0
    out = tmp_path / "proposed"
    capsys.readouterr()
    assert main(["propose-masks", str(run), "--out", str(out), "--threads", "1", "--select", "all"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("train: 40 proposals on 40 examples; against the true masks: mean IoU")
    assert "val: source masks kept" in text and f"rightreasons train --data folder:{out}" in text
    new = load_dataset(f"folder:{out}", size=16)
    assert new.train.has_mask.all() and len(new.test) == 20
    assert main(["propose-masks", str(run), "--out", str(out), "--threads", "1"]) == 2  # exists
    assert "not empty" in capsys.readouterr().err
    assert main(["propose-masks", str(run), "--out", str(tmp_path / "x"), "--splits", "train,nope"]) == 2


def test_every_name_of_the_former_single_module_is_still_importable():
    import importlib

    import rightreasons.mask_proposals as package

    names = ["ATTRIBUTIONS", "CHOICES", "SELECTIONS", "DEFAULTS", "_check_number", "_check_postprocess",
             "_image_shape", "_log_prob_sum", "saliency", "_neighbour_max", "connected_components",
             "candidate_components", "postprocess", "saliency_share", "occluded", "occlusion_drops", "propose_masks",
             "_flat", "mask_iou", "iou_summary", "folder_rows", "_is_inside", "_place_file", "_write_mask_png",
             "_csv_text", "_fmt", "write_proposals", "train_command"]
    assert [n for n in names if not hasattr(package, n)] == []
    assert all(hasattr(package, n) for n in package.__all__)
    for module in ("options", "saliency", "postprocess", "own_saliency", "teacher", "find_another_masks", "agreement",
                   "folder"):
        assert importlib.import_module(f"rightreasons.mask_proposals.{module}").__doc__
    assert package.DEFAULTS["dilate"] == 1 and package.SOURCES == ("saliency", "teacher", "find-another")
