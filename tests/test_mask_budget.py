"""apply_mask_budget and the data options annotated_fraction / annotated_count / mask_corruption: nested,
stratified budgets, every corruption against a slow reference, binary masks, val/test untouched, the data
options equal to the function, and the refusals."""

import itertools

import numpy as np
import pytest
import torch

from replicas_cub import write_cub
from rightreasons import load_dataset
from rightreasons.data.dataset import DataSplits, ExplanationDataset
from rightreasons.data.mask_budget import DIRECTIONS, apply_mask_budget, dilate, relocate, shift, shrink
from rightreasons.data.text.dataset import TextDataset
from rightreasons.data.text.tokenizer import Vocabulary
from rightreasons.errors import UserError

FIELDS = ("x", "y", "mask", "group", "has_mask")


def make_splits(counts=(6, 10, 14), channels=3, hw=(9, 11), seed=0, annotated_every=1):
    """Random images; class k has counts[k] training examples; every spatial mask a random rectangle (the same
    in every channel); example i annotated when i % annotated_every == 0."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for name, per in (("train", counts), ("val", (2,) * len(counts)), ("test", (3,) * len(counts))):
        y = torch.cat([torch.full((n,), k) for k, n in enumerate(per)])
        y = y[torch.randperm(len(y), generator=g)]
        n = len(y)
        x = torch.rand((n, channels, *hw), generator=g)
        spatial = torch.zeros((n, *hw), dtype=torch.bool)
        for i in range(n):
            r, c = (int(v) for v in torch.randint(0, 6, (2,), generator=g))
            spatial[i, r:r + 1 + i % 3, c:c + 2 + i % 4] = True
        mask = spatial.unsqueeze(1).expand(-1, channels, -1, -1).clone()
        has_mask = torch.arange(n) % annotated_every == 0
        parts.append(ExplanationDataset(x, y, mask, None, has_mask, num_classes=len(counts), name=f"toy/{name}"))
    return DataSplits(*parts, info={"dataset": "toy"})


def kept(splits):
    return set(torch.nonzero(splits.train.has_mask).flatten().tolist())


# ------------------------------------------------------------------------------------------------ budgets


def test_larger_budgets_keep_a_superset_of_smaller_ones():
    # rule: one seeded order, prefixes: the same seed with a larger budget keeps every example a smaller keeps
    data = make_splits()
    for option, values in (("annotated_count", (0, 1, 2, 5, 9, 17, 30)),
                           ("annotated_fraction", (0.0, 0.1, 0.25, 0.5, 0.8, 1.0))):
        sets = [kept(apply_mask_budget(data, seed=4, **{option: v})) for v in values]
        for small, large in itertools.pairwise(sets):
            assert small <= large
        assert len(sets[-1]) == (30 if option == "annotated_count" else 30)
    # another seed draws another order
    assert kept(apply_mask_budget(data, seed=4, annotated_count=5)) != kept(apply_mask_budget(data, seed=5,
                                                                                              annotated_count=5))


def test_count_is_stratified_per_class_as_evenly_as_possible():
    # rule: exactly K examples, per-class counts within one of each other, unless a class runs out (water
    # filling: every class holds min(n_c, L) or min(n_c, L) + 1 for the level L the budget reaches)
    sizes = (2, 10, 14)
    data = make_splits(counts=sizes)
    y = data.train.y
    for k in range(0, sum(sizes) + 1):
        out = apply_mask_budget(data, seed=1, annotated_count=k)
        per = [int(out.train.has_mask[y == c].sum()) for c in range(3)]
        level = max(v for v in range(max(sizes) + 1) if sum(min(n, v) for n in sizes) <= k)
        assert sum(per) == k
        assert all(min(n, level) <= got <= min(n, level + 1) for n, got in zip(sizes, per)), (k, per)
        assert out.info["mask_budget"]["annotated_per_class"] == {str(c): per[c] for c in range(3)}
    assert [int(apply_mask_budget(data, seed=1, annotated_count=9).train.has_mask[y == c].sum())
            for c in range(3)] in ([2, 3, 4], [2, 4, 3])


def test_which_class_gets_the_extra_example_is_drawn_per_round():
    # rule: the classes are interleaved in a seeded order per round, so no class always comes first
    data = make_splits(counts=(8, 8, 8))
    first = {int(data.train.y[apply_mask_budget(data, seed=s, annotated_count=1).train.has_mask]) for s in range(12)}
    assert first == {0, 1, 2}
    out = apply_mask_budget(data, seed=0, annotated_count=4)
    assert sorted(int(out.train.has_mask[data.train.y == c].sum()) for c in range(3)) == [1, 1, 2]


@pytest.mark.parametrize("fraction, expected", [(0.5, (3, 5, 7)), (0.25, (2, 3, 4)), (0.3, (2, 3, 4)),
                                                (0.05, (0, 1, 1)), (1.0, (6, 10, 14)), (0.0, (0, 0, 0))])
def test_fraction_is_rounded_per_class_halves_up(fraction, expected):
    # rule: round(P * n_k), halves up, per class (6 * 0.25 = 1.5 -> 2; 10 * 0.05 = 0.5 -> 1; 14 * 0.3 = 4.2 -> 4)
    data = make_splits(counts=(6, 10, 14))
    out = apply_mask_budget(data, seed=0, annotated_fraction=fraction)
    assert tuple(int(out.train.has_mask[data.train.y == c].sum()) for c in range(3)) == expected


def test_budget_draws_only_among_annotated_examples_and_empties_removed_masks():
    data = make_splits(annotated_every=2)
    out = apply_mask_budget(data, seed=0, annotated_count=6)
    assert kept(out) <= kept(data) and len(kept(out)) == 6
    removed = data.train.has_mask & ~out.train.has_mask
    assert not out.train.mask[removed].any()
    assert torch.equal(out.train.mask[out.train.has_mask], data.train.mask[out.train.has_mask])
    never = ~data.train.has_mask  # the dataset's own un-annotated examples are left as loaded
    assert torch.equal(out.train.mask[never], data.train.mask[never])
    with pytest.raises(UserError, match="annotated_count=16: toy/train has only 15 annotated"):
        apply_mask_budget(data, annotated_count=16)


# ------------------------------------------------------------------------------------------------ corruptions


def ref_dilate(m: np.ndarray, a: int) -> np.ndarray:
    h, w = m.shape
    out = np.zeros_like(m)
    for i, j in itertools.product(range(h), range(w)):
        out[i, j] = any(m[i + di, j + dj] for di in range(-a, a + 1) for dj in range(-a, a + 1)
                        if 0 <= i + di < h and 0 <= j + dj < w)
    return out


def ref_shrink(m: np.ndarray, a: int) -> np.ndarray:
    h, w = m.shape
    out = np.zeros_like(m)
    for i, j in itertools.product(range(h), range(w)):
        out[i, j] = all(0 <= i + di < h and 0 <= j + dj < w and m[i + di, j + dj]
                        for di in range(-a, a + 1) for dj in range(-a, a + 1))
    return out


def ref_shift(m: np.ndarray, dr: int, dc: int) -> np.ndarray:
    h, w = m.shape
    out = np.zeros_like(m)
    for i, j in zip(*np.nonzero(m)):
        if 0 <= i + dr < h and 0 <= j + dc < w:
            out[i + dr, j + dc] = True
    return out


def test_dilate_and_shrink_by_hand():
    one = torch.zeros(1, 7, 7, dtype=torch.bool)
    one[0, 3, 3] = True
    grown = torch.zeros(1, 7, 7, dtype=torch.bool)
    grown[0, 2:5, 2:5] = True
    assert torch.equal(dilate(one, 1), grown)
    corner = torch.zeros(1, 7, 7, dtype=torch.bool)
    corner[0, 0, 0] = True
    assert torch.equal(dilate(corner, 2)[0], torch.nn.functional.pad(torch.ones(3, 3), (0, 4, 0, 4)).bool())
    square = torch.zeros(1, 7, 7, dtype=torch.bool)
    square[0, 1:5, 2:6] = True  # 4 x 4
    inner = torch.zeros(1, 7, 7, dtype=torch.bool)
    inner[0, 2:4, 3:5] = True  # 2 x 2
    assert torch.equal(shrink(square, 1), inner)
    assert not shrink(one, 1).any() and torch.equal(shrink(one, 0), one)
    flush = torch.zeros(1, 7, 7, dtype=torch.bool)
    flush[0, 0:4, 0:4] = True  # at the corner: outside the image counts as unmasked
    expect = torch.zeros(1, 7, 7, dtype=torch.bool)
    expect[0, 1:3, 1:3] = True
    assert torch.equal(shrink(flush, 1), expect)


@pytest.mark.parametrize("a", [0, 1, 2, 3])
def test_dilate_and_shrink_match_the_slow_reference(a):
    g = torch.Generator().manual_seed(a)
    masks = torch.rand((12, 8, 10), generator=g) < 0.35
    masks[0] = False
    masks[1] = True
    for i in range(len(masks)):
        m = masks[i].numpy()
        assert np.array_equal(dilate(masks, a)[i].numpy(), ref_dilate(m, a))
        assert np.array_equal(shrink(masks, a)[i].numpy(), ref_shrink(m, a))


def test_shift_by_a_known_offset():
    masks = torch.zeros((4, 6, 7), dtype=torch.bool)
    masks[:, 1:3, 2:5] = True
    masks[:, 5, 6] = True  # a corner pixel that leaves the image one way or another
    directions = np.array([0, 1, 2, 3])
    for a in (0, 1, 2, 6, 9):
        out = shift(masks, a, directions)
        for i, (dr, dc) in enumerate(DIRECTIONS):
            assert np.array_equal(out[i].numpy(), ref_shift(masks[i].numpy(), dr * a, dc * a)), (a, i)
    right = shift(masks, 2, np.array([3, 3, 3, 3]))[0]
    expect = torch.zeros((6, 7), dtype=torch.bool)
    expect[1:3, 4:7] = True
    assert torch.equal(right, expect)


def test_shift_through_the_options_uses_one_seeded_direction_per_example():
    data = make_splits()
    out = apply_mask_budget(data, seed=3, mask_corruption="shift:1")
    again = apply_mask_budget(data, seed=3, mask_corruption="shift:1")
    assert torch.equal(out.train.mask, again.train.mask)
    used = []
    for i in range(len(data.train)):
        before = data.train.mask[i, 0].numpy()
        after = out.train.mask[i, 0].numpy()
        hits = [d for d, (dr, dc) in enumerate(DIRECTIONS) if np.array_equal(after, ref_shift(before, dr, dc))]
        assert hits, i
        used.append(hits[0])
        assert torch.equal(out.train.mask[i], out.train.mask[i, :1].expand_as(out.train.mask[i]))  # every channel
    assert len(set(used)) == 4
    other = apply_mask_budget(data, seed=4, mask_corruption="shift:1")
    assert not torch.equal(other.train.mask, out.train.mask)


def test_corruption_of_an_example_does_not_depend_on_the_budget():
    data = make_splits()
    small = apply_mask_budget(data, seed=2, annotated_count=6, mask_corruption="random")
    large = apply_mask_budget(data, seed=2, annotated_count=20, mask_corruption="random")
    rows = small.train.has_mask
    assert torch.equal(small.train.mask[rows], large.train.mask[rows])


def test_random_keeps_the_shape_and_the_area_at_a_seeded_place():
    data = make_splits()
    out = apply_mask_budget(data, seed=0, mask_corruption="random")
    moved = 0
    for i in range(len(data.train)):
        before, after = data.train.mask[i, 0], out.train.mask[i, 0]
        assert int(after.sum()) == int(before.sum())
        (r0, c0), (r1, c1) = (torch.nonzero(before).min(0).values, torch.nonzero(after).min(0).values)
        assert np.array_equal(ref_shift(before.numpy(), int(r1 - r0), int(c1 - c0)), after.numpy())
        moved += not torch.equal(before, after)
    assert moved >= len(data.train) - 3
    hand = torch.zeros((1, 5, 6), dtype=torch.bool)
    hand[0, 0, 0:2] = True
    hand[0, 1, 1] = True  # a 2 x 2 box: top-left corner in rows 0..3, columns 0..4
    got = relocate(hand, np.array([[0.99, 0.0]]))
    expect = torch.zeros((1, 5, 6), dtype=torch.bool)
    expect[0, 3, 0:2] = True
    expect[0, 4, 1] = True
    assert torch.equal(got, expect)
    assert not relocate(torch.zeros((2, 4, 4), dtype=torch.bool), np.zeros((2, 2))).any()


def test_drop_probability_zero_and_one():
    data = make_splits()
    none = apply_mask_budget(data, seed=0, mask_corruption="drop:0")
    assert torch.equal(none.train.has_mask, data.train.has_mask) and torch.equal(none.train.mask, data.train.mask)
    every = apply_mask_budget(data, seed=0, mask_corruption="drop:1")
    assert not every.train.has_mask.any() and not every.train.mask.any()
    half = apply_mask_budget(data, seed=0, mask_corruption="drop")  # default p = 0.5
    assert 0 < int(half.train.has_mask.sum()) < len(data.train)
    assert half.info["mask_budget"]["corruption"]["dropped"] == len(data.train) - int(half.train.has_mask.sum())
    table = ExplanationDataset(torch.rand(6, 4), torch.tensor([0, 1] * 3), torch.rand(6, 4) < 0.5, name="table")
    out = apply_mask_budget(DataSplits(table, table, table), mask_corruption="drop:1")  # drop takes any data
    assert not out.train.has_mask.any()


@pytest.mark.parametrize("corruption", ["dilate", "dilate:2", "shrink:1", "shift:3", "random", "drop:0.3"])
def test_masks_stay_binary_and_val_test_are_untouched(corruption):
    data = make_splits()
    snapshot = {s: {f: getattr(data.split(s), f).numpy().tobytes() for f in FIELDS} for s in ("train", "val", "test")}
    out = apply_mask_budget(data, seed=0, annotated_fraction=0.5, mask_corruption=corruption)
    assert out.train.mask.dtype == torch.bool and out.train.mask.shape == data.train.mask.shape
    assert out.train.has_mask.dtype == torch.bool
    for s in ("val", "test"):
        assert out.split(s) is data.split(s)
        for f in FIELDS:
            assert getattr(out.split(s), f).numpy().tobytes() == snapshot[s][f]
    for f in FIELDS:  # the input split is not modified in place
        assert getattr(data.train, f).numpy().tobytes() == snapshot["train"][f]
    assert torch.equal(out.train.x, data.train.x) and torch.equal(out.train.y, data.train.y)
    record = out.info["mask_budget"]
    assert record["mask_corruption"].split(":")[0] == corruption.split(":")[0] and record["annotated_before"] == 30


def test_dilate_through_the_options_matches_the_reference_on_annotated_examples_only():
    data = make_splits()
    out = apply_mask_budget(data, seed=0, annotated_count=9, mask_corruption="dilate:1")
    for i in range(len(data.train)):
        before = data.train.mask[i, 0].numpy()
        want = ref_dilate(before, 1) if out.train.has_mask[i] else np.zeros_like(before)
        for c in range(3):
            assert np.array_equal(out.train.mask[i, c].numpy(), want)


# ------------------------------------------------------------------------------------------------ data options


def test_data_options_equal_the_function_with_the_dataset_seed():
    opts = {"n_train": 60, "n_val": 10, "n_test": 10}
    for budget in ({"annotated_count": 7, "mask_corruption": "shift:1"}, {"annotated_fraction": 0.3},
                   {"mask_corruption": "dilate"}):
        via = load_dataset("toy-colors", seed=3, **opts, **budget)
        direct = apply_mask_budget(load_dataset("toy-colors", seed=3, **opts), seed=3, **budget)
        for s in ("train", "val", "test"):
            for f in FIELDS:
                assert torch.equal(getattr(via.split(s), f), getattr(direct.split(s), f)), (budget, s, f)
        assert via.info["mask_budget"] == direct.info["mask_budget"]
    plain = load_dataset("toy-colors", seed=3, **opts)
    assert "mask_budget" not in plain.info
    assert load_dataset("toy-colors", seed=3, **opts, mask_corruption="none").info == plain.info


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cubmb") / "CUB_200_2011"
    write_cub(root, per_class=8, test_per_class=3)
    return root


def test_applied_after_spurious(cub_root):
    base = dict(size=16, mask="none", val_fraction=0.2, spurious="square", spurious_size=4)
    both = load_dataset(f"cub:{cub_root}", seed=2, **base, annotated_count=4)
    direct = apply_mask_budget(load_dataset(f"cub:{cub_root}", seed=2, **base), seed=2, annotated_count=4)
    assert torch.equal(both.train.has_mask, direct.train.has_mask) and int(both.train.has_mask.sum()) == 4
    assert "spurious" in both.info and both.info["mask_budget"]["annotated_count"] == 4


@pytest.mark.parametrize("options, message", [
    ({"annotated_frac": 0.1}, "unknown option annotated_frac; known: annotated_fraction, annotated_count"),
    ({"mask_corruptions": "dilate"}, "unknown option mask_corruptions"),
    ({"annotated_fraction": 1.5}, "option annotated_fraction must be a number in [0, 1]"),
    ({"annotated_fraction": True}, "option annotated_fraction must be a number"),
    ({"annotated_count": -1}, "option annotated_count must be a whole number >= 0"),
    ({"annotated_count": 2.5}, "option annotated_count must be a whole number"),
    ({"annotated_count": 2, "annotated_fraction": 0.5}, "give annotated_fraction or annotated_count, not both"),
    ({"annotated_count": 10_000}, "annotated_count=10000"),
    ({"mask_corruption": "blur"}, "option mask_corruption: unknown kind 'blur'"),
    ({"mask_corruption": "shift:x"}, "option mask_corruption: shift takes a whole number of pixels"),
    ({"mask_corruption": "dilate:-1"}, "option mask_corruption: dilate takes a whole number"),
    ({"mask_corruption": "drop:2"}, "option mask_corruption: drop takes a probability in [0, 1]"),
    ({"mask_corruption": "random:3"}, "option mask_corruption: random takes no amount"),
    ({"mask_corruption": 3}, "option mask_corruption must be KIND[:AMOUNT]"),
])
def test_option_errors_are_one_line_and_name_the_option(options, message):
    with pytest.raises(UserError) as e:
        load_dataset("toy-colors", n_train=60, n_val=10, n_test=10, **options)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_refusals_streams_tables_and_masks_that_differ_between_channels(cub_root):
    with pytest.raises(UserError, match="streaming dataset") as e:
        load_dataset(f"cub:{cub_root}", size=16, val_fraction=0.2, stream=True, annotated_fraction=0.5)
    assert "\n" not in str(e.value)
    table = ExplanationDataset(torch.rand(6, 4), torch.tensor([0, 1] * 3), torch.rand(6, 4) < 0.5, name="table")
    with pytest.raises(UserError, match=r"table has inputs of shape \(6, 4\); corrupting masks needs images"):
        apply_mask_budget(DataSplits(table, table, table), mask_corruption="dilate")
    assert int(apply_mask_budget(DataSplits(table, table, table), annotated_count=2).train.has_mask.sum()) == 2
    data = make_splits()
    mask = data.train.mask.clone()
    mask[4, 1] = ~mask[4, 1]
    odd = ExplanationDataset(data.train.x, data.train.y, mask, name="odd")
    with pytest.raises(UserError, match="odd example 4 has a mask that differs between channels"):
        apply_mask_budget(DataSplits(odd, data.val, data.test), mask_corruption="shrink")
    with pytest.raises(UserError, match="seed must be a non-negative integer"):
        apply_mask_budget(data, seed=-1, annotated_count=1)


def test_text_data_takes_a_budget_and_refuses_a_spatial_corruption():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 6, (12, 5), generator=g)
    mask = torch.rand((12, 5), generator=g) < 0.4
    text = TextDataset(ids, torch.arange(12) % 2, Vocabulary(["a", "b", "c", "d"]), mask=mask,
                       has_mask=torch.ones(12, dtype=torch.bool), name="words")
    out = apply_mask_budget(DataSplits(text, text, text), seed=0, annotated_count=4)
    assert isinstance(out.train, TextDataset) and int(out.train.has_mask.sum()) == 4
    assert torch.equal(out.train.mask, mask & out.train.has_mask[:, None]) and torch.equal(out.train.ids, ids)
    assert out.train.batch(torch.arange(12)).has_mask.sum() == 4
    with pytest.raises(UserError, match="corrupting masks needs images"):
        apply_mask_budget(DataSplits(text, text, text), mask_corruption="shift:1")
