"""CDEP ColorMNIST: palette against the published definition, colouring per split, mask, determinism."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

import rightreasons
from data_fixtures import make_idx_dir
from rightreasons.data.color_mnist import palette
from rightreasons.errors import UserError

N_TRAIN, N_TEST = 300, 200


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    directory, (tr_x, tr_y), (te_x, te_y) = make_idx_dir(tmp_path_factory.mktemp("idx"), N_TRAIN, N_TEST, seed=4)
    n_val = N_TRAIN // 6
    raw = {"train": (tr_x[:-n_val], tr_y[:-n_val]), "val": (tr_x[-n_val:], tr_y[-n_val:]), "test": (te_x, te_y)}
    return str(directory), raw


def load(source, seed=0, **options):
    return rightreasons.load_dataset("color-mnist", seed=seed, source=source[0], **options)


def test_palette_is_hsl_interpolation_from_red_to_web_purple():
    p = palette()
    assert p.shape == (10, 3)
    assert np.allclose(p[0], [1.0, 0.0, 0.0], atol=1e-12)  # web "red"
    assert np.allclose(p[9], [128 / 255, 0.0, 128 / 255], atol=1e-12)  # web "purple" #800080
    for k, rgb in enumerate(p):
        h, lightness, s = colorsys.rgb_to_hls(*rgb)
        assert abs(s - 1.0) < 1e-9
        assert abs(h - k / 9 * 5 / 6) < 1e-9 or (k == 0 and abs(h) < 1e-9)
        assert abs(lightness - (0.5 + k / 9 * (64 / 255 - 0.5))) < 1e-9
    assert len({tuple(np.round(c, 6)) for c in p}) == 10


def _colour_index(ds) -> np.ndarray:
    """Recover each image's colour from its pixels: RGB / gray at the brightest pixel, nearest palette entry."""
    x = ds.x.double().numpy()
    gray = x[:, 3].reshape(len(x), -1)
    j = gray.argmax(1)
    rgb = x[:, :3].reshape(len(x), 3, -1)[np.arange(len(x)), :, j] / gray[np.arange(len(x)), j][:, None]
    dist = ((rgb[:, None, :] - palette()[None]) ** 2).sum(-1)
    assert np.all(dist.min(1) < 1e-10)
    return dist.argmin(1)


def test_train_and_test_colouring_and_mask(source):
    d = load(source)
    for split, colour_of in (("train", lambda y: y), ("val", lambda y: y), ("test", lambda y: 9 - y)):
        ds = d.split(split)
        images, y = source[1][split]
        assert ds.x.shape == (len(y), 4, 28, 28) and ds.x.dtype == torch.float32
        assert np.array_equal(_colour_index(ds), colour_of(y))
        gray = images / 255.0
        expected_rgb = gray[:, None] * palette()[colour_of(y)][:, :, None, None]
        assert np.allclose(ds.x[:, :3].double().numpy(), expected_rgb, atol=1e-6, rtol=0)
        assert np.allclose(ds.x[:, 3].double().numpy(), gray, atol=1e-6, rtol=0)
        m = ds.mask.numpy()
        assert m[:, :3].all() and not m[:, 3].any() and bool(ds.has_mask.all())
        assert float(ds.x.min()) >= 0 and float(ds.x.max()) <= 1


def test_decorrelated_val_and_groups(source):
    d = load(source, val="decorrelated", groups="label_color")
    y = source[1]["val"][1]
    colours = _colour_index(d.val)
    assert np.mean(colours == y) < 0.35 and len(np.unique(colours)) >= 8
    assert torch.equal(d.val.group, torch.from_numpy(y * 10 + colours))
    assert torch.equal(d.test.group, torch.from_numpy(source[1]["test"][1] * 10 + 9 - source[1]["test"][1]))
    assert d.info["val_protocol"] == "decorrelated" and d.val.num_groups == 100


def test_rgb_representation_is_unannotated(source):
    d = load(source, representation="rgb")
    sep = load(source)
    assert d.train.x.shape[1] == 3 and torch.equal(d.train.x, sep.train.x[:, :3])
    assert not d.train.mask.any() and not d.train.has_mask.any()


def test_determinism_seed_and_limit(source):
    a, b = load(source, seed=3, val="decorrelated"), load(source, seed=3, val="decorrelated")
    c = load(source, seed=4, val="decorrelated")
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.val.x, c.val.x)
    small = load(source, limit_train=10)
    assert len(small.train) == 10 and torch.equal(small.train.x, a.train.x[:10])


def test_option_errors(source):
    with pytest.raises(UserError, match="representation="):
        load(source, representation="hsv")
    with pytest.raises(UserError, match="unknown option"):
        load(source, colours=3)
