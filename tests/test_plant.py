"""plant:PATH (Heo et al.'s sugar-beet data, robust_mlx layout) on a miniature replica: split lists, labels
from the sample number, background masks, the training-mean fill of val/test backgrounds, the restricted
mask unpickler, streaming, and one-line errors naming the file."""

import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from replicas_isic_plant import write_masks, write_plant
from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data import plant
from rightreasons.data.csv_common import stratified_split
from rightreasons.data.streaming import StreamingImageDataset
from rightreasons.errors import DataError, UserError

SIZE = "12,16"  # the replica's own size: no resizing
FIELDS = ("x", "y", "mask", "group", "has_mask")


@pytest.fixture(scope="module")
def rep(tmp_path_factory):
    return write_plant(tmp_path_factory.mktemp("plant") / "plant")


@pytest.fixture
def own(tmp_path):
    """A fresh replica a test may damage."""
    return write_plant(tmp_path / "plant")


def stems(rep, part):
    return [rep.stem_of_mask(m[0].numpy()) for m in part.mask]


def pixels(rep, stem):
    """The replica image as the loader decodes it, float64 in [0, 1], (3, H, W)."""
    return np.asarray(Image.open(rep.images[stem]).convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255


def one_line(exc_info, *parts):
    message = str(exc_info.value)
    assert "\n" not in message
    for part in parts:
        assert str(part) in message, (part, message)


def test_lists_labels_groups_and_background_masks(rep):
    """Heo et al.: train_0/test_0 list the samples (stems or paths under rgb_data); samples 1-3 of a day are
    healthy (0), the others diseased (1); groups = labels; mask = 1 where the pickle says False (background)."""
    data = load_dataset(f"plant:{rep.root}", size=SIZE)
    got = {s: stems(rep, data.split(s)) for s in ("train", "val", "test")}
    assert got["test"] == rep.test  # in list order
    assert sorted(got["train"] + got["val"]) == sorted(rep.train) and not set(got["train"]) & set(got["val"])
    for s in ("train", "val", "test"):
        part = data.split(s)
        labels = [rep.label(stem) for stem in got[s]]
        assert part.y.tolist() == labels and part.group.tolist() == labels and bool(part.has_mask.all())
        for k, stem in enumerate(got[s]):
            for c in range(3):
                assert np.array_equal(part.mask[k, c].numpy(), ~rep.plant[stem])
        counts = data.info["group_counts"][s]
        assert [counts["healthy"], counts["diseased"]] == [labels.count(0), labels.count(1)]
    assert rep.label("1_Z3_0") == 0 and rep.label("2_Z4_0") == 1  # the rule the replica encodes
    assert data.info["classes"] == data.info["groups"] == ["healthy", "diseased"]
    assert plant.label_of("3_Z12_7", "x") == 1 and plant.label_of("10_Z1", "x") == 0


def test_val_is_a_seeded_per_class_fraction_of_train(rep):
    """Without val_0.txt, val_fraction of each train class is drawn by numpy default_rng(split_seed=42)."""
    data = load_dataset(f"plant:{rep.root}", size=SIZE, val_fraction=0.25)
    y = np.array([rep.label(s) for s in rep.train + rep.test])
    assign = np.array([-1] * len(rep.train) + [2] * len(rep.test))
    split = stratified_split(y, np.random.default_rng(42), 0.25, 0.0, assign)
    expected_val = [s for s, part in zip(rep.train + rep.test, split) if part == 1]
    assert stems(rep, data.val) == expected_val
    train_y = np.array([rep.label(s) for s in rep.train])
    assert torch.bincount(data.val.y, minlength=2).tolist() == [round(n * 0.25) for n in np.bincount(train_y)]
    other = load_dataset(f"plant:{rep.root}", size=SIZE, val_fraction=0.25, split_seed=1)
    assert stems(rep, other.val) != expected_val and len(other.val) == len(data.val)


def test_a_val_list_is_used_when_present(tmp_path):
    """rgb_dataset_splits/val_<k>.txt, when there, is the val split."""
    rep = write_plant(tmp_path / "p", val_list=True)
    data = load_dataset(f"plant:{rep.root}", size=SIZE)
    assert stems(rep, data.val) == rep.val and stems(rep, data.train) == rep.train
    assert "val_0.txt" in data.info["split"]


def test_val_and_test_backgrounds_are_the_training_mean_exactly(rep):
    """Heo et al. fill the background of validation and test images with the training split's per-channel
    mean; the mean is over every pixel of every training image (checked against a decoding of our own)."""
    data = load_dataset(f"plant:{rep.root}", size=SIZE)
    train = stems(rep, data.train)
    mean = np.stack([pixels(rep, s) for s in train]).mean(axis=(0, 2, 3)).astype(np.float32)
    assert data.info["train_mean"] == mean.tolist()
    for k, stem in enumerate(train):  # training images are untouched
        assert np.allclose(data.train.x[k].numpy(), pixels(rep, stem), atol=1e-6)
    for s in ("val", "test"):
        part = data.split(s)
        for k, stem in enumerate(stems(rep, part)):
            x, bg = part.x[k].numpy(), ~rep.plant[stem]
            for c in range(3):
                assert np.all(x[c][bg] == mean[c]), (s, stem, c)
            assert np.allclose(x[:, ~bg], pixels(rep, stem)[:, ~bg], atol=1e-6)  # the plant is kept


def test_default_size_is_224_with_nearest_masks(rep):
    """robust_mlx resizes to 224; masks by nearest neighbour, the fill still exactly where mask = 1."""
    data = load_dataset(f"plant:{rep.root}")
    assert data.input_shape == (3, 224, 224)
    mean = np.array(data.info["train_mean"], dtype=np.float32)
    for k, stem in enumerate(rep.test):  # the test split keeps the list's order
        m = data.test.mask[k, 0].numpy()
        near = Image.fromarray((~rep.plant[stem]).astype(np.uint8)).resize((224, 224), Image.NEAREST)
        assert np.array_equal(m, np.asarray(near).astype(bool))
        assert np.all(data.test.x[k].numpy()[:, m] == mean[:, None])


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_gives_the_in_memory_tensors(rep, workers):
    """stream=true (decoded per batch, in 0 or 2 processes): the same inputs, fill and normalisation."""
    options = {"size": "10,8", "normalize": "imagenet"}
    memory = load_dataset(f"plant:{rep.root}", **options)
    stream = load_dataset(f"plant:{rep.root}", **options, stream=True, workers=workers)
    assert stream.info["train_mean"] == memory.info["train_mean"] and stream.info["sizes"] == memory.info["sizes"]
    for s in ("train", "val", "test"):
        m, st = memory.split(s), stream.split(s)
        assert isinstance(st, StreamingImageDataset) and st.input_range == m.input_range
        index = torch.arange(len(m))
        for got in (st.batch(index), *st.iter_batches([index])):
            for f in FIELDS:
                assert torch.equal(getattr(got, f), getattr(m.batch(index), f)), (s, f)


def test_the_training_mean_is_cached_with_the_images(own, tmp_path, monkeypatch):
    """With cache=DIR, the one pass over the training images at load is not repeated by a later load."""
    cache = tmp_path / "cache"
    first = load_dataset(f"plant:{own.root}", size=SIZE, stream=True, cache=str(cache))
    before = first.test.batch(torch.arange(len(first.test)))  # the test images are cached by their first batch
    decoded = []
    real = plant.read_image
    monkeypatch.setattr(plant, "read_image", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
    again = load_dataset(f"plant:{own.root}", size=SIZE, stream=True, cache=str(cache))
    assert decoded == [] and again.info["train_mean"] == first.info["train_mean"]
    b = again.test.batch(torch.arange(len(again.test)))
    assert decoded == [] and torch.equal(b.x, before.x) and torch.equal(b.mask, before.mask)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_of_a_dict_of_bool_arrays_loads(tmp_path, protocol):
    """The restricted unpickler accepts what pickle.dump of {stem: bool array} writes, in any protocol."""
    masks = {"1_Z1_0": np.eye(3, dtype=bool), "2_Z9_1": np.zeros((2, 5), dtype=bool)}
    path = write_masks(tmp_path, masks, protocol)
    got = plant.load_masks(path)
    assert sorted(got) == sorted(masks) and all(np.array_equal(got[k], masks[k]) for k in masks)
    assert all(got[k].dtype == np.bool_ for k in got)


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_pickle_is_refused_without_running_anything(own, tmp_path):
    """A pickle naming any global other than numpy array reconstruction (here os.system) is a one-line
    DataError naming the pickle, raised before the global is looked up: the command never runs."""
    marker = tmp_path / "ran"
    path = write_masks(own.root, {**own.plant, own.train[0]: _Hostile(marker)})
    with pytest.raises(DataError) as e:
        load_dataset(f"plant:{own.root}", size=SIZE)
    one_line(e, path, "system", "refuses")
    assert not marker.exists()
    for module, name in (("builtins", "eval"), ("numpy", "load"), ("copyreg", "_reconstructor")):
        evil = f"c{module}\n{name}\n(S'1'\ntR.".encode()
        path.write_bytes(evil)
        with pytest.raises(DataError) as e:
            plant.load_masks(path)
        one_line(e, path, f"{module}.{name}")


def test_bad_masks_are_one_line_errors_naming_the_pickle_and_stem(own):
    """Each listed stem needs a bool (H, W) mask of its image's size in the pickle."""
    stem = own.train[1]
    for value, words in ((own.plant[stem].astype(np.uint8), ("uint8", "bool")), (None, ("no mask",)),
                         (np.zeros((5, 5), bool), ("5x5", "12x16"))):
        masks = dict(own.plant)
        if value is None:
            del masks[stem]
        else:
            masks[stem] = value
        path = write_masks(own.root, masks)
        with pytest.raises(DataError) as e:
            load_dataset(f"plant:{own.root}", size=SIZE)
        one_line(e, stem, *words)
        assert str(path) in str(e.value)
    path.write_bytes(pickle.dumps(dict(own.plant))[:40])
    with pytest.raises(DataError) as e:
        load_dataset(f"plant:{own.root}", size=SIZE)
    one_line(e, path, "cannot unpickle")
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError) as e:
        load_dataset(f"plant:{own.root}", size=SIZE)
    one_line(e, path, "dict")


@pytest.mark.parametrize("stream", [False, True])
def test_truncated_image_is_a_one_line_error_naming_it(own, stream):
    """An unreadable image fails in one line naming its file and its list line (streaming: at the latest at
    its batch; a training image already at load, by the pass computing the mean)."""
    victim = own.images[own.test[0]]
    victim.write_bytes(victim.read_bytes()[:150])
    with pytest.raises(DataError) as e:
        data = load_dataset(f"plant:{own.root}", size=SIZE, stream=stream)
        data.test.batch(torch.arange(len(data.test)))
    one_line(e, victim, "test_0.txt line 1", "cannot read image")


def test_layout_and_list_errors(own):
    """Missing folders and files, entries that are not sample ids, outside rgb_data, listed twice or missing."""
    lists = own.root / "rgb_dataset_splits"
    with pytest.raises(DataError) as e:
        load_dataset(f"plant:{own.root}", fold=1)
    one_line(e, lists / "train_1.txt", "no such file")
    train = (lists / "train_0.txt").read_text()
    for text, words in ((train + "1_Z0_0\n", ("1_Z0_0", "sample id")), (train + "../x.JPEG\n", ("../x.JPEG",)),
                        (train + own.test[0] + "\n", (own.test[0], "already listed", "test_0.txt line")),
                        (train + "1_Z77_0\n", ("no image", own.root / "rgb_data" / "1" / "1_Z77_0.JPEG")),
                        ("\n\n", ("no entries",))):
        (lists / "train_0.txt").write_text(text)
        with pytest.raises(DataError) as e:
            load_dataset(f"plant:{own.root}", size=SIZE)
        one_line(e, *words)
    (lists / "train_0.txt").write_text(train)
    with pytest.raises(DataError) as e:
        load_dataset(f"plant:{own.root}", size=SIZE, val_fraction=0.0)
    one_line(e, "val split", "val_fraction")
    shutil.rmtree(own.root / "rgb_data")
    with pytest.raises(DataError) as e:
        load_dataset(f"plant:{own.root}")
    one_line(e, own.root / "rgb_data", "no such folder")
    for bad, word in (({"fold": -1}, "fold"), ({"val_fraction": 1.5}, "val_fraction"), ({"colour": 1}, "colour"),
                      ({"cache": "x"}, "stream=true")):
        with pytest.raises(UserError) as e:
            load_dataset(f"plant:{own.root}", **bad)
        one_line(e, word)


def test_cli_trains_on_plant(rep, tmp_path, monkeypatch, capsys):
    """``rightreasons train --data plant:PATH`` reaches the loader."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    assert main(["train", "--data", f"plant:{rep.root}", "--data-option", "size=8", "--method", "rrr",
                 "--model", "mlp", "--epochs", "1", "--batch-size", "8", "--out", str(out), "--quiet"]) == 0
    assert "rrr on plant:" in capsys.readouterr().out
