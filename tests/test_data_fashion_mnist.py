"""Fashion-MNIST and Decoy-FMNIST: synthetic IDX folders (source=DIR) and the files Debian installs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import rightreasons
from data_fixtures import gz, idx_bytes, make_idx_dir
from helpers import chi2_independence
from rightreasons.data import fashion_mnist as fm
from rightreasons.errors import DataError, UserError

N_TRAIN, N_TEST = 48, 24  # val = the last 8 training images
HINT = "apt-get install dataset-fashion-mnist"


@pytest.fixture(params=[False, True], ids=["raw", "gz"])
def small(tmp_path, request):
    directory, train, test = make_idx_dir(tmp_path / "idx", N_TRAIN, N_TEST, seed=7, gz=request.param)
    return directory, train, test


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """Enough examples for the label/shade statistics (noise images, balanced labels)."""
    directory, (tr_x, tr_y), (te_x, te_y) = make_idx_dir(tmp_path_factory.mktemp("idx"), 600, 1000, seed=11,
                                                         gz=True)
    n_val = 600 // 6
    raw = {"train": (tr_x[:-n_val], tr_y[:-n_val]), "val": (tr_x[-n_val:], tr_y[-n_val:]), "test": (te_x, te_y)}
    return str(directory), raw


def shade_values(ds) -> np.ndarray:
    """The one byte value painted into each example's masked pixels."""
    x = ds.x[:, 0].double().numpy() * 255
    m = ds.mask[:, 0].numpy()
    v = x[m].reshape(len(m), -1)
    assert np.allclose(v, v[:, :1], atol=1e-4)
    return np.round(v[:, 0]).astype(int)


def assert_swatch_masks(ds) -> None:
    """Every mask is exactly one 4x4 block in one of the four corners."""
    for m in ds.mask[:, 0].numpy():
        rows, cols = np.nonzero(m)
        assert len(rows) == 16
        r0, c0 = rows.min(), cols.min()
        assert r0 in (0, 24) and c0 in (0, 24) and m[r0:r0 + 4, c0:c0 + 4].all()


def test_registered_with_decoy_mnist_defaults():
    from rightreasons.data import default_batch_size, default_epochs, default_model

    for name in ("fashion-mnist", "decoy-fmnist"):
        assert name in rightreasons.data.DATASETS
    for lookup in (default_model, default_epochs, default_batch_size):
        assert lookup("decoy-fmnist") == lookup("decoy-mnist")
        assert lookup("fashion-mnist") == lookup("mnist")


# ------------------------------------------------------------------------------------ clean, synthetic IDX


def test_clean_shapes_splits_values_labels_masks(small):
    directory, (tr_x, tr_y), (te_x, te_y) = small
    d = rightreasons.load_dataset("fashion-mnist", source=str(directory))
    n_val = N_TRAIN // 6
    assert [len(d.train), len(d.val), len(d.test)] == [N_TRAIN - n_val, n_val, N_TEST]
    expected = {"train": (tr_x[:-n_val], tr_y[:-n_val]), "val": (tr_x[-n_val:], tr_y[-n_val:]), "test": (te_x, te_y)}
    for split, (images, y) in expected.items():
        ds = d.split(split)
        assert ds.x.dtype == torch.float32 and ds.x.shape == (len(y), 1, 28, 28)
        assert float(ds.x.min()) >= 0 and float(ds.x.max()) <= 1
        assert np.allclose(ds.x[:, 0].double().numpy(), images / 255.0, atol=1e-6, rtol=0)
        assert torch.equal(ds.y, torch.from_numpy(y)) and ds.num_classes == 10
        assert not ds.mask.any() and not ds.has_mask.any()
    assert d.info["dataset"] == "fashion-mnist" and d.info["source"] == str(directory)
    small_d = rightreasons.load_dataset("fashion-mnist", source=str(directory), limit_train=5)
    assert len(small_d.train) == 5 and torch.equal(small_d.train.x, d.train.x[:5])


def test_clean_option_errors(small):
    directory = str(small[0])
    with pytest.raises(UserError, match="fashion-mnist: unknown option.*val"):
        rightreasons.load_dataset("fashion-mnist", source=directory, val="train")
    with pytest.raises(UserError, match="limit_train"):
        rightreasons.load_dataset("fashion-mnist", source=directory, limit_train=0)


# ------------------------------------------------------------------------------------ decoy-fmnist


def test_decoy_train_swatch_is_255_minus_25y_and_the_mask(medium):
    source, raw = medium
    d = rightreasons.load_dataset("decoy-fmnist", source=source)
    for split in ("train", "val"):  # val="train" (the default): decorated like train
        images, y = raw[split]
        ds = d.split(split)
        assert ds.x.dtype == torch.float32 and ds.x.shape == (len(y), 1, 28, 28) and ds.mask.dtype == torch.bool
        assert float(ds.x.min()) >= 0 and float(ds.x.max()) <= 1 and bool(ds.has_mask.all())
        assert torch.equal(ds.y, torch.from_numpy(y)) and ds.num_classes == 10
        assert_swatch_masks(ds)
        assert np.array_equal(shade_values(ds), 255 - 25 * y)  # on every example
        outside = ~ds.mask[:, 0].numpy()
        assert np.allclose(ds.x[:, 0].double().numpy()[outside], images[outside] / 255.0, atol=1e-6, rtol=0)
    assert len({tuple(np.argwhere(m)[0]) for m in d.train.mask[:, 0].numpy()}) == 4  # all four corners
    assert "Friedrich" in d.info["paper"] and d.info["dataset"] == "decoy-fmnist"


def test_decoy_test_shade_is_independent_of_the_label(medium):
    source, raw = medium
    d = rightreasons.load_dataset("decoy-fmnist", source=source)
    y = raw["test"][1]
    assert_swatch_masks(d.test)
    shades = shade_values(d.test)
    assert np.all((255 - shades) % 25 == 0)
    digits = (255 - shades) // 25
    assert digits.min() >= 0 and digits.max() <= 9 and len(np.unique(digits)) == 10
    assert abs(np.mean(digits == y) - 0.1) < 0.05
    assert chi2_independence(y, digits) < 150  # chi^2(81): mean 81, sd 12.7
    train_digits = (255 - shade_values(d.train)) // 25
    assert chi2_independence(raw["train"][1], train_digits) > 1500  # the statistic does see dependence


def test_decoy_deterministic_for_a_seed_and_options_like_decoy_mnist(medium):
    source, raw = medium
    a, b = (rightreasons.load_dataset("decoy-fmnist", seed=4, source=source) for _ in range(2))
    c = rightreasons.load_dataset("decoy-fmnist", seed=5, source=source)
    for split in ("train", "val", "test"):
        for field in ("x", "y", "mask", "group", "has_mask"):
            assert torch.equal(getattr(a.split(split), field), getattr(b.split(split), field))
    assert not torch.equal(a.train.x, c.train.x) and not torch.equal(a.test.x, c.test.x)
    decor = rightreasons.load_dataset("decoy-fmnist", seed=4, source=source, val="decorrelated",
                                      groups="label_shade", minority=0.2, limit_train=50)
    assert len(decor.train) == 50 and decor.train.num_groups == 100
    assert np.mean((255 - shade_values(decor.val)) // 25 == raw["val"][1]) < 0.4
    assert torch.equal(decor.test.x, a.test.x)
    with pytest.raises(UserError, match="decoy-fmnist: unknown option.*mask"):
        rightreasons.load_dataset("decoy-fmnist", source=source, mask="corners")


# ------------------------------------------------------------------------------------ missing and corrupt files


def _one_line_error(call, *fragments):
    with pytest.raises(DataError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


@pytest.mark.parametrize("name", ["fashion-mnist", "decoy-fmnist"])
def test_missing_folder_and_file_say_how_to_get_them(tmp_path, monkeypatch, name):
    absent = tmp_path / "not-installed"
    monkeypatch.setattr(fm, "DEFAULT_DIR", absent)
    _one_line_error(lambda: rightreasons.load_dataset(name), str(absent), HINT, "source=DIR")
    directory, _, _ = make_idx_dir(tmp_path / "idx", N_TRAIN, N_TEST, gz=True)
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    _one_line_error(lambda: rightreasons.load_dataset(name, source=str(directory)),
                    str(directory), "t10k-labels-idx1-ubyte", HINT, "source=DIR")


@pytest.mark.parametrize("use_gz", [False, True], ids=["raw", "gz"])
def test_truncated_file_is_a_one_line_error_naming_it(tmp_path, use_gz):
    directory, (tr_x, _), _ = make_idx_dir(tmp_path / "idx", N_TRAIN, N_TEST, gz=use_gz)
    data = idx_bytes(tr_x)
    name = "train-images-idx3-ubyte" + (".gz" if use_gz else "")
    (directory / name).write_bytes(gz(data)[:-20] if use_gz else data[:-100])
    for dataset in ("fashion-mnist", "decoy-fmnist"):
        _one_line_error(lambda dataset=dataset: rightreasons.load_dataset(dataset, source=str(directory)),
                        str(directory / name))


# ------------------------------------------------------------------------------------ the installed files


def test_real_fashion_mnist_installed_files():
    if not fm.DEFAULT_DIR.is_dir():
        message = (f"Fashion-MNIST not installed at {fm.DEFAULT_DIR} "
                   "(Debian/Ubuntu: apt-get install dataset-fashion-mnist)")
        if os.environ.get("CI"):  # .ci/run installs the package: never let CI go green without the real files
            pytest.fail(message)
        pytest.skip(message)
    data = fm.load_fashion_mnist()
    (tr_x, tr_y), (_, va_y), (te_x, te_y) = data["train"], data["val"], data["test"]
    assert (len(tr_y), len(va_y), len(te_y)) == (50_000, 10_000, 10_000)
    assert tr_x.shape == (50_000, 28, 28) and te_x.shape == (10_000, 28, 28) and tr_x.dtype == np.uint8
    assert np.array_equal(np.bincount(np.concatenate([tr_y, va_y]), minlength=10), np.full(10, 6000))
    assert np.array_equal(np.bincount(te_y, minlength=10), np.full(10, 1000))
    assert int(tr_x.max()) == 255 and int(tr_x.min()) == 0
    d = rightreasons.load_dataset("fashion-mnist", limit_train=1000)
    assert d.test.x.shape == (10_000, 1, 28, 28) and d.test.x.dtype == torch.float32
    assert 0 <= float(d.test.x.min()) and float(d.test.x.max()) == 1.0 and d.test.num_classes == 10
    assert not d.test.has_mask.any() and d.info["source"] == str(fm.DEFAULT_DIR)
