"""Decoy-MNIST variants checked against the published constructions, on synthetic noise 'digits'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rightreasons
from data_fixtures import make_idx_dir
from helpers import chi2_independence
from rightreasons.errors import UserError

N_TRAIN, N_TEST = 1200, 2000  # val = last 200 training images


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    directory, (tr_x, tr_y), (te_x, te_y) = make_idx_dir(tmp_path_factory.mktemp("idx"), N_TRAIN, N_TEST, seed=3)
    n_val = N_TRAIN // 6
    raw = {"train": (tr_x[:-n_val], tr_y[:-n_val]), "val": (tr_x[-n_val:], tr_y[-n_val:]), "test": (te_x, te_y)}
    return str(directory), raw


def load(name, source, seed=0, **options):
    return rightreasons.load_dataset(name, seed=seed, source=source[0], **options)


def corner_of(mask_2d: np.ndarray, size: int):
    """Which corner (top?, left?) a mask covers, checking it is exactly one size x size corner block."""
    rows, cols = np.nonzero(mask_2d)
    assert len(rows) == size * size, f"mask has {len(rows)} pixels, expected {size * size}"
    r0, c0 = rows.min(), cols.min()
    assert r0 in (0, 28 - size) and c0 in (0, 28 - size)
    assert mask_2d[r0:r0 + size, c0:c0 + size].all()
    return bool(r0 == 0), bool(c0 == 0)


def shade_values(ds):
    """The byte value painted in each example's masked region (checking it is one constant)."""
    x = ds.x[:, 0].double().numpy() * 255
    m = ds.mask[:, 0].numpy()
    counts = m.reshape(len(m), -1).sum(1)
    assert np.all(counts == counts[0]) and counts[0] > 0
    v = x[m].reshape(len(m), counts[0])  # row-major: each example's masked pixels in order
    assert np.allclose(v, v[:, :1], atol=1e-4)
    assert np.allclose(v[:, 0], np.round(v[:, 0]), atol=1e-4)
    return np.round(v[:, 0]).astype(int)


# chi^2 with 81 degrees of freedom has mean 81 and sd ~12.7: 150 is > 5 sd (dependence gives ~ 9 * N)
CHI2_INDEPENDENT = 150.0


def test_registered_after_import():
    for name in ("decoy-mnist", "decoy-mnist-half", "decoy-mnist-cdep", "mnist"):
        assert name in rightreasons.data.DATASETS


# ------------------------------------------------------------------------------------ Ross et al. 2017


def test_ross_train_swatch_constants_and_untouched_digit(source):
    d = load("decoy-mnist", source)
    images, y = source[1]["train"]
    ds = d.train
    assert ds.x.dtype == torch.float32 and ds.x.shape == (len(y), 1, 28, 28) and ds.mask.dtype == torch.bool
    assert torch.equal(ds.y, torch.from_numpy(y)) and bool(ds.has_mask.all())
    corners = [corner_of(m, 4) for m in ds.mask[:, 0].numpy()]
    assert len(set(corners)) == 4  # all four corners used
    counts = np.unique(np.array(corners), axis=0, return_counts=True)[1] / len(corners)
    assert np.all(np.abs(counts - 0.25) < 0.06)
    assert np.array_equal(shade_values(ds), 255 - 25 * y)
    outside = ~ds.mask[:, 0].numpy()
    assert np.allclose(ds.x[:, 0].double().numpy()[outside], images[outside] / 255.0, atol=1e-6, rtol=0)
    assert float(ds.x.min()) >= 0 and float(ds.x.max()) <= 1
    assert torch.equal(ds.group, ds.y) and d.train.num_groups == 10


def test_ross_test_shade_is_independent_of_label(source):
    d = load("decoy-mnist", source)
    images, y = source[1]["test"]
    digits = (255 - shade_values(d.test)) / 25
    assert np.allclose(digits, np.round(digits)) and digits.min() >= 0 and digits.max() <= 9
    digits = digits.astype(int)
    assert abs(np.mean(digits == y) - 0.1) < 0.04
    assert chi2_independence(y, digits) < CHI2_INDEPENDENT
    # the same statistic does detect the train-time dependence (the test can fail)
    assert chi2_independence(source[1]["train"][1], (255 - shade_values(d.train)) // 25) > 10 * CHI2_INDEPENDENT
    outside = ~d.test.mask[:, 0].numpy()
    assert np.allclose(d.test.x[:, 0].double().numpy()[outside], images[outside] / 255.0, atol=1e-6, rtol=0)


def test_val_protocols(source):
    y_val = source[1]["val"][1]
    biased = load("decoy-mnist", source)
    assert np.array_equal(shade_values(biased.val), 255 - 25 * y_val)
    assert biased.info["val_protocol"] == "train"
    decor = load("decoy-mnist", source, val="decorrelated")
    digits = (255 - shade_values(decor.val)) // 25
    assert np.mean(digits == y_val) < 0.3 and len(np.unique(digits)) == 10
    assert decor.info["val_protocol"] == "decorrelated"
    assert torch.equal(biased.train.x, decor.train.x)  # the option only changes val


def test_label_shade_groups_match_pixels(source):
    d = load("decoy-mnist", source, groups="label_shade")
    for ds in (d.train, d.test):
        digits = (255 - shade_values(ds)) // 25
        assert torch.equal(ds.group, ds.y * 10 + torch.from_numpy(digits))
        assert ds.num_groups == 100


# ------------------------------------------------------------------------------------ Heo et al. 2023 (half)


def _half_checks(ds, images, fill_digits_expected=None):
    x = ds.x[:, 0].double().numpy()
    m = ds.mask[:, 0].numpy()
    squeezed = (images[:, 0::2].astype(np.float64) + images[:, 1::2]) / 2 / 255
    top_digit = []
    for xi, mi, si in zip(x, m, squeezed):
        top_masked = mi[:14].all() and not mi[14:].any()
        bottom_masked = mi[14:].all() and not mi[:14].any()
        assert top_masked != bottom_masked, "mask must be exactly one half"
        digit_half = xi[14:] if top_masked else xi[:14]
        assert np.allclose(digit_half, si, atol=1e-6, rtol=0)
        top_digit.append(bottom_masked)
    values = shade_values(ds)
    assert np.all(values % 25 == 0)
    if fill_digits_expected is not None:
        assert np.array_equal(values // 25, fill_digits_expected)
    return np.array(top_digit), values // 25


def test_half_train_constants(source):
    d = load("decoy-mnist-half", source)
    images, y = source[1]["train"]
    top, _ = _half_checks(d.train, images, fill_digits_expected=y)
    assert 0.4 < top.mean() < 0.6
    assert int(d.train.mask[0].sum()) == 14 * 28


def test_half_test_fill_independent_of_label(source):
    d = load("decoy-mnist-half", source)
    images, y = source[1]["test"]
    _, digits = _half_checks(d.test, images)
    assert abs(np.mean(digits == y) - 0.1) < 0.04
    assert chi2_independence(y, digits) < CHI2_INDEPENDENT


# ------------------------------------------------------------------------------------ Rieger et al. 2020 (CDEP)


def test_cdep_patch_random_corner_and_reversed_shade(source):
    d = load("decoy-mnist-cdep", source)
    images, y = source[1]["train"]
    corners = {corner_of(m, 5) for m in d.train.mask[:, 0].numpy()}
    assert len(corners) == 4  # CDEP's data script draws each offset from {0, 23}
    assert np.array_equal(shade_values(d.train), 255 - 25 * y)
    outside = ~d.train.mask[:, 0].numpy()
    assert np.allclose(d.train.x[:, 0].double().numpy()[outside], images[outside] / 255.0, atol=1e-6, rtol=0)
    te_images, te_y = source[1]["test"]
    for m in d.test.mask[:, 0].numpy()[:200]:
        corner_of(m, 5)
    assert np.array_equal(shade_values(d.test), 25 * te_y)  # reversed mapping, still label-determined
    outside = ~d.test.mask[:, 0].numpy()
    assert np.allclose(d.test.x[:, 0].double().numpy()[outside], te_images[outside] / 255.0, atol=1e-6, rtol=0)


def test_cdep_four_corner_mask_option(source):
    d = load("decoy-mnist-cdep", source, mask="corners")
    expected = np.zeros((28, 28), bool)
    for r in (range(0, 5), range(23, 28)):
        for c in (range(0, 5), range(23, 28)):
            expected[np.ix_(list(r), list(c))] = True
    assert (d.train.mask[:, 0].numpy() == expected).all() and expected.sum() == 100
    patch = load("decoy-mnist-cdep", source)
    assert torch.equal(d.train.x, patch.train.x)


# ------------------------------------------------------------------------------------ common behaviour


@pytest.mark.parametrize("name", ["decoy-mnist", "decoy-mnist-half", "decoy-mnist-cdep"])
def test_determinism_and_seed_sensitivity(source, name):
    a, b, c = load(name, source, seed=5), load(name, source, seed=5), load(name, source, seed=6)
    for split in ("train", "val", "test"):
        sa, sb = a.split(split), b.split(split)
        for field in ("x", "y", "mask", "group", "has_mask"):
            assert torch.equal(getattr(sa, field), getattr(sb, field))
    assert not torch.equal(a.train.x, c.train.x) and not torch.equal(a.test.x, c.test.x)
    assert not torch.equal(a.train.x, a.val.x[: len(a.train)]) or len(a.val) != len(a.train)
    assert a.info["seed"] == 5 and a.info["paper"]


@pytest.mark.parametrize("name", ["decoy-mnist", "decoy-mnist-half", "decoy-mnist-cdep", "mnist"])
def test_global_rng_untouched(source, name):
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    load(name, source, seed=1)
    assert torch.equal(torch_state, torch.random.get_rng_state())
    after = np.random.get_state()
    assert np.array_equal(np_state[1], after[1]) and np_state[2] == after[2]


def test_limit_train_takes_a_prefix(source):
    full = load("decoy-mnist", source, seed=2)
    small = load("decoy-mnist", source, seed=2, limit_train=37)
    assert len(small.train) == 37 and torch.equal(small.train.x, full.train.x[:37])
    assert torch.equal(small.test.x, full.test.x) and len(small.val) == len(full.val)


def test_clean_mnist_oracle(source):
    d = load("mnist", source)
    images, y = source[1]["test"]
    assert np.allclose(d.test.x[:, 0].double().numpy(), images / 255.0, atol=1e-6, rtol=0)
    assert torch.equal(d.test.y, torch.from_numpy(y))
    assert not d.train.mask.any() and not d.train.has_mask.any()
    assert [len(d.train), len(d.val), len(d.test)] == [N_TRAIN - N_TRAIN // 6, N_TRAIN // 6, N_TEST]


def test_option_errors(source):
    with pytest.raises(UserError, match="unknown option.*colour"):
        load("decoy-mnist", source, colour="red")
    with pytest.raises(UserError, match="val="):
        load("decoy-mnist", source, val="test")
    with pytest.raises(UserError, match="groups="):
        load("decoy-mnist-half", source, groups="shade")
    with pytest.raises(UserError, match="limit_train"):
        load("decoy-mnist", source, limit_train=0)
    with pytest.raises(UserError, match="seed"):
        load("decoy-mnist", source, seed=-1)
    with pytest.raises(UserError, match="unknown option.*mask"):
        load("decoy-mnist", source, mask="corners")


@pytest.mark.parametrize("name", ["decoy-mnist", "decoy-mnist-half"])
def test_minority_redraws_that_fraction_of_training_shades_and_nothing_else(source, name):
    base = load(name, source)
    mixed = load(name, source, minority=0.3, groups="label_shade")
    assert torch.equal(load(name, source, minority=0.0).train.x, base.train.x)  # 0 = the papers' data exactly
    assert torch.equal(mixed.test.x, base.test.x)  # test untouched
    assert torch.equal(mixed.train.y, base.train.y) and torch.equal(mixed.train.mask, base.train.mask)
    shade = mixed.train.group % 10
    redrawn_off_label = (shade != mixed.train.y).double().mean().item()
    assert 0.3 * 0.9 - 0.06 < redrawn_off_label < 0.3 * 0.9 + 0.06  # a redraw keeps the label's shade 1 time in 10
    changed = (mixed.train.x != base.train.x).flatten(1).any(1)
    assert torch.equal(changed, shade != mixed.train.y)  # only the redrawn shortcut pixels differ
    assert (mixed.train.x != base.train.x)[~mixed.train.mask.bool()].sum() == 0
    with pytest.raises(UserError, match="minority must be a fraction"):
        load(name, source, minority=1.5)
