"""isic:PATH: both published layouts (Rieger et al.'s CDEP and Heo et al.'s robust_mlx) on miniature
replicas: groups, labels, patch masks (channel 0 > 100, CDEP's dilation), the papers' splits, streaming,
and one-line errors naming the file or folder."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from replicas_isic_plant import DECOY_AT, ISIC_SIZE, PATCH_AT, encode, isic_ids, write_isic
from rightreasons import load_dataset
from rightreasons.cli import main
from rightreasons.data import isic
from rightreasons.data.streaming import StreamingImageDataset
from rightreasons.errors import DataError, UserError

SIZE = "20,24"  # the replica's own size: no resizing
FIELDS = ("x", "y", "mask", "group", "has_mask")


@pytest.fixture(scope="module")
def rieger(tmp_path_factory):
    return write_isic(tmp_path_factory.mktemp("isic") / "rieger", "rieger")


@pytest.fixture(scope="module")
def heo(tmp_path_factory):
    return write_isic(tmp_path_factory.mktemp("isic") / "heo", "heo")


@pytest.fixture
def own(tmp_path):
    """A fresh Rieger-layout replica a test may damage."""
    return write_isic(tmp_path / "isic", "rieger")


def split_ids(data):
    return {s: isic_ids(data.split(s).x) for s in ("train", "val", "test")}


@pytest.mark.parametrize("layout", ["rieger", "heo"])
def test_groups_labels_and_patch_masks_are_what_the_replica_holds(layout, rieger, heo):
    """Groups 0 benign / 1 benign with patch / 2 malignant, label 1 only for malignant (Heo et al.); the mask
    is the segmentation's pixels with channel 0 > 100 (CDEP and Heo et al.), the decoy pixel with channel
    0 == 100 is not masked, and every example is annotated (an empty mask on images without a patch)."""
    rep = rieger if layout == "rieger" else heo
    data = load_dataset(f"isic:{rep.root}", size=SIZE)
    assert data.info["layout"] == layout and data.info["groups"] == isic.GROUPS
    assert data.info["classes"] == ["benign", "malignant"] and data.input_shape == (3, *ISIC_SIZE)
    seen = []
    for split in ("train", "val", "test"):
        part = data.split(split)
        ids = isic_ids(part.x)
        seen += ids
        for k, i in enumerate(ids):
            _, _, label, group = rep.items[i]
            assert (int(part.y[k]), int(part.group[k])) == (label, group)
            expected = rep.masks.get(i, np.zeros(ISIC_SIZE, dtype=bool))
            for c in range(3):
                assert np.array_equal(part.mask[k, c].numpy(), expected)
        assert bool(part.has_mask.all())
        counts = data.info["group_counts"][split]
        assert [counts[g] for g in isic.GROUPS] == torch.bincount(part.group, minlength=3).tolist()
    assert sorted(seen) == sorted(rep.items)  # every image exactly once
    assert sum(data.info["group_counts"][s]["benign/patch"] for s in ("train", "val", "test")) == len(rep.masks) == 4
    assert data.info["with_patch"] == 4 and data.info["skipped_files"] == 1  # notes.txt in processed/cancer
    some_patch = next(iter(rep.masks.values()))
    assert some_patch[PATCH_AT] and not some_patch[DECOY_AT]


def test_heo_split_is_default_rng_42_permutation_of_the_sorted_list_at_75_10_15(heo):
    """Heo et al. (robust_mlx): files listed folder by folder (no_cancer, patch_no_cancer_again, cancer), each
    sorted; rng = default_rng(42); perm = rng.permutation(N); int(0.75 N) train, int(0.1 N) val, rest test."""
    data = load_dataset(f"isic:{heo.root}", size=SIZE)
    n = len(heo.order)
    perm = np.random.default_rng(42).permutation(n)
    n_train, n_val = int(0.75 * n), int(0.1 * n)
    expected = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    got = split_ids(data)
    for s in ("train", "val", "test"):
        assert sorted(got[s]) == sorted(heo.order[j] for j in expected[s])
        assert got[s] == [heo.order[j] for j in sorted(expected[s])]  # list order within the split
    assert data.info["sizes"] == {"train": 10, "val": 1, "test": 3} and data.info["split_seed"] == 42
    other = load_dataset(f"isic:{heo.root}", size=SIZE, split_seed=1)
    assert split_ids(other) != got
    assert split_ids(load_dataset(f"isic:{heo.root}", seed=5, size=SIZE)) == got  # the run's seed does not split


def test_rieger_split_is_cdeps_random_split_with_seed_0(rieger):
    """CDEP (Rieger et al.): torch.manual_seed(0); random_split(no_cancer + cancer, [0.8 N, rest, 0.1 N]) as
    train, test, val (the file names sorted instead of os.listdir's order)."""
    data = load_dataset(f"isic:{rieger.root}", size=SIZE)
    n = len(rieger.order)
    n_train, n_val = int(0.8 * n), int(0.1 * n)
    parts = torch.utils.data.random_split(range(n), [n_train, n - n_train - n_val, n_val],
                                          generator=torch.Generator().manual_seed(0))
    got = split_ids(data)
    for s, part in zip(("train", "test", "val"), parts):
        assert sorted(got[s]) == sorted(rieger.order[j] for j in part.indices)
    assert data.info["split_seed"] == 0 and "0.8 train" in data.info["split"]


def test_dilation_grows_a_single_pixel_to_an_n_by_n_square_placed_as_skimage_does(tmp_path):
    """CDEP dilates the patch masks with skimage.morphology.dilation(mask, square(20)): a pixel at (r, c)
    covers rows r - N//2 .. r + (N-1)//2 (and those columns), clipped at the border."""
    rep = write_isic(tmp_path / "px", "rieger", n_patch=2, patch=(1, 1))
    r, c = PATCH_AT
    for n in (1, 4, 5, 20):
        data = load_dataset(f"isic:{rep.root}", size=SIZE, dilate=n)
        masks = [m for s in ("train", "val", "test") for m in data.split(s).mask[data.split(s).group == 1][:, 0]]
        expected = np.zeros(ISIC_SIZE, dtype=bool)
        expected[max(r - n // 2, 0):r + (n - 1) // 2 + 1, max(c - n // 2, 0):c + (n - 1) // 2 + 1] = True
        assert len(masks) == 2 and all(np.array_equal(m.numpy(), expected) for m in masks), n
        assert int(masks[0].sum()) == min(n, ISIC_SIZE[0]) * min(n, ISIC_SIZE[1])
    edge = np.zeros((6, 7), dtype=bool)
    edge[0, 6] = True
    assert np.argwhere(isic.dilate(edge, 3)).tolist() == [[0, 5], [0, 6], [1, 5], [1, 6]]  # clipped at the border


def test_dilation_matches_skimages_placement_through_scipy():
    """skimage.morphology.dilation(mask, square(N)) is scipy's grey_dilation with skimage's shifted, inverted
    footprint (an extra zero row and column in front for even N, then reversed): the same pixels."""
    ndi = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    mask = rng.random((30, 33)) > 0.97
    for n in (2, 3, 4, 7, 20):
        fp = np.ones((n, n), dtype=np.uint8)
        if n % 2 == 0:
            fp = np.hstack([np.zeros((n + 1, 1), np.uint8), np.vstack([np.zeros((1, n), np.uint8), fp])])
        skimage_like = ndi.grey_dilation(mask.astype(np.uint8), footprint=fp[::-1, ::-1]) > 0
        assert np.array_equal(isic.dilate(mask, n), skimage_like), n


def test_resizing_is_bilinear_for_images_and_nearest_for_masks(rieger):
    """Option size (default 299, the processed images' size both papers train at): masks by nearest neighbour."""
    data = load_dataset(f"isic:{rieger.root}", size=10)
    assert data.input_shape == (3, 10, 10) and data.info["image_size"] == [10, 10]
    ids = isic_ids(data.train.x)
    for k, i in enumerate(ids):
        full = rieger.masks.get(i, np.zeros(ISIC_SIZE, dtype=bool))
        near = np.asarray(Image.fromarray(full.astype(np.uint8)).resize((10, 10), Image.NEAREST)).astype(bool)
        assert np.array_equal(data.train.mask[k, 0].numpy(), near)
    default = load_dataset(f"isic:{rieger.root}")
    assert default.input_shape == (3, 299, 299)


@pytest.mark.parametrize("layout,options", [("rieger", {"dilate": 3, "normalize": "imagenet"}),
                                            ("heo", {"size": 16})])
def test_streaming_gives_the_in_memory_tensors(layout, options, rieger, heo, tmp_path):
    """The same examples, decoded per batch (stream=true, with a cache) or at load."""
    rep = rieger if layout == "rieger" else heo
    options = {"size": SIZE, **options}
    memory = load_dataset(f"isic:{rep.root}", **options)
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # the last: read back from the cache
        stream = load_dataset(f"isic:{rep.root}", **options, stream=True,
                              **({} if cache is None else {"cache": str(cache)}))
        assert stream.info["sizes"] == memory.info["sizes"]
        for s in ("train", "val", "test"):
            m, st = memory.split(s), stream.split(s)
            assert isinstance(st, StreamingImageDataset) and st.input_range == m.input_range
            b = st.batch(torch.arange(len(st)))
            for f in FIELDS:
                mine = getattr(m.batch(torch.arange(len(m))), f)
                assert torch.equal(getattr(b, f), mine), (s, f)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(rep.items)


def test_cli_trains_on_isic(rieger, tmp_path, monkeypatch, capsys):
    """``rightreasons train --data isic:PATH`` reaches the loader."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    assert main(["train", "--data", f"isic:{rieger.root}", "--data-option", "size=8", "--method", "rrr",
                 "--model", "mlp", "--epochs", "1", "--batch-size", "8", "--out", str(out), "--quiet"]) == 0
    assert "rrr on isic:" in capsys.readouterr().out


def one_line(exc_info, *parts):
    message = str(exc_info.value)
    assert "\n" not in message
    for part in parts:
        assert str(part) in message, (part, message)


def test_missing_folders_and_empty_classes(own):
    """The layouts' folders are required; a class folder without images is an error naming it."""
    (own.root / "processed" / "cancer" / "notes.txt").unlink()
    moved = own.root / "elsewhere"
    shutil.move(own.root / "processed" / "cancer", moved)
    with pytest.raises(DataError) as e:
        load_dataset(f"isic:{own.root}", size=SIZE)
    one_line(e, own.root / "processed" / "cancer", "no such folder")
    (own.root / "processed" / "cancer").mkdir()
    (own.root / "processed" / "cancer" / "readme.md").write_text("x")
    with pytest.raises(DataError) as e:
        load_dataset(f"isic:{own.root}", size=SIZE)
    one_line(e, own.root / "processed" / "cancer", "no images")
    with pytest.raises(DataError) as e:  # Heo et al.'s layout asked for on CDEP's files
        load_dataset(f"isic:{own.root}", size=SIZE, layout="heo")
    one_line(e, own.root / "processed" / "patch_no_cancer_again")
    with pytest.raises(DataError) as e:
        load_dataset(f"isic:{own.root / 'nope'}")
    one_line(e, own.root / "nope")


def test_segmentations_must_match_a_benign_image(own, heo, tmp_path):
    """A segmentation names its image (same file name): one without a benign image is an error (rieger:
    no_cancer; heo: patch_no_cancer_again), and in Heo et al.'s layout every patch image needs one."""
    seg = own.root / "segmentation"
    (seg / "ISIC_9999999.jpg").write_bytes((seg / own.items[next(iter(own.masks))][1]).read_bytes())
    with pytest.raises(DataError) as e:
        load_dataset(f"isic:{own.root}", size=SIZE)
    one_line(e, seg / "ISIC_9999999.jpg", "no matching image", own.root / "processed" / "no_cancer")
    (seg / "ISIC_9999999.jpg").unlink()
    malignant = next(i for i in own.order if own.items[i][3] == 2)
    (seg / own.items[malignant][1]).write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_dataset(f"isic:{own.root}", size=SIZE)
    one_line(e, seg / own.items[malignant][1], "malignant")
    mine = shutil.copytree(heo.root, tmp_path / "heo")
    patch = next(i for i in heo.order if heo.items[i][3] == 1)
    (mine / "segmentation" / heo.items[patch][1]).unlink()
    with pytest.raises(DataError) as e:
        load_dataset(f"isic:{mine}", size=SIZE)
    one_line(e, mine / "processed" / "patch_no_cancer_again" / heo.items[patch][1], "no segmentation")


@pytest.mark.parametrize("stream", [False, True])
def test_truncated_image_is_a_one_line_error_naming_it(own, stream):
    """An unreadable image (here: cut in half) fails in one line naming its file (streaming: at its batch)."""
    victim = own.root / own.items[own.order[2]][0] / own.items[own.order[2]][1]
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DataError) as e:
        data = load_dataset(f"isic:{own.root}", size=SIZE, stream=stream)
        for s in ("train", "val", "test"):
            data.split(s).batch(torch.arange(len(data.split(s))))
    one_line(e, victim, "cannot read image")


def test_a_segmentation_of_another_size_and_bad_options(own):
    """Masks are checked against their image; options are checked by name."""
    patch = next(iter(own.masks))
    (own.root / "segmentation" / own.items[patch][1]).write_bytes(encode(np.zeros((5, 5, 3))))
    with pytest.raises(DataError) as e:
        load_dataset(f"isic:{own.root}", size=SIZE)
    one_line(e, own.root / "segmentation" / own.items[patch][1], "5x5")
    for bad, word in (({"dilate": -1}, "dilate"), ({"layout": "cdep"}, "layout"), ({"sizes": 3}, "sizes"),
                      ({"workers": 2}, "stream=true"), ({"split_seed": "x"}, "split_seed"), ({"size": None}, "size")):
        with pytest.raises(UserError) as e:
            load_dataset(f"isic:{own.root}", **bad)
        one_line(e, word)


def test_a_name_in_both_benign_folders_of_heos_layout_is_kept_twice_with_a_warning(heo, tmp_path):
    """robust_mlx lists no_cancer and patch_no_cancer_again independently: an image in both is two examples
    (group 0 with an empty mask, group 1 with its patch); the loader says so."""
    mine = shutil.copytree(heo.root, tmp_path / "heo")
    patch = next(i for i in heo.order if heo.items[i][3] == 1)
    name = heo.items[patch][1]
    shutil.copy(mine / "processed" / "patch_no_cancer_again" / name, mine / "processed" / "no_cancer" / name)
    with pytest.warns(UserWarning, match="both copies are kept"):
        data = load_dataset(f"isic:{mine}", size=SIZE)
    assert sum(data.info["sizes"].values()) == len(heo.items) + 1
