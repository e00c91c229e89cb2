"""folder:PATH with stream=true: batches equal to the in-memory path's, the same for any number of workers,
the on-disk cache (read back, corrupt files rebuilt), decoding errors in one line naming the file, and the
option errors."""

import shutil

import numpy as np
import pytest
import torch

from own_data_fixtures import png_bytes
from rightreasons import load_dataset
from rightreasons.data import image_files
from rightreasons.data.examples import write_patches
from rightreasons.data.streaming import StreamingImageDataset
from rightreasons.errors import DataError, UserError
from rightreasons.models import create_model
from rightreasons.report import saliency

FIELDS = ("x", "y", "mask", "group", "has_mask")
OPTIONS = [{"size": 12, "normalize": "imagenet"},
           {"size": "10,14", "channels": 1, "normalize": "0.5,0.25", "mask_invert": True}]


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    """300 PNG images (and their masks) in a folder."""
    return write_patches(tmp_path_factory.mktemp("stream") / "patches", seed=5, size=16, n_train=180, n_val=40,
                         n_test=80)


@pytest.fixture
def own_patches(patches, tmp_path):
    """A copy of the folder that a test may damage."""
    return shutil.copytree(patches, tmp_path / "patches")


def batch_list(dataset, batch_size=32, seed=7):
    return list(dataset.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)))


def assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for ba, bb in zip(a, b):
        for f in FIELDS:
            ta, tb = getattr(ba, f), getattr(bb, f)
            assert ta.dtype == tb.dtype and ta.shape == tb.shape and torch.equal(ta, tb), f


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("options", OPTIONS, ids=["rgb-imagenet", "gray-invert"])
def test_streaming_batches_equal_in_memory_batches(patches, options, workers):
    memory = load_dataset(f"folder:{patches}", **options)
    stream = load_dataset(f"folder:{patches}", **options, stream=True, workers=workers)
    assert stream.info["sizes"] == memory.info["sizes"] and stream.input_shape == memory.input_shape
    assert stream.info["image_size"] == memory.info["image_size"] and stream.info["stream"] is True
    rng_before = torch.get_rng_state()
    for split in ("train", "val", "test"):
        m, s = memory.split(split), stream.split(split)
        assert isinstance(s, StreamingImageDataset) and s.workers == workers and m.workers == 0
        assert (len(s), s.num_classes, s.num_groups, s.name, s.input_range) == \
            (len(m), m.num_classes, m.num_groups, m.name, m.input_range)
        for f in ("y", "group", "has_mask"):
            assert torch.equal(getattr(s, f), getattr(m, f))
        batches = batch_list(s)
        assert_same_batches(batch_list(m), batches)
        assert batches[0].mask.shape == batches[0].x.shape and batches[0].mask.dtype == torch.float32
        # batch(), iter_batches() and subset() agree with the in-memory dataset too
        index = torch.tensor([3, 0, len(m) - 1])
        assert_same_batches([m.batch(index)], [s.batch(index)])
        assert_same_batches([m.batch(index)], list(s.iter_batches([index])))
        assert_same_batches(list(m.subset(index).batches(2)), list(s.subset(index).batches(2)))
    assert torch.equal(rng_before, torch.get_rng_state())  # the global RNG is not drawn from
    # the masks mark something (the fixture has stickers) and are the same in every channel
    b = stream.train.batch(torch.arange(len(stream.train)))
    assert b.mask.any() and torch.equal(b.mask, b.mask[:, :1].expand_as(b.mask))


def test_same_seed_same_batches_with_0_and_2_workers(patches):
    runs = {}
    for workers in (0, 2):
        data = load_dataset(f"folder:{patches}", size=12, stream=True, workers=workers)
        gen = torch.Generator().manual_seed(11)
        # two epochs from one generator, as training draws them; then the generator's state
        epochs = [list(data.train.iter_batches(data.train.index_batches(16, shuffle=True, generator=gen)))
                  for _ in range(2)]
        runs[workers] = (epochs, gen.get_state())
    for e0, e2 in zip(runs[0][0], runs[2][0]):
        assert_same_batches(e0, e2)
    assert torch.equal(runs[0][1], runs[2][1])
    assert not all(torch.equal(a.y, b.y) for a, b in zip(*runs[0][0]))  # the two epochs are shuffled differently


def test_a_second_pass_while_one_is_under_way_and_an_abandoned_pass(patches):
    data = load_dataset(f"folder:{patches}", size=12, stream=True, workers=2).val
    outer = data.batches(8)
    first = next(outer)
    inner = list(data.batches(8))  # uses a loader of its own
    rest = [first, *outer]
    assert_same_batches(rest, inner)
    abandoned = data.batches(8)
    next(abandoned)
    del abandoned
    assert_same_batches(list(data.batches(8)), inner)  # the persistent workers are reused afresh


def test_the_splits_of_a_folder_share_one_set_of_workers(patches):
    import multiprocessing

    before = set(multiprocessing.active_children())
    data = load_dataset(f"folder:{patches}", size=12, stream=True, workers=2)
    memory = load_dataset(f"folder:{patches}", size=12)
    for split in ("train", "val", "test", "train"):
        assert_same_batches(list(data.split(split).batches(8)), list(memory.split(split).batches(8)))
        assert len(set(multiprocessing.active_children()) - before) == 2  # not two per split
    subset = data.train.subset(torch.arange(5))
    assert_same_batches(list(subset.batches(4)), list(memory.train.subset(torch.arange(5)).batches(4)))
    assert len(set(multiprocessing.active_children()) - before) == 2


def test_cache_is_read_back_and_corrupt_files_are_rebuilt(own_patches, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "deep"
    cache.parent.mkdir()
    mine = cache.parent / "mine.txt"
    mine.write_text("the user's")
    decoded = []
    real_read = image_files.read_image
    monkeypatch.setattr(image_files, "read_image",
                        lambda path, *a, **k: decoded.append(path) or real_read(path, *a, **k))
    options = {"size": 12, "normalize": "imagenet", "stream": True, "cache": str(cache)}
    data = load_dataset(f"folder:{own_patches}", **options)
    assert decoded == [] and cache.is_dir()  # loading decodes nothing
    first = batch_list(data.train)
    files = sorted(cache.glob("*.npy"))
    n_images = len(data.train)
    n_masks = int(data.train.has_mask.sum())
    assert len(files) == n_images and len(decoded) == n_images + n_masks
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    # later epochs and runs read the cache: nothing decoded, the same numbers as without a cache
    decoded.clear()
    assert_same_batches(first, batch_list(data.train))
    assert_same_batches(first, batch_list(load_dataset(f"folder:{own_patches}", **options).train))
    assert decoded == [] and {p: p.stat().st_mtime_ns for p in files} == mtimes
    no_cache = {k: v for k, v in options.items() if k != "cache"}
    assert_same_batches(first, batch_list(load_dataset(f"folder:{own_patches}", **no_cache).train))
    # a flipped pixel byte (checksum), a truncated file and an array of another shape are rebuilt
    flipped, truncated, reshaped = files[:3]
    raw = bytearray(flipped.read_bytes())
    raw[-10] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    truncated.write_bytes(truncated.read_bytes()[:100])
    np.save(reshaped, np.zeros(7, dtype=np.uint8))
    decoded.clear()
    assert_same_batches(first, batch_list(data.train))
    assert 3 <= len(decoded) <= 6  # the three examples (and their masks), nothing else
    assert len(sorted(cache.glob("*.npy"))) == n_images
    decoded.clear()
    assert_same_batches(first, batch_list(data.train))
    assert decoded == []
    # a changed source image is decoded again (the key holds its size and modification time)
    (own_patches / "images" / "0000.png").write_bytes(png_bytes(np.zeros((16, 16, 3))))
    index = torch.arange(len(data.train))
    fresh = load_dataset(f"folder:{own_patches}", **no_cache).train.batch(index)
    assert_same_batches([fresh], [data.train.batch(index)])
    # nothing of the user's is touched, no temporary files are left
    assert mine.read_text() == "the user's" and not list(cache.glob(".*"))


def test_cache_with_workers(patches, tmp_path):
    options = {"size": 12, "stream": True, "cache": str(tmp_path / "c")}
    expected = batch_list(load_dataset(f"folder:{patches}", size=12).test)
    data = load_dataset(f"folder:{patches}", **options, workers=2)
    assert_same_batches(expected, batch_list(data.test))
    files = sorted((tmp_path / "c").glob("*.npy"))
    mtimes = [p.stat().st_mtime_ns for p in files]
    assert len(files) == len(data.test)
    assert_same_batches(expected, batch_list(data.test))
    assert [p.stat().st_mtime_ns for p in files] == mtimes


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_image_fails_in_one_line_naming_it_when_its_batch_is_decoded(own_patches, workers):
    image = own_patches / "images" / "0190.png"  # a validation example
    image.write_bytes(image.read_bytes()[:60])
    with pytest.raises(DataError) as in_memory:
        load_dataset(f"folder:{own_patches}", size=12)
    data = load_dataset(f"folder:{own_patches}", size=12, stream=True, workers=workers)  # loading is cheap
    assert len(batch_list(data.train)) > 0  # the other splits decode
    for _ in range(2):  # and again: the workers survive an error
        with pytest.raises(DataError) as streamed:
            batch_list(data.val)
        message = str(streamed.value)
        assert message == str(in_memory.value) and "\n" not in message
        assert str(image) in message and "truncated" in message and "DataLoader" not in message
    with pytest.raises(DataError, match="0190.png"):
        data.val.batch(torch.arange(len(data.val)))


def test_mask_errors_are_the_in_memory_ones(own_patches):
    row = next(line for line in (own_patches / "labels.csv").read_text().splitlines()[1:]
               if line.split(",")[3] == "test" and line.split(",")[4])
    mask = own_patches / row.split(",")[4]
    mask.write_bytes(png_bytes(np.full((5, 5), 255)))
    with pytest.raises(DataError) as in_memory:
        load_dataset(f"folder:{own_patches}", size=12)
    data = load_dataset(f"folder:{own_patches}", size=12, stream=True)
    with pytest.raises(DataError) as streamed:
        batch_list(data.test)
    assert str(streamed.value) == str(in_memory.value) and "mask is 5x5 but image is 16x16" in str(streamed.value)


def test_missing_file_is_found_at_load_time(own_patches):
    (own_patches / "images" / "0007.png").unlink()
    with pytest.raises(DataError, match=r"0007\.png \(labels.csv row 9\): no such file"):
        load_dataset(f"folder:{own_patches}", size=12, stream=True)


@pytest.mark.parametrize("options, option", [
    ({"stream": True}, "size"),
    ({"workers": 2}, "workers"),
    ({"stream": True, "size": 8, "workers": -1}, "workers"),
    ({"stream": True, "size": 8, "workers": "two"}, "workers"),
    ({"cache": "CACHE"}, "cache"),
    ({"stream": True, "size": 8, "cache": "FILE"}, "cache"),
    ({"stream": "sometimes", "size": 8}, "stream"),
])
def test_option_errors_are_one_line_naming_the_option(patches, tmp_path, options, option):
    (tmp_path / "FILE").write_text("not a directory")
    options = {k: str(tmp_path / v) if k == "cache" else v for k, v in options.items()}
    with pytest.raises(UserError) as err:
        load_dataset(f"folder:{patches}", **options)
    message = str(err.value)
    assert "\n" not in message and f"option {option}" in message and message.startswith(f"folder:{patches}")
    assert not (tmp_path / "CACHE").exists()


def test_streaming_dataset_has_no_x_and_saliency_grids_read_batches(patches):
    memory = load_dataset(f"folder:{patches}", size=12).test
    stream = load_dataset(f"folder:{patches}", size=12, stream=True).test
    with pytest.raises(AttributeError, match="no x in memory"):
        stream.x  # noqa: B018
    torch.manual_seed(0)
    model = create_model("mlp", memory.input_shape, memory.num_classes)
    assert np.array_equal(saliency.explain_grid(model, memory, n=4, kinds=["gradient"]),
                          saliency.explain_grid(model, stream, n=4, kinds=["gradient"]))


# -- training on a streamed folder ------------------------------------------------------------------------
def _trained(data, config, **kwargs):
    from rightreasons.methods import create_method
    from rightreasons.train import fit
    from rightreasons.train.run import build_model

    model = build_model(config, data.input_shape, data.num_classes)
    result = fit(model, create_method(config.method), data, config, **kwargs)
    return model, result


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("workers", [0, 2])
def test_training_on_a_streamed_folder_equals_training_in_memory(patches, workers):
    from rightreasons.train import TrainConfig

    config = TrainConfig(data="folder", model="cnn", method="rrr", epochs=2, batch_size=32,
                         augment={"preset": "flip"})
    memory, _ = _trained(load_dataset(f"folder:{patches}", size=16), config)
    stream, _ = _trained(load_dataset(f"folder:{patches}", size=16, stream=True, workers=workers), config)
    assert torch.equal(_params(memory), _params(stream))


def test_a_resumed_streamed_run_with_workers_equals_an_uninterrupted_one(patches, tmp_path):
    from rightreasons.train import TrainConfig

    class Interrupt(Exception):
        pass

    def stop(line):
        if line.startswith("epoch 1/"):
            raise Interrupt(line)

    config = TrainConfig(data="folder", model="cnn", method="rrr", epochs=2, batch_size=32)
    data = load_dataset(f"folder:{patches}", size=16, stream=True, workers=2)
    whole, straight = _trained(data, config)
    with pytest.raises(Interrupt):
        _trained(data, config, checkpoint_dir=tmp_path, log=stop)
    resumed, history = _trained(data, config, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(_params(resumed), _params(whole))
    assert [h["loss"] for h in history.history] == [h["loss"] for h in straight.history]


def test_the_train_and_evaluate_commands_run_on_a_streamed_folder(patches, tmp_path):
    import json

    from rightreasons.cli import main

    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["train", "--data", f"folder:{patches}", "--data-option", "stream=true", "--data-option", "size=16",
            "--data-option", "workers=2", "--data-option", f"cache={cache}", "--model", "cnn", "--method", "rrr",
            "--epochs", "1", "--threads", "1", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and metrics["test"]["masked_pgd_accuracy"] is not None
    assert any(cache.iterdir())  # the decoded images were cached
    assert main(["evaluate", str(out), "--device", "cpu", "--json"]) == 0


def test_metric_batches_are_capped_by_the_size_of_an_example():
    from rightreasons.data.dataset import MAX_BATCH_VALUES, ExplanationDataset, capped_batch_size

    small = ExplanationDataset(torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]))
    big = ExplanationDataset(torch.zeros(2, 3, 224, 224), torch.tensor([0, 1]))
    assert capped_batch_size(small, 1000) == 1000  # MNIST-sized inputs keep the default
    assert capped_batch_size(big, 1000) == MAX_BATCH_VALUES // (3 * 224 * 224) == 27
    assert capped_batch_size(big, 10) == 10


def test_the_workers_flag_is_the_data_option(patches, tmp_path):
    import json

    from rightreasons.cli import main

    out = tmp_path / "run"
    argv = ["train", "--data", f"folder:{patches}", "--data-option", "stream=true", "--data-option", "size=16",
            "--workers", "1", "--model", "cnn", "--method", "erm", "--epochs", "1", "--threads", "1", "--quiet",
            "--out", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["data_options"]["workers"] == 1
    # without stream the option is refused in one line, before anything is written
    assert main(["train", "--data", f"folder:{patches}", "--workers", "2", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()
