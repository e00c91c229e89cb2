"""cub:PATH on a miniature replica of CUB-200-2011's files: labels, splits and groups from the text files,
box / part / segmentation masks at the documented pixels and polarity, streaming equal to in-memory, and
one-line errors naming the file and line for malformed files."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from replicas_cub import CLASS_FOLDERS, set_line, set_part, write_cub
from rightreasons import load_dataset
from rightreasons.data import registry
from rightreasons.errors import DataError, UserError

HW = (32, 40)
FULL = "32,40"  # the replica's own size: no resizing


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub") / "CUB_200_2011"
    return root, write_cub(root, hw=HW)


@pytest.fixture
def own(replica, tmp_path):
    """A copy of the replica that a test may damage."""
    root, records = replica
    return shutil.copytree(root, tmp_path / "CUB_200_2011"), records


def cub(root, **options):
    options.setdefault("val_fraction", 0.25)
    return load_dataset(f"cub:{root}", **options)


def find(data, image_id):
    """(split dataset, position) of CUB image ``image_id``."""
    for name, ids in data.info["image_ids"].items():
        if image_id in ids:
            return data.split(name), ids.index(image_id)
    raise KeyError(image_id)


def rect(rows, cols, hw=HW):
    out = torch.zeros(hw, dtype=torch.bool)
    out[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return out


def test_labels_splits_and_groups_come_from_the_text_files(replica):
    # rule: label = class id - 1, groups = labels, names = class folders; test = train_test_split.txt's 0 lines;
    # val = round(val_fraction * n) of each class's training images, drawn with the seed
    root, records = replica
    data = cub(root, mask="none", size="8,10", seed=3)
    by_id = {r.id: r for r in records}
    ids = data.info["image_ids"]
    assert ids["test"] == [r.id for r in records if not r.train]
    assert sorted(ids["train"] + ids["val"]) == [r.id for r in records if r.train]
    assert sorted(by_id[i].cls for i in ids["val"]) == [1, 2, 3]  # 0.25 of 4 training images per class
    for name in ("train", "val", "test"):
        ds = data.split(name)
        assert ds.y.tolist() == [by_id[i].cls - 1 for i in ids[name]]
        assert torch.equal(ds.group, ds.y) and ds.num_classes == ds.num_groups == 3
        assert ds.input_shape == (3, 8, 10) and not bool(ds.has_mask.any()) and not bool(ds.mask.any())
    assert data.info["classes"] == data.info["groups"] == CLASS_FOLDERS[:3]
    assert cub(root, mask="none", size=8, seed=3).info["image_ids"] == ids  # same seed, same split
    vals = {tuple(cub(root, mask="none", size=8, seed=s).info["image_ids"]["val"]) for s in range(6)}
    assert len(vals) > 1  # the seed draws the val images
    two = cub(root, mask="none", size=8, classes=2)  # rule: classes=N keeps classes 1..N
    assert two.train.num_classes == 2 and {by_id[i].cls for s in two.info["image_ids"].values() for i in s} == {1, 2}


def test_box_mask_is_the_complement_of_the_box_by_the_centre_rule(replica):
    # rule: pixel (r, c) is in the box x, y, w, h when ((c + .5) W / w_out, (r + .5) H / h_out) lies in
    # [x, x + w) x [y, y + h); mask_region=relevant (default) -> mask = complement; ignore / mask_invert -> box
    root, records = replica
    data = cub(root, mask="box", size=FULL)
    for r in records:
        ds, i = find(data, r.id)
        x, y, w, h = (int(v) for v in r.box)
        box = rect((y, y + h - 1), (x, x + w - 1))
        assert bool(ds.has_mask[i]) and torch.equal(ds.mask[i], (~box).expand(3, *HW))
    ds, i = find(cub(root, mask="box", size=FULL, mask_region="ignore"), 1)
    assert torch.equal(ds.mask[i, 0], rect((3, 14), (5, 21)))  # image 1's box is 5 3 17 12
    ds, i = find(cub(root, mask="box", size=FULL, mask_invert=True), 1)
    assert torch.equal(ds.mask[i, 0], rect((3, 14), (5, 21)))
    ds, i = find(cub(root, mask="box", size="16,20", mask_region="ignore"), 1)  # half size: centres 2c + 1
    assert torch.equal(ds.mask[i, 0], rect((1, 6), (2, 10), (16, 20)))
    ds, i = find(cub(root, mask="box", size="24,30", mask_region="ignore"), 1)  # scale 4/3
    assert torch.equal(ds.mask[i, 0], rect((2, 10), (4, 15), (24, 30)))


def test_fractional_box_follows_the_centre_rule(own):
    # rule: half-open box [x, x + w) against pixel centres c + 0.5 (origin at the top-left corner)
    root, _ = own
    set_line(root / "bounding_boxes.txt", 1, "1 5.5 3.0 10.0 4.0")
    ds, i = find(cub(root, mask="box", size=FULL, mask_region="ignore"), 1)
    assert torch.equal(ds.mask[i, 0], rect((3, 6), (5, 14)))


def test_a_visible_part_gives_a_square_and_an_invisible_part_nothing(own):
    # rule: each visible chosen part gives the square [px - s/2, px + s/2) x [py - s/2, py + s/2); no visible
    # chosen part -> not annotated; part names as in parts.txt, an underscore for a space
    root, _ = own
    set_part(root, 1, 2, 20.0, 10.0, 1)  # image 1: beak visible at (20, 10)
    set_part(root, 1, 7, 30.0, 20.0, 0)  # left eye not visible
    set_part(root, 2, 2, 20.0, 10.0, 0)  # image 2: neither
    set_part(root, 2, 7, 30.0, 20.0, 0)
    data = cub(root, mask="parts", parts="beak,left_eye", part_size=6, mask_region="ignore", size=FULL)
    ds, i = find(data, 1)
    assert bool(ds.has_mask[i]) and torch.equal(ds.mask[i], rect((7, 12), (17, 22)).expand(3, *HW))
    ds, i = find(data, 2)
    assert not bool(ds.has_mask[i]) and not bool(ds.mask[i].any())
    relevant = cub(root, mask="parts", parts="Beak, Left Eye", part_size=6, size=FULL)  # default: relevant
    ds, i = find(relevant, 1)
    assert torch.equal(ds.mask[i, 0], ~rect((7, 12), (17, 22)))
    ds, i = find(relevant, 2)
    assert not bool(ds.has_mask[i]) and not bool(ds.mask[i].any())  # not the whole image
    default = cub(root, mask="parts", parts="beak", mask_region="ignore", size=FULL)  # s = min(32, 40) / 8 = 4
    ds, i = find(default, 1)
    assert torch.equal(ds.mask[i, 0], rect((8, 11), (18, 21)))
    half = cub(root, mask="parts", parts="beak", part_size=6, mask_region="ignore", size="16,20")
    ds, i = find(half, 1)
    assert torch.equal(ds.mask[i, 0], rect((3, 5), (8, 10), (16, 20)))  # 7 <= 2r + 1 < 13, 17 <= 2c + 1 < 23
    assert default.info["parts"] == ["beak"] and cub(root, mask="parts", size=8).info["parts"][6] == "left eye"


def test_segmentation_is_thresholded_and_its_complement_is_the_mask(replica):
    # rule: the bird is pixel / 255 >= mask_threshold (default 0.5), thresholded at the image's resolution and
    # resized by nearest neighbour; the mask is the background unless mask_region=ignore / mask_invert=true
    root, records = replica
    default = cub(root, size=FULL)
    lower = cub(root, size=FULL, mask_threshold=0.3)
    bird = cub(root, size=FULL, mask_invert=True)
    region = cub(root, size=FULL, mask_region="ignore")
    half = cub(root, size="16,20")
    for r in records:
        seg = torch.from_numpy(r.seg)
        ds, i = find(default, r.id)
        assert bool(ds.has_mask[i]) and torch.equal(ds.mask[i], (seg < 128).expand(3, *HW))  # 153, 204, 255 = bird
        ds, i = find(lower, r.id)
        assert torch.equal(ds.mask[i, 0], seg < 77)  # 102 is bird too
        ds, i = find(bird, r.id)
        assert torch.equal(ds.mask[i, 0], seg >= 128)
        ds, i = find(region, r.id)
        assert torch.equal(ds.mask[i, 0], seg >= 128)
        small = Image.fromarray((r.seg < 128).astype(np.uint8)).resize((20, 16), Image.NEAREST)
        ds, i = find(half, r.id)
        assert torch.equal(ds.mask[i, 0], torch.from_numpy(np.asarray(small) != 0))
    assert not torch.equal(default.train.mask, lower.train.mask)  # the soft rim is where thresholds differ


def test_segmentations_elsewhere(own, tmp_path):
    # rule: segmentations=DIR reads DIR/<class folder>/<stem>.png
    root, records = own
    shutil.move(root / "segmentations", tmp_path / "segs")
    with pytest.raises(DataError, match="segmentations=DIR"):
        cub(root, size=8)
    data = cub(root, size=FULL, segmentations=str(tmp_path / "segs"))
    ds, i = find(data, records[0].id)
    assert torch.equal(ds.mask[i, 0], torch.from_numpy(records[0].seg < 128))


@pytest.mark.parametrize("options", [{"mask": "box"}, {"mask": "parts", "parts": "beak,tail"},
                                     {"mask": "segmentation", "normalize": "imagenet"}], ids=["box", "parts", "seg"])
def test_streaming_batches_equal_in_memory_ones(replica, tmp_path, options):
    # rule: stream=true (and its cache) decodes the same numbers as the in-memory path
    root, _ = replica
    memory = cub(root, size="12,15", **options)
    for extra in ({}, {"cache": str(tmp_path / "cache")}, {"cache": str(tmp_path / "cache")}):
        stream = cub(root, size="12,15", stream=True, **options, **extra)
        assert stream.info["sizes"] == memory.info["sizes"] and stream.info["image_ids"] == memory.info["image_ids"]
        for name in ("train", "val", "test"):
            m, s = memory.split(name), stream.split(name)
            b = s.batch(torch.arange(len(s)))
            assert torch.equal(b.x, m.x) and torch.equal(b.mask.bool(), m.mask)
            assert torch.equal(b.y, m.y) and torch.equal(b.group, m.group) and torch.equal(b.has_mask, m.has_mask)
            assert s.input_range == m.input_range
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 18


def test_cache_keys_hold_the_mask_kind(replica, tmp_path):
    # rule: a cached example is keyed by what it was made from (another mask kind is another file)
    root, _ = replica
    cache = str(tmp_path / "c")
    box = cub(root, size=12, stream=True, cache=cache, mask="box").train.batch(slice(None))
    parts = cub(root, size=12, stream=True, cache=cache, mask="parts").train.batch(slice(None))
    assert torch.equal(box.mask, cub(root, size=12, mask="box").train.mask.float())
    assert torch.equal(parts.mask, cub(root, size=12, mask="parts").train.mask.float())
    assert not torch.equal(box.mask, parts.mask)


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_and_inconsistent_files_are_one_line_errors(own):
    # rule: errors are one line naming the file and line
    root, records = own
    set_line(root / "image_class_labels.txt", 3, "99 1")
    with pytest.raises(DataError) as e:
        cub(root, mask="none", size=8)
    assert one_line(e).startswith(f"{root / 'image_class_labels.txt'} line 3: image id 99 is not in images.txt")
    set_line(root / "image_class_labels.txt", 3, "3 1")
    set_line(root / "train_test_split.txt", 2, "2 2")
    with pytest.raises(DataError, match=r"train_test_split.txt line 2: is-train value '2' is not 0 or 1"):
        cub(root, mask="none", size=8)
    set_line(root / "train_test_split.txt", 2, "2 1")
    set_line(root / "images.txt", 5, f"1 {records[4].rel}")
    with pytest.raises(DataError, match=r"images.txt line 5: image id 1 already on line 1"):
        cub(root, mask="none", size=8)
    set_line(root / "images.txt", 5, f"5 {records[4].rel}")
    (root / "images" / records[3].rel).unlink()
    for stream in (False, True):
        with pytest.raises(DataError) as e:
            cub(root, mask="none", size=8, stream=stream)
        assert one_line(e) == f"{root / 'images' / records[3].rel} (images.txt line 4): no such file"
    (root / "images.txt").unlink()
    with pytest.raises(DataError) as e:
        cub(root, mask="none", size=8)
    assert one_line(e).startswith(f"{root / 'images.txt'}: no such file")


def test_a_missing_class_line_a_path_outside_images_and_a_bad_box(own):
    # rule: every image needs a class and a split line; image paths must resolve inside PATH/images
    root, records = own
    lines = (root / "image_class_labels.txt").read_text().splitlines()
    (root / "image_class_labels.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt: no line for image id 18 \(images.txt line 18\)"):
        cub(root, mask="none", size=8)
    (root / "image_class_labels.txt").write_text("\n".join(lines) + "\n")
    set_line(root / "images.txt", 1, "1 ../../secret.jpg")
    with pytest.raises(DataError, match=r"images.txt line 1: image path '../../secret.jpg' resolves outside"):
        cub(root, mask="none", size=8)
    set_line(root / "images.txt", 1, f"1 {records[0].rel}")
    set_line(root / "bounding_boxes.txt", 2, "2 5.0 3.0 nan 12.0")
    with pytest.raises(DataError, match=r"bounding_boxes.txt line 2: width 'nan' is not a finite number"):
        cub(root, mask="box", size=8)
    set_line(root / "image_class_labels.txt", 2, "2 201")
    with pytest.raises(DataError, match=r"image_class_labels.txt line 2: class id 201 is not in 1..200"):
        cub(root, mask="none", size=8)


def test_part_errors_name_the_file_and_line(own):
    # rule: part names come from parts/parts.txt; part_locs.txt's part ids must be in it
    root, _ = own
    with pytest.raises(DataError) as e:
        cub(root, mask="parts", parts="beak,wingtip", size=8)
    assert one_line(e).startswith(f"{root / 'parts' / 'parts.txt'}: no part named 'wingtip' (option parts)")
    set_line(root / "parts" / "part_locs.txt", 4, "1 16 3.0 4.0 1")
    with pytest.raises(DataError, match=r"part_locs.txt line 4: part id 16 is not in parts/parts.txt"):
        cub(root, mask="parts", size=8)
    set_line(root / "parts" / "part_locs.txt", 4, "1 4 3.0 4.0 yes")
    with pytest.raises(DataError, match=r"part_locs.txt line 4: visible 'yes' is not 0 or 1"):
        cub(root, mask="parts", size=8)


def test_a_missing_segmentation_names_its_image(own):
    # rule: with mask=segmentation every image needs its segmentation file
    root, records = own
    seg = root / "segmentations" / records[5].rel.replace(".jpg", ".png")
    seg.unlink()
    with pytest.raises(DataError) as e:
        cub(root, size=8)
    assert one_line(e) == f"{seg} (segmentation of images.txt line 6): no such file"


@pytest.mark.parametrize("options, message", [
    ({"colour": 1}, "unknown option"), ({"parts": "beak"}, "option parts needs mask=parts"),
    ({"mask": "box", "part_size": 4}, "option part_size needs mask=parts"), ({"classes": 1}, "classes must be"),
    ({"size": None}, "option size"), ({"workers": 2}, "workers needs stream=true"), ({"mask": "bird"}, "mask must"),
    ({"mask_region": "both"}, "mask_region must"), ({"mask_threshold": 0}, "mask_threshold must"),
    ({"mask": "parts", "part_size": -1}, "part_size must"), ({"val_fraction": 1.5}, "val_fraction"),
])
def test_option_errors(replica, options, message):
    # rule: options are checked, one-line UserErrors naming the option
    root, _ = replica
    with pytest.raises(UserError, match=message):
        cub(root, **options)


def test_registered_defaults():
    # rule: cub:PATH trains resnet18 unless the config names a model
    assert registry.default_model("cub:/any") == "resnet18" and registry.default_batch_size("cub:/any") == 32
    assert registry.default_model("waterbirds:/any") == "resnet18"
