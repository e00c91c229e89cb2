"""inject_spurious and the spurious=... data options: a class-coloured patch on the training images only,
masks exactly the stamped pixels on the annotated fraction, seeded draws, the group numbering, val/test
untouched, and the refusals."""

import numpy as np
import pytest
import torch

from replicas_cub import write_cub
from rightreasons import load_dataset
from rightreasons.data.dataset import DataSplits, ExplanationDataset
from rightreasons.data.spurious import class_colours, inject_spurious, shape_mask
from rightreasons.errors import UserError

FIELDS = ("x", "y", "mask", "group", "has_mask")


def make_splits(per_class=10, classes=3, channels=3, hw=(16, 16), input_range=(0.0, 1.0), seed=0):
    """Random images in the middle of the range (no pixel equals a patch colour), random masks, all annotated,
    groups = label + 10 * (i % 2) (not the labels, to see they are kept)."""
    g = torch.Generator().manual_seed(seed)
    low, high = input_range
    parts = []
    for name, n in (("train", per_class * classes), ("val", 2 * classes), ("test", 3 * classes)):
        x = low + (high - low) * (0.2 + 0.6 * torch.rand((n, channels, *hw), generator=g))
        y = torch.arange(n) % classes
        mask = torch.rand((n, channels, *hw), generator=g) < 0.3
        group = y + classes * (torch.arange(n) % 2)
        parts.append(ExplanationDataset(x, y, mask, group, torch.ones(n, dtype=torch.bool), num_classes=classes,
                                        num_groups=2 * classes, name=f"toy/{name}", input_range=input_range))
    return DataSplits(*parts, info={"groups": [f"g{i}" for i in range(2 * classes)]})


def stamped_pixels(before, after):
    """bool (N, H, W): pixels where any channel changed."""
    return (before.x != after.x).any(1)


def test_only_training_images_change_and_val_test_are_untouched(one_thread):
    # rule: the patch goes on the training split only; test=clean leaves val and test's inputs, labels,
    # masks and annotation flags as loaded (their groups renumbered 2 * g)
    data = make_splits()
    out = inject_spurious(data, seed=1, size=4)
    assert out.train.x.shape == data.train.x.shape and torch.equal(out.train.y, data.train.y)
    assert bool(stamped_pixels(data.train, out.train).any())
    for name in ("val", "test"):
        a, b = data.split(name), out.split(name)
        assert a.x.numpy().tobytes() == b.x.numpy().tobytes()
        for f in ("y", "mask", "has_mask"):
            assert torch.equal(getattr(a, f), getattr(b, f))
        assert torch.equal(b.group, 2 * a.group) and b.num_groups == 2 * a.num_groups
    assert torch.equal(data.train.x, make_splits().train.x)  # the input splits are not modified in place


@pytest.mark.parametrize("shape", ["square", "circle", "cross"])
@pytest.mark.parametrize("position", ["top-left", "bottom-right", "random"])
def test_masks_equal_the_stamped_pixels_exactly(shape, position, one_thread):
    # rule: annotated examples' masks are exactly the stamped pixels, in every channel; stamped pixels hold
    # the class's colour; other training examples are un-annotated with empty masks
    data = make_splits()
    out = inject_spurious(data, seed=2, shape=shape, size=5, position=position, annotated=0.5)
    changed = stamped_pixels(data.train, out.train)
    stamped = changed.flatten(1).any(1)
    patch = torch.from_numpy(shape_mask(shape, 5))
    assert int(stamped.sum()) == len(out.train)  # correlation 1.0: every image
    assert bool(torch.equal(out.train.mask, out.train.mask[:, :1].expand_as(out.train.mask)))
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])  # hues 0, 1/3, 2/3
    for i in range(len(out.train)):
        if out.train.has_mask[i]:
            assert torch.equal(out.train.mask[i, 0], changed[i])
        else:
            assert not bool(out.train.mask[i].any())
        pixels = out.train.x[i][:, changed[i]]
        assert torch.equal(pixels, colours[out.train.y[i]][:, None].expand_as(pixels))
        rows, cols = torch.nonzero(changed[i], as_tuple=True)
        r0, c0 = int(rows.min()), int(cols.min())  # every shape reaches the four sides of its s x s box
        assert torch.equal(changed[i][r0:r0 + 5, c0:c0 + 5], patch) and int(changed[i].sum()) == int(patch.sum())
        if position == "top-left":
            assert (r0, c0) == (0, 0)
        if position == "bottom-right":
            assert (r0, c0) == (11, 11)
    if position == "random":
        assert len({tuple(torch.nonzero(c)[0].tolist()) for c in changed}) > 5  # drawn per image


def test_the_shapes_are_the_documented_pixels():
    # rule: circle = (i + .5 - s/2)^2 + (j + .5 - s/2)^2 <= (s/2)^2; cross bars of width t = max(1, s // 3),
    # one larger if s - t is odd
    assert shape_mask("square", 3).all() and shape_mask("square", 3).shape == (3, 3)
    circle4 = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]], dtype=bool)
    assert np.array_equal(shape_mask("circle", 4), circle4)
    cross5 = np.zeros((5, 5), dtype=bool)
    cross5[2, :] = cross5[:, 2] = True
    assert np.array_equal(shape_mask("cross", 5), cross5)
    cross4 = np.zeros((4, 4), dtype=bool)
    cross4[1:3, :] = cross4[:, 1:3] = True
    assert np.array_equal(shape_mask("cross", 4), cross4)
    cross6 = np.zeros((6, 6), dtype=bool)
    cross6[2:4, :] = cross6[:, 2:4] = True
    assert np.array_equal(shape_mask("cross", 6), cross6)


def test_correlation_and_annotated_fractions_per_class_and_seed(one_thread):
    # rule: round(correlation * n_c) of each class stamped, round(annotated * stamped_c) of those annotated
    # (halves up); the same seed gives the same result; the stamped set does not depend on annotated
    data = make_splits(per_class=10)
    out = inject_spurious(data, seed=5, correlation=0.5, annotated=0.3)
    stamped = stamped_pixels(data.train, out.train).flatten(1).any(1)
    for k in range(3):
        mine = out.train.y == k
        assert int((stamped & mine).sum()) == 5 and int((out.train.has_mask & mine).sum()) == 2  # 1.5 -> 2
    assert bool((out.train.has_mask <= stamped).all())
    assert out.info["spurious"]["stamped"] == 15 and out.info["spurious"]["annotated_examples"] == 6
    unstamped = ~stamped
    assert torch.equal(out.train.x[unstamped], data.train.x[unstamped])
    again = inject_spurious(data, seed=5, correlation=0.5, annotated=0.3)
    for f in FIELDS:
        assert torch.equal(getattr(again.train, f), getattr(out.train, f))
    other = inject_spurious(data, seed=6, correlation=0.5, annotated=0.3)
    assert not torch.equal(other.train.x, out.train.x)
    more = inject_spurious(data, seed=5, correlation=0.5, annotated=0.9)
    assert torch.equal(more.train.x, out.train.x) and int(more.train.has_mask.sum()) == 15  # 4.5 -> 5 per class
    for seed in range(4):
        counts = inject_spurious(data, seed=seed, correlation=0.7, annotated=0.25).train.has_mask
        assert [int(counts[data.train.y == k].sum()) for k in range(3)] == [2, 2, 2]  # 7 stamped, 1.75 -> 2
    none = inject_spurious(data, seed=5, correlation=0.5, annotated=0.0)
    assert not bool(none.train.has_mask.any()) and not bool(none.train.mask.any())


def test_group_numbering(one_thread):
    # rule: group = 2 * g + p (p = carries its own class's patch); names <group>/unpatched, <group>/patched
    data = make_splits()
    out = inject_spurious(data, seed=3, correlation=0.5)
    stamped = stamped_pixels(data.train, out.train).flatten(1).any(1).long()
    assert torch.equal(out.train.group, 2 * data.train.group + stamped)
    assert out.train.num_groups == 12 and out.info["groups"][:4] == ["g0/unpatched", "g0/patched", "g1/unpatched",
                                                                     "g1/patched"]


def test_random_test_patches(one_thread):
    # rule: test=random stamps every val and test image with a random class's patch, mask = stamped pixels,
    # p = 1 only when that class is the image's own
    data = make_splits(per_class=4)
    out = inject_spurious(data, seed=4, size=3, test="random")
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    own = []
    for name in ("val", "test"):
        a, b = data.split(name), out.split(name)
        changed = stamped_pixels(a, b)
        assert bool(b.has_mask.all()) and torch.equal(b.mask, changed[:, None].expand_as(b.mask))
        for i in range(len(b)):
            colour = b.x[i][:, changed[i]][:, 0]
            k = int(torch.nonzero((colours == colour).all(1))[0])
            assert int(b.group[i]) == 2 * int(a.group[i]) + (k == int(a.y[i]))
            own.append(k == int(a.y[i]))
    assert any(own) and not all(own)


def test_colours_follow_the_input_range_and_grey_images(one_thread):
    # rule: channel value c is written as low + c * (high - low); one channel: grey levels k / (K - 1)
    data = make_splits(input_range=(-1.0, 1.0))
    out = inject_spurious(data, seed=0, size=2)
    k = int(out.train.y[0])
    expected = -1 + 2 * torch.from_numpy(class_colours(3, 3)[k]).float()
    assert torch.equal(out.train.x[0, :, 0, 0], expected)
    grey = inject_spurious(make_splits(channels=1), seed=0, size=2)
    assert [float(grey.train.x[i, 0, 0, 0]) for i in range(3)] == [0.0, 0.5, 1.0]


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cubsp") / "CUB_200_2011"
    write_cub(root, per_class=8, test_per_class=3)
    return root


def test_data_options_apply_the_transform_with_the_dataset_seed(cub_root):
    # rule: load_dataset pops spurious / spurious_* and applies inject_spurious after loading, same seed
    base = load_dataset(f"cub:{cub_root}", seed=7, size=16, mask="none", val_fraction=0.2)
    via = load_dataset(f"cub:{cub_root}", seed=7, size=16, mask="none", val_fraction=0.2, spurious="cross",
                       spurious_size=5, spurious_annotated=0.5, spurious_position="random")
    direct = inject_spurious(base, seed=7, shape="cross", size=5, annotated=0.5, position="random")
    for name in ("train", "val", "test"):
        for f in FIELDS:
            assert torch.equal(getattr(via.split(name), f), getattr(direct.split(name), f))
    assert via.info["spurious"]["shape"] == "cross" and via.info["groups"][1] == "001.Black_footed_Albatross/patched"
    assert torch.equal(via.test.x, base.test.x)


@pytest.mark.parametrize("options, message", [
    ({"spurious": "square", "spurious_colour": "red"}, "unknown option spurious_colour"),
    ({"spurious_size": 4}, "option spurious_size needs spurious=square|circle|cross"),
    ({"spurious_sz": 4}, "unknown option spurious_sz; known: spurious, spurious_size, spurious_position"),
    ({"spurious": "hexagon"}, "option spurious must be one of square, circle, cross"),
    ({"spurious": "square", "spurious_annotated": 1.5}, "option spurious_annotated must be a number in"),
    ({"spurious": "square", "spurious_position": "middle"}, "option spurious_position must be one of"),
    ({"spurious": "square", "spurious_size": 0}, "option spurious_size must be a positive integer"),
    ({"spurious": "square", "spurious_size": 40}, "larger than the 16x16 images"),
    ({"spurious": "square", "stream": True}, "streaming dataset"),
])
def test_option_errors_are_one_line_and_name_the_option(cub_root, options, message):
    # rule: unknown or bad spurious_* options are one-line errors naming the option; streams are refused
    with pytest.raises(UserError) as e:
        load_dataset(f"cub:{cub_root}", size=16, mask="none", val_fraction=0.2, **options)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_non_image_data_is_refused():
    # rule: only in-memory images (N, C, H, W), C 1 or 3, with a finite input range are stamped
    table = ExplanationDataset(torch.rand(6, 4), torch.tensor([0, 1] * 3), name="table")
    with pytest.raises(UserError, match="needs images"):
        inject_spurious(DataSplits(table, table, table))
    wide = ExplanationDataset(torch.rand(6, 3, 8, 8), torch.tensor([0, 1] * 3), input_range=(0, float("inf")))
    with pytest.raises(UserError, match="unbounded input range"):
        inject_spurious(DataSplits(wide, wide, wide))
    with pytest.raises(UserError, match="unknown option"):
        inject_spurious(make_splits(), seed=0, colour="red")
