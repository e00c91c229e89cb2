"""Toy Colors (Ross et al. 2017): both rules hold for every example; colours, masks, balance, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rightreasons
from rightreasons.errors import UserError

# Ross's generator draws pixels from these four colours (r, g, b, v of dtak/rrr toy_colors)
ROSS_COLOURS = {(255, 0, 0), (0, 255, 0), (0, 128, 255), (128, 0, 255)}
SMALL = {"n_train": 3000, "n_val": 200, "n_test": 1000}


def load(seed=0, **options):
    return rightreasons.load_dataset("toy-colors", seed=seed, **{**SMALL, **options})


def pixels(ds) -> np.ndarray:
    """(N, 5, 5, 3) integer colours recovered from x."""
    return np.rint(ds.x.double().numpy() * 255).astype(int).transpose(0, 2, 3, 1)


def rules(px: np.ndarray):
    corners = np.stack([px[:, 0, 0], px[:, 0, 4], px[:, 4, 0], px[:, 4, 4]], axis=1)  # (N, 4, 3)
    corners_equal = (corners == corners[:, :1]).all(axis=(1, 2))
    a, b, c = px[:, 0, 1], px[:, 0, 2], px[:, 0, 3]
    distinct = ~((a == b).all(1) | (a == c).all(1) | (b == c).all(1))
    return corners_equal, distinct


def test_every_example_obeys_the_rules():
    d = load()
    for split in ("train", "val", "test"):
        ds = d.split(split)
        px = pixels(ds)
        assert ds.x.shape == (len(ds), 3, 5, 5) and ds.x.dtype == torch.float32
        assert {tuple(p) for p in px.reshape(-1, 3)} == ROSS_COLOURS
        corners_equal, distinct = rules(px)
        y = ds.y.numpy()
        assert np.array_equal(corners_equal, y == 0) and np.array_equal(distinct, y == 0)
        assert set(np.unique(y)) == {0, 1} and ds.num_classes == 2


def test_exactly_balanced_classes():
    d = load(n_train=1001)
    assert int((d.train.y == 0).sum()) == 501 and int((d.train.y == 1).sum()) == 500
    assert int((d.test.y == 1).sum()) == SMALL["n_test"] // 2
    assert [len(d.train), len(d.val), len(d.test)] == [1001, SMALL["n_val"], SMALL["n_test"]]


def test_free_pixels_are_uniform_and_class1_top_middle_has_both_repeat_kinds():
    d = load()
    px = pixels(d.train)
    centre = [tuple(p) for p in px[:, 2, 2]]
    freq = np.array([centre.count(c) for c in sorted(ROSS_COLOURS)]) / len(centre)
    assert np.all(np.abs(freq - 0.25) < 0.04)
    ones = px[d.train.y.numpy() == 1]
    tm = ones[:, 0, 1:4]
    all_same = (tm == tm[:, :1]).all(axis=(1, 2))
    assert 0 < all_same.mean() < 0.2  # Ross's loop yields mostly pairs, some all-same triples


@pytest.mark.parametrize("annotate,pixels_marked", [("corners", [(0, 0), (0, 4), (4, 0), (4, 4)]),
                                                    ("top_middle", [(0, 1), (0, 2), (0, 3)])])
def test_masks(annotate, pixels_marked):
    d = load(annotate=annotate)
    expected = torch.zeros(3, 5, 5, dtype=torch.bool)
    for r, c in pixels_marked:
        expected[:, r, c] = True
    assert bool((d.train.mask == expected).all()) and bool(d.train.has_mask.all())
    assert d.info["annotate"] == annotate


def test_no_annotation():
    d = load(annotate="none")
    assert not d.train.mask.any() and not d.train.has_mask.any()


def test_determinism_and_seed_sensitivity():
    a, b, c = load(seed=9), load(seed=9), load(seed=10)
    for split in ("train", "val", "test"):
        assert torch.equal(a.split(split).x, b.split(split).x) and torch.equal(a.split(split).y, b.split(split).y)
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.train.x[:200], a.val.x)


def test_option_errors():
    with pytest.raises(UserError, match="annotate="):
        load(annotate="edges")
    with pytest.raises(UserError, match="n_train"):
        load(n_train=1)
    with pytest.raises(UserError, match="unknown option"):
        load(val="decorrelated")
