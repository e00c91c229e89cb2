"""Find-another masks (Ross et al. 2017) as proposals: on a tiny find-another run over an image folder, the
proposals equal the run's train_mask files, model K's own top-gradient mask completes model K+1's, the
written folder trains on them, and bad run directories or data are one-line errors."""

import shutil
import sys

import click
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data.examples import write_patches
from rightreasons.errors import UserError
from rightreasons.mask_proposals import find_another_models, find_another_proposals, read_train_mask


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def entry(args):
    """The console script: ``sys.exit(main())``."""
    sys.exit(main(list(args)))


def run_cli(*args):
    return CliRunner().invoke(entry, [*map(str, args)])


@pytest.fixture(scope="module")
def fa_run(tmp_path_factory):
    """The patches folder (16 x 16, 40 training rows, sticker masks) and a two-model find-another run on it."""
    root = tmp_path_factory.mktemp("fa")
    patches = write_patches(root / "patches", seed=3, size=16, n_train=40, n_val=10, n_test=20)
    out = root / "fa"
    result = run_cli("find-another", "--data", f"folder:{patches}", "--models", "2", "--epochs", "1", "--model", "mlp",
                     "--model-option", "hidden=16", "--threshold", "0.5", "--threads", "1", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    return patches, out


def stored(run, k):
    """Model k's train_mask.safetensors as written, channels merged: (N, 1, H, W) bool."""
    return load_file(str(run / f"model-{k}" / "train_mask.safetensors"))["train_mask"].bool().any(1, keepdim=True)


def test_proposals_are_the_stored_train_masks_of_the_chosen_model(fa_run):
    patches, run = fa_run
    last = find_another_proposals(run)
    assert (last.index, last.n_models, last.which, last.model_dir) == (2, 2, "train", run / "model-2")
    assert last.masks.shape == (40, 1, 16, 16) and last.masks.dtype == torch.bool
    assert torch.equal(last.masks, stored(run, 2))
    first = find_another_proposals(run, model_index=1)
    assert torch.equal(first.masks, stored(run, 1))
    # model 1 was trained with the data's own masks A_0 only; model 2 adds model 1's top-gradient pixels
    data = load_dataset(f"folder:{patches}")
    own = (data.train.mask.bool() & data.train.has_mask[:, None, None, None]).any(1, keepdim=True)
    assert torch.equal(first.masks, own)
    assert last.masks.sum() > first.masks.sum() and torch.equal(last.masks | first.masks, last.masks)
    assert read_train_mask(run / "model-2").shape == (40, 3, 16, 16)
    assert find_another_models(run) == [run / "model-1", run / "model-2"]


def test_top_mask_of_model_k_recomputed_completes_the_mask_of_model_k_plus_one(fa_run):
    _, run = fa_run
    top = find_another_proposals(run, model_index=1, which="top")
    assert top.which == "top" and top.masks.any()
    assert torch.equal(top.masks | stored(run, 1), stored(run, 2))  # A_2 = A_1 | B_1
    assert torch.equal(find_another_proposals(run, model_index=1, which="top", batch_size=7).masks, top.masks)


def test_cli_writes_the_train_masks_and_keeps_the_other_splits(fa_run, tmp_path):
    patches, run = fa_run
    out = tmp_path / "proposed"
    result = run_cli("propose-masks", run, "--source", "find-another", "--out", out, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"find-another: the train mask of model 2 of 2 ({run / 'model-2'})\ntrain: 40 "
                                    "proposals on 40 examples, masking ")
    assert "val: source masks kept" in result.stdout and "test: source masks kept" in result.stdout
    source = load_dataset(f"folder:{patches}")
    new = load_dataset(f"folder:{out}")
    expected = stored(run, 2)
    assert torch.equal(new.train.x, source.train.x) and torch.equal(new.train.y, source.train.y)
    assert torch.equal(new.train.mask[:, :1].bool(), expected)
    assert torch.equal(new.train.has_mask, expected.flatten(1).any(1))
    assert torch.equal(new.val.mask, source.val.mask) and torch.equal(new.test.has_mask, source.test.has_mask)
    assert (out / "proposals.csv").read_text().startswith("file,split,proposed,proposal,true_mask,iou")
    from rightreasons.annotate.proposals import Proposals
    from rightreasons.annotate.store import MaskStore

    shutil.copytree(patches, tmp_path / "annotated")
    shown = Proposals(out, MaskStore(tmp_path / "annotated")).paths  # what `annotate --proposals` shows
    assert len(shown) == int(expected.flatten(1).any(1).sum()) > 0
    top = tmp_path / "top"
    result = run_cli("propose-masks", run, "--source", "find-another", "--which", "top", "--model-index", "1",
                     "--out", top, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert torch.equal(load_dataset(f"folder:{top}").train.mask[:, :1].bool() | stored(run, 1), stored(run, 2))


@pytest.mark.parametrize("args, message", [
    (["--model-index", "3"], "--model-index 3 is out of range: {run} holds models 1..2"),
    (["--model-index", "0"], "'--model-index': 0 is not in the range x>=1"),
    (["--splits", "train,val"], "--splits: --source find-another has masks of the training inputs only"),
    (["--quantile", "0.3"], "--quantile: applies to --source teacher only, not --source find-another"),
    (["--dilate", "1"], "--dilate: applies to --source saliency or teacher only"),
    (["--which", "both"], "'--which'"),
    (["--data-option", "size=8"], "{run}/model-2/train_mask.safetensors holds masks of 40 training inputs of "
                                  "shape (3, 16, 16), but the train split of {patches}/labels.csv has 40 of shape "
                                  "(3, 8, 8)"),
    (["--data", "decoy-mnist"], "trained on 'decoy-mnist', not an image folder"),
])
def test_cli_bad_options_are_one_line_errors(fa_run, tmp_path, args, message):
    patches, run = fa_run
    out = tmp_path / "never"
    result = run_cli("propose-masks", run, "--source", "find-another", "--out", out, "--threads", "1", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    expected = message.format(run=run, patches=patches)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output and not out.exists()


def test_cli_other_data_with_another_row_count_is_refused_naming_both_files(fa_run, tmp_path):
    _, run = fa_run
    other = write_patches(tmp_path / "other", seed=4, size=16, n_train=20, n_val=10, n_test=10)
    result = run_cli("propose-masks", run, "--source", "find-another", "--data", f"folder:{other}", "--out",
                     tmp_path / "o")
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.stderr.strip()
    assert "\n" not in line and f"{run / 'model-2' / 'train_mask.safetensors'} holds masks of 40 training" in line
    assert f"the train split of {other / 'labels.csv'} has 20 of shape (3, 16, 16)" in line
    assert not (tmp_path / "o").exists()


def test_wrong_kinds_of_run_directory_are_one_line_errors(fa_run, tmp_path):
    _, run = fa_run
    empty = tmp_path / "empty"
    empty.mkdir()
    gap = tmp_path / "gap"
    shutil.copytree(run / "model-2", gap / "model-2")
    no_mask = tmp_path / "no-mask"
    shutil.copytree(run / "model-1", no_mask / "model-1")
    (no_mask / "model-1" / "train_mask.safetensors").unlink()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (tmp_path / "nothing", "no such directory"),
        (a_file, "not a directory"),
        (run / "model-1", "a single run directory, not a find-another run"),
        (empty, "no model-1/ (the --out directory of `rightreasons find-another`"),
        (gap, "it holds model-2 but no model-1"),
        (no_mask, "missing train_mask.safetensors"),
    ]
    for where, message in cases:
        with pytest.raises(UserError) as err:
            find_another_proposals(where)
        assert message in str(err.value) and "\n" not in str(err.value), (where, str(err.value))
        assert str(where) in str(err.value)
        result = run_cli("propose-masks", where, "--source", "find-another", "--out", tmp_path / "never")
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    with pytest.raises(UserError, match="which must be one of train, top"):
        find_another_proposals(run, which="all")
    with pytest.raises(UserError, match=r"--model-index 0 is out of range"):
        find_another_proposals(run, model_index=0)
    assert not (tmp_path / "never").exists()


def test_a_plain_run_is_not_a_find_another_model(fa_run, tmp_path):
    """A run directory without a find_another record in its metrics (here: model-1 with that record removed,
    re-saved through save_run so that its manifest agrees) is refused naming its metrics.json."""
    from rightreasons.train.run import RunOutput, load_run, read_metrics, save_run

    _, run = fa_run
    model, config, data = load_run(run / "model-1")
    metrics = read_metrics(run / "model-1")
    metrics.pop("find_another")
    fake = tmp_path / "fake"
    save_run(fake / "model-1", RunOutput(model, config, metrics, data),
             extra={"train_mask.safetensors": (run / "model-1" / "train_mask.safetensors").read_bytes()})
    with pytest.raises(UserError) as err:
        find_another_proposals(fake)
    assert f"{fake / 'model-1' / 'metrics.json'}: no find_another record" in str(err.value)
