"""csv:PATH loader: features, labels, groups, splits, per-column and per-cell masks, standardisation."""

import numpy as np
import pytest
import torch

from own_data_fixtures import make_table
from rightreasons import load_dataset
from rightreasons.cli import main


@pytest.fixture
def table(tmp_path):
    return make_table(tmp_path / "data.csv", n=40)


def test_features_default_to_every_other_column(table):
    data = load_dataset(f"csv:{table}", group="grp")
    assert data.input_shape == (3,) and data.info["features"] == ["a", "b", "c"]
    assert data.num_classes == 2 and data.train.num_groups == 3
    assert sum(len(s) for s in (data.train, data.val, data.test)) == 40
    assert not bool(data.train.has_mask.any())  # no mask given: nothing annotated
    raw = np.loadtxt(table, delimiter=",", skiprows=1)
    all_x = torch.cat([data.train.x, data.val.x, data.test.x])
    assert sorted(all_x[:, 0].tolist()) == pytest.approx(sorted(raw[:, 0].tolist()), abs=1e-6)
    lo, hi = data.train.input_range
    assert lo == pytest.approx(raw[:, :3].min(), abs=1e-6) and hi == pytest.approx(raw[:, :3].max(), abs=1e-6)


def test_selected_features_and_mask_columns(table):
    data = load_dataset(f"csv:{table}", features="c,a", mask_columns="a")
    assert data.info["features"] == ["c", "a"] and data.input_shape == (2,)
    assert bool(data.train.has_mask.all())
    assert data.train.mask[:, 1].all() and not data.train.mask[:, 0].any()
    # the group column is just another feature unless named
    assert load_dataset(f"csv:{table}").input_shape == (4,)


def test_mask_file_per_cell_with_unannotated_rows(tmp_path, table):
    lines = ["c,b,a"] + ["1,0,0" if i % 2 == 0 else "0,1,1" for i in range(39)] + [",,"]
    (tmp_path / "mask.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(f"csv:{table}", features="a,b,c", mask_file=str(tmp_path / "mask.csv"))
    x = torch.cat([data.train.x, data.val.x, data.test.x])
    mask = torch.cat([data.train.mask, data.val.mask, data.test.mask])
    has = torch.cat([data.train.has_mask, data.val.has_mask, data.test.has_mask])
    assert int((~has).sum()) == 1
    raw = np.loadtxt(table, delimiter=",", skiprows=1)
    for xi, mi, hi in zip(x, mask, has):  # find the raw row of each example and check its mask
        row = int(np.argmin(np.abs(raw[:, 0] - xi[0].item())))
        if row == 39:
            assert not hi and not mi.any()
        else:
            assert mi.tolist() == ([False, False, True] if row % 2 == 0 else [True, True, False])
    both = load_dataset(f"csv:{table}", features="a,b,c", mask_file=str(tmp_path / "mask.csv"), mask_columns="b")
    all_mask = torch.cat([both.train.mask, both.val.mask, both.test.mask])
    assert bool(all_mask[:, 1].all()) and bool(
        torch.cat([both.train.has_mask, both.val.has_mask, both.test.has_mask]).all())


def test_split_column_names_and_standardisation_fitted_on_train(tmp_path):
    path = make_table(tmp_path / "d.csv", n=40, split=True)
    data = load_dataset(f"csv:{path}", split="part", group="grp", standardize=True)
    assert [len(data.train), len(data.val), len(data.test)] == [20, 10, 10]
    assert data.train.x.mean(0).abs().max() < 1e-5
    assert (data.train.x.std(0, unbiased=False) - 1).abs().max() < 1e-4
    assert data.test.x.mean(0).abs().max() > 1e-3  # test transformed with train statistics, not its own
    assert len(data.info["standardize"]["mean"]) == 3


def test_label_column_with_names(tmp_path):
    (tmp_path / "d.csv").write_text("x1,x2,kind\n" + "".join(f"{i},{i % 3},{'ham' if i % 2 else 'spam'}\n"
                                                            for i in range(30)))
    data = load_dataset(f"csv:{tmp_path / 'd.csv'}", label="kind")
    assert data.info["classes"] == ["ham", "spam"] and data.input_shape == (2,)


def test_cli_trains_on_a_table(tmp_path, table, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # fast on a crowded machine
    out = tmp_path / "run"
    assert main(["train", "--data", f"csv:{table}", "--data-option", "mask_columns=b", "--method", "rrr",
                 "--epochs", "2", "--batch-size", "8", "--out", str(out), "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["audit", str(out), "--json", "--steps", "3"]) == 0
    assert '"verdict"' in capsys.readouterr().out
