"""Teacher masks (Zhang et al., AAAI 2024): the pixels below a per-example quantile of a teacher's saliency,
on hand-made maps, on a linear teacher that reads only the left half, and through `propose-masks --source
teacher` on a tiny folder (the written folder loads with the right half as every training mask)."""

import sys

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data.dataset import ExplanationDataset
from rightreasons.data.examples import write_patches
from rightreasons.errors import UserError
from rightreasons.mask_proposals import TEACHER_DEFAULTS, quantile_masks, teacher_masks
from rightreasons.train.config import TrainConfig
from rightreasons.train.run import RunOutput, build_model, data_model_options, save_run


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def entry(args):
    """The console script: ``sys.exit(main())``."""
    sys.exit(main(list(args)))


def run_cli(*args):
    return CliRunner().invoke(entry, ["propose-masks", *map(str, args)])


def right_half(h, w):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[:, w // 2:] = True
    return m


def left_half_teacher(size=8, weight=1.0):
    """A linear model whose weights (hence input gradients) are non-zero on the left half only."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 2))
    with torch.no_grad():
        w = torch.zeros(2, 3, size, size)
        w[0, :, :, : size // 2] = weight
        model[1].weight.copy_(w.flatten(1))
        model[1].bias.zero_()
    return model


# ------------------------------------------------------------------------------------------ hand-made maps


@pytest.mark.parametrize("q", [0.1, 0.25, 0.5, 0.8])
def test_quantile_on_distinct_values_masks_the_pixels_below_numpys_quantile(q):
    s = torch.randperm(16, generator=torch.Generator().manual_seed(0)).float().reshape(1, 4, 4)
    got = quantile_masks(s, quantile=q)
    assert got.shape == (1, 1, 4, 4) and got.dtype == torch.bool
    cut = np.quantile(s.numpy().ravel(), q)
    assert torch.equal(got[0, 0], (s[0] < cut) | (s[0] == 0))
    assert int(got.sum()) == max(1, int(np.ceil(q * 15)))  # values 0..15: those below q * 15


def test_quantile_half_and_quarter_by_hand():
    s = torch.arange(16.0).reshape(1, 4, 4)
    assert quantile_masks(s, quantile=0.5)[0, 0].flatten().nonzero().flatten().tolist() == list(range(8))
    assert quantile_masks(s, quantile=0.25)[0, 0].flatten().nonzero().flatten().tolist() == [0, 1, 2, 3]
    # (1, H, W) channel dimension accepted; examples thresholded each at its own quantile
    two = torch.stack([s[0], 100 - s[0]])[:, None]
    got = quantile_masks(two, quantile=0.5)
    assert torch.equal(got[1, 0], ~got[0, 0])


def test_ties_at_the_minimum_are_masked_together_and_a_constant_map_gives_no_mask():
    s = torch.tensor([[0.0] * 10 + [1.0] * 6]).reshape(1, 4, 4)  # the median is 0: nothing strictly below
    assert torch.equal(quantile_masks(s, quantile=0.5)[0, 0], s[0] == 0)
    s = torch.tensor([[0.0] * 5 + [1.0] * 11]).reshape(1, 4, 4)  # the median is 1: only the zeros are below
    assert torch.equal(quantile_masks(s, quantile=0.5)[0, 0], s[0] == 0)
    assert not quantile_masks(torch.full((2, 4, 4), 0.3), quantile=0.5).any()
    assert not quantile_masks(torch.zeros(1, 4, 4), quantile=0.9).any()


def test_smoothing_spreads_a_single_salient_pixel_over_its_window():
    s = torch.zeros(1, 5, 5)
    s[0, 2, 2] = 1.0
    plain = quantile_masks(s, quantile=0.5)[0, 0]
    assert int(plain.sum()) == 24 and not plain[2, 2]
    smooth = quantile_masks(s, quantile=0.5, smooth=3)[0, 0]
    inner = torch.zeros(5, 5, dtype=torch.bool)
    inner[1:4, 1:4] = True
    assert torch.equal(smooth, ~inner)  # the 3 x 3 window around the pixel now reads as salient
    assert quantile_masks(s, quantile=0.5, smooth=2).shape == (1, 1, 5, 5)  # even windows keep the size
    assert torch.equal(quantile_masks(s, quantile=0.5, smooth=1), quantile_masks(s, quantile=0.5))


def test_min_area_drops_small_masked_components_and_dilate_grows_the_rest():
    s = torch.ones(1, 6, 6)
    s[0, :, :2] = 0.0      # 12 ignored pixels on the left
    s[0, 5, 5] = 0.0       # one isolated ignored pixel
    base = quantile_masks(s, quantile=0.5)[0, 0]
    assert int(base.sum()) == 13 and base[5, 5]
    pruned = quantile_masks(s, quantile=0.5, min_area=2, connectivity=4)[0, 0]
    assert int(pruned.sum()) == 12 and not pruned[5, 5]
    grown = quantile_masks(s, quantile=0.5, min_area=2, dilate=1)[0, 0]
    expected = torch.zeros(6, 6, dtype=torch.bool)
    expected[:, :3] = True
    assert torch.equal(grown, expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(quantile=0), "quantile must be a number in (0, 1)"),
    (dict(quantile=1), "quantile must be a number in (0, 1)"),
    (dict(quantile=1.5), "quantile must be a number in (0, 1), got 1.5"),
    (dict(quantile=float("nan")), "quantile"),
    (dict(quantile=True), "quantile"),
    (dict(smooth=-1), "smooth must be an integer"),
    (dict(smooth=1.5), "smooth must be an integer"),
    (dict(dilate=-1), "dilate"),
    (dict(min_area=-2), "min_area"),
    (dict(connectivity=6), "connectivity must be 4 or 8"),
])
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(UserError) as err:
        quantile_masks(torch.rand(1, 4, 4), **kwargs)
    assert str(err.value).startswith("teacher_masks: ") and message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="NaN or infinite"):
        quantile_masks(torch.tensor([[[float("nan"), 0.0]]]))
    with pytest.raises(UserError, match="shape"):
        quantile_masks(torch.rand(4, 4))


# ------------------------------------------------------------------------------------------ a known teacher


def test_a_teacher_reading_the_left_half_masks_the_right_half():
    model = left_half_teacher()
    model.train()
    torch.manual_seed(1)
    data = ExplanationDataset(torch.rand(7, 3, 8, 8), torch.arange(7) % 2, name="tiny")
    got = teacher_masks(model, data, batch_size=3)
    assert got.shape == (7, 1, 8, 8) and got.dtype == torch.bool and got.device.type == "cpu"
    assert torch.equal(got, right_half(8, 8).expand(7, 1, 8, 8))
    assert model.training  # mode restored
    assert torch.equal(teacher_masks(model, data, attribution="ig"), got)
    assert TEACHER_DEFAULTS["quantile"] == 0.5
    dilated = teacher_masks(model, data, dilate=1)
    wider = torch.zeros(8, 8, dtype=torch.bool)
    wider[:, 3:] = True
    assert torch.equal(dilated, wider.expand(7, 1, 8, 8))
    # a teacher that reads the right half instead: the left half is masked
    mirrored = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 2))
    with torch.no_grad():
        mirrored[1].weight.copy_(model[1].weight.reshape(2, 3, 8, 8).flip(-1).flatten(1))
    assert torch.equal(teacher_masks(mirrored, data), ~right_half(8, 8).expand(7, 1, 8, 8))
    with pytest.raises(UserError, match="quantile"):
        teacher_masks(model, data, quantile=2.0)


def test_non_image_data_is_refused():
    data = ExplanationDataset(torch.rand(4, 5), torch.arange(4) % 2, name="table")
    with pytest.raises(UserError, match=r"table: mask proposals need images .*\(N, 5\)"):
        teacher_masks(nn.Linear(5, 2), data)


# ------------------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """The patches folder (16 x 16) and a saved run of a linear teacher reading only the left half."""
    root = tmp_path_factory.mktemp("teacher")
    patches = write_patches(root / "patches", seed=3, size=16, n_train=40, n_val=10, n_test=20)
    data = load_dataset(f"folder:{patches}")
    config = TrainConfig(data=f"folder:{patches}", model="mlp", model_options={"hidden": []}, method="erm", epochs=1)
    model = build_model(config, data.input_shape, data.num_classes, data_model_options(data, config.model_name()))
    with torch.no_grad():
        model.load_state_dict(left_half_teacher(16).state_dict())
    run = save_run(root / "teacher-run", RunOutput(model, config, {"test": {}}, data))
    return patches, run, data


def test_cli_teacher_masks_write_the_right_half_as_every_training_mask(teacher_run, tmp_path):
    patches, run, data = teacher_run
    out = tmp_path / "proposed"
    result = run_cli(run, "--source", "teacher", "--out", out, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("train: 40 proposals on 40 examples, masking 0.500 of the pixels; against the "
                                    "true masks: mean IoU")
    assert "val: source masks kept" in result.stdout and f"rightreasons train --data folder:{out}" in result.stdout
    new = load_dataset(f"folder:{out}")
    assert torch.equal(new.train.x, data.train.x) and torch.equal(new.train.y, data.train.y)
    assert new.train.has_mask.all()
    assert torch.equal(new.train.mask.bool(), right_half(16, 16).expand(40, 3, 16, 16))
    assert torch.equal(new.test.mask, data.test.mask) and torch.equal(new.val.has_mask, data.val.has_mask)
    report = (out / "proposals.csv").read_text().splitlines()
    assert report[0] == "file,split,proposed,proposal,true_mask,iou,occlusion_drop" and len(report) == 71
    train_rows = [r.split(",") for r in report[1:] if r.split(",")[1] == "train"]
    assert len(train_rows) == 40 and all(r[2] == "1" and r[3].startswith("masks/") and r[6] == "" for r in train_rows)
    assert len(annotate_proposals(patches, out, tmp_path)) == 40  # what `annotate --proposals` shows


def annotate_proposals(source, proposed, tmp_path):
    """The rows of (a copy of) ``source`` that `rightreasons annotate --proposals proposed` has a proposal for."""
    import shutil

    from rightreasons.annotate.proposals import Proposals
    from rightreasons.annotate.store import MaskStore

    copy = tmp_path / "annotated"
    shutil.copytree(source, copy)
    return Proposals(proposed, MaskStore(copy)).paths


def test_cli_teacher_options_smooth_quantile_and_dilate_reach_the_masks(teacher_run, tmp_path):
    _, run, _ = teacher_run
    out = tmp_path / "q"
    result = run_cli(run, "--source", "teacher", "--quantile", "0.25", "--dilate", "2", "--smooth", "3",
                     "--splits", "train,test", "--out", out, "--threads", "1")
    assert result.exit_code == 0, result.output
    new = load_dataset(f"folder:{out}")
    # smoothing over 3 x 3 makes column 8 (next to the read half) salient, so the zeros are columns 9..15;
    # at q = 0.25 the whole zero block is below the quantile (ties at the minimum), then dilated by 2
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[:, 7:] = True
    assert torch.equal(new.train.mask[:, 0].bool(), expected.expand(40, 16, 16))
    assert torch.equal(new.test.mask[:, 0].bool(), expected.expand(20, 16, 16)) and new.test.has_mask.all()


@pytest.mark.parametrize("args, message", [
    (["--quantile", "1.5"], "'--quantile': 1.5 is not in the range 0<x<1"),
    (["--quantile", "0"], "'--quantile'"),
    (["--smooth", "-1"], "'--smooth'"),
    (["--threshold", "0.5"], "--threshold: applies to --source saliency only, not --source teacher"),
    (["--select", "all"], "--select: applies to --source saliency only"),
    (["--model-index", "1"], "--model-index: applies to --source find-another only"),
    (["--source", "saliency", "--quantile", "0.3"], "--quantile: applies to --source teacher only, not --source "
                                                    "saliency"),
    (["--data", "decoy-mnist"], "trained on 'decoy-mnist', not an image folder"),
])
def test_cli_bad_teacher_input_is_a_one_line_error(teacher_run, tmp_path, args, message):
    _, run, _ = teacher_run
    out = tmp_path / "never"
    result = run_cli(run, "--source", "teacher", "--out", out, "--threads", "1", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output and not out.exists()


def test_cli_teacher_never_overwrites_an_existing_folder(teacher_run, tmp_path):
    _, run, _ = teacher_run
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run_cli(run, "--source", "teacher", "--out", out, "--threads", "1")
    assert result.exit_code == 2 and "already exists and is not empty" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    missing = run_cli(tmp_path / "no-run", "--source", "teacher", "--out", tmp_path / "x")
    assert missing.exit_code == 2 and "no such run directory" in missing.stderr and "Traceback" not in missing.output
