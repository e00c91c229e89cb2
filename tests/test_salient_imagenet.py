"""salient-imagenet:IMAGES,MASKS on a miniature replica of the download (core / spurious features by the vote
rule, the training mask as the union of the spurious masks, the centre-crop frame, streaming equal to
in-memory, wordnet_dict.py read as data and never run, one-line errors naming the file and row), and the
core / spurious accuracy and relative core sensitivity of metrics.salient."""

import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from replicas_salient import (
    SIDE,
    WNIDS,
    Replica,
    mturk_lines,
    write_long_map,
    write_salient,
    write_wordnet,
)
from rightreasons import load_dataset
from rightreasons.data import registry
from rightreasons.data.salient_imagenet import SalientImageNetDataset, SalientStreamingDataset
from rightreasons.errors import DataError, UserError
from rightreasons.metrics.salient import (
    core_accuracy,
    noisy_inputs,
    relative_core_sensitivity,
    salient_metrics,
    spurious_accuracy,
)


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    return write_salient(tmp_path_factory.mktemp("salient"))


@pytest.fixture
def own(replica, tmp_path):
    """A copy of the replica that a test may damage."""
    shutil.copytree(replica.images, tmp_path / "imagenet")
    shutil.copytree(replica.masks, tmp_path / "salient_imagenet_dataset")
    masks = tmp_path / "salient_imagenet_dataset"
    return Replica(tmp_path / "imagenet", masks, masks / replica.mturk.name, replica.classes)


def load(rep, **options):
    options.setdefault("size", SIDE)
    return load_dataset(rep.spec, **options)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def examples(data, split):
    """(class record, image name) of each example of ``split``, in order."""
    ds = data.split(split)
    names = data.info["image_names"][split]
    return [(data.info["classes"][int(y)], name) for y, name in zip(ds.y, names)]


def records(rep):
    return {r.wnid: r for r in rep.classes}


def masks_of(rec, name, spurious: bool):
    feats = rec.spurious if spurious else rec.core
    return [rec.masks[name, f] for f in feats if (name, f) in rec.masks]


# ------------------------------------------------------------------------------------------ features and masks


def test_features_are_core_or_spurious_by_the_vote_rule(replica, own):
    # rule: spurious iff >= 3 of the answers are separate_object or background (3 of 5 is, 2 of 5 is not)
    data = load(replica)
    assert data.info["features"] == {"n01440764": {"core": [59, 686], "spurious": [1696]},
                                     "n01443537": {"core": [316], "spurious": [981]},
                                     "n01484850": {"core": [227], "spurious": [564]}}
    assert data.info["votes"]["n01440764"] == {"59": {"spurious": 0, "answers": 5},
                                               "686": {"spurious": 2, "answers": 5},
                                               "1696": {"spurious": 3, "answers": 5}}
    # one more spurious answer for 686 (2 -> 3 of 5) makes it spurious: its images become annotated
    lines = own.mturk.read_text().splitlines()
    n = next(k for k, line in enumerate(lines) if ",n01440764,0,686," in line and ",main_object," in line)
    lines[n] = lines[n].replace("main_object", "background")
    own.mturk.write_text("\n".join(lines) + "\n")
    changed = load(own)
    assert changed.info["features"]["n01440764"] == {"core": [59], "spurious": [686, 1696]}
    rec = records(replica)["n01440764"]
    for split in ("train", "val", "test"):
        for i, (wnid, name) in enumerate(examples(changed, split)):
            if wnid == rec.wnid:
                has_686 = (name, 686) in rec.masks
                assert bool(changed.split(split).has_mask[i]) == (has_686 or (name, 1696) in rec.masks)


@pytest.mark.parametrize("threshold", [None, 0.3])
def test_training_mask_is_the_union_of_the_spurious_masks_thresholded(replica, threshold):
    # rule: mask = OR over the image's spurious features of (soft / 255 >= mask_threshold, default 0.5), every
    # channel; core masks never enter it; has_mask = the image has a spurious mask
    data = load(replica, **({} if threshold is None else {"mask_threshold": threshold}))
    t = 0.5 if threshold is None else threshold
    recs = records(replica)
    for split in ("train", "val", "test"):
        ds = data.split(split)
        for i, (wnid, name) in enumerate(examples(data, split)):
            spur = masks_of(recs[wnid], name, spurious=True)
            expected = np.zeros((SIDE, SIDE), dtype=bool)
            for m in spur:
                expected |= m.astype(np.float64) / 255 >= t
            assert torch.equal(ds.mask[i], torch.from_numpy(expected).expand(3, SIDE, SIDE))
            assert bool(ds.has_mask[i]) == bool(spur)
    assert not torch.equal(load(replica).train.mask, load(replica, mask_threshold=0.3).train.mask)


def test_soft_masks_are_the_maxima_of_the_core_and_spurious_masks(replica):
    # rule: soft masks (for the metrics) = pixel-wise max of the image's core masks / of its spurious masks
    data = load(replica)
    recs = records(replica)
    for split in ("train", "val", "test"):
        ds = data.split(split)
        batch, soft = ds.soft_batch(torch.arange(len(ds)))
        for i, (wnid, name) in enumerate(examples(data, split)):
            for spurious, stored, got in ((False, ds.core_mask, soft.core), (True, ds.spurious_mask, soft.spurious)):
                found = masks_of(recs[wnid], name, spurious)
                expected = np.maximum.reduce(found) if found else np.zeros((SIDE, SIDE), dtype=np.uint8)
                assert torch.equal(stored[i, 0], torch.from_numpy(expected))
                assert torch.equal(got[i, 0], torch.from_numpy(expected).float() / 255)
            assert bool(soft.has_core[i]) == bool(masks_of(recs[wnid], name, False))
            assert bool(soft.has_spurious[i]) == bool(ds.has_mask[i])


def test_an_image_without_a_spurious_mask_is_not_annotated(replica):
    # rule: has_mask False (and an empty mask) when no spurious feature has a mask on the image
    data = load(replica)
    rec = records(replica)["n01440764"]
    unannotated = {rec.images[4], rec.images[5]}  # they have masks of the core features 59 and 686 only
    seen = 0
    for split in ("train", "val", "test"):
        ds = data.split(split)
        for i, (_, name) in enumerate(examples(data, split)):
            if name in unannotated:
                seen += 1
                assert not bool(ds.has_mask[i]) and not bool(ds.mask[i].any()) and not bool(ds.spurious_mask[i].any())
                assert bool(ds.has_core[i]) and bool(ds.core_mask[i].any())
    assert seen == 2
    assert data.info["annotated"] == sum(int(s.has_mask.sum()) for s in (data.train, data.val, data.test)) == 12


def manual_crop(path, size):
    """The evaluation transform written out: shorter side to round(size * 256 / 224), centre size x size."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        short = round(size * 256 / 224)
        ow, oh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        im = im.resize((ow, oh), Image.BILINEAR)
        top, left = round((oh - size) / 2), round((ow - size) / 2)
        return np.asarray(im)[top:top + size, left:left + size]


@pytest.mark.parametrize("size", [SIDE, 56])
def test_images_are_centre_crops_and_masks_cover_the_crop(replica, size):
    # rule: images resized (shorter side round(size * 256 / 224)) and centre-cropped to size x size; masks are
    # that crop: soft masks resized bilinearly, the training mask thresholded first, then nearest neighbour
    data = load(replica, size=size)
    recs = records(replica)
    shapes = set()
    for split in ("train", "test"):
        ds = data.split(split)
        assert ds.input_shape == (3, size, size) and ds.input_range == (0.0, 1.0)
        for i, (wnid, name) in enumerate(examples(data, split)):
            path = replica.image_file(recs[wnid], name)
            with Image.open(path) as im:
                shapes.add(im.size)
            expected = torch.from_numpy(manual_crop(path, size).transpose(2, 0, 1).astype(np.float32) / 255)
            assert torch.equal(ds.x[i], expected)
            core = masks_of(recs[wnid], name, False)
            if core:
                peak = Image.fromarray(np.maximum.reduce(core)).resize((size, size), Image.BILINEAR)
                assert torch.equal(ds.core_mask[i, 0], torch.from_numpy(np.array(peak)))
            else:
                assert not bool(ds.core_mask[i].any())
            spur = masks_of(recs[wnid], name, True)
            if spur:
                hard = (np.maximum.reduce(spur) / 255 >= 0.5).astype(np.uint8)
                near = np.asarray(Image.fromarray(hard).resize((size, size), Image.NEAREST)) != 0
                assert torch.equal(ds.mask[i, 0], torch.from_numpy(near))
    assert shapes == {(40, 32), (32, 40), (64, 48)}


def test_labels_classes_and_the_seeded_split(replica):
    # rule: labels in class order, names = wnids; each class's images split with the seed: round(0.15 * 6) = 1
    # val and 1 test; the same seed gives the same split
    data = load(replica, seed=3)
    assert data.info["classes"] == WNIDS[:3] and data.info["class_indices"] == [0, 1, 2]
    for split, count in (("train", 4), ("val", 1), ("test", 1)):
        ds = data.split(split)
        assert torch.bincount(ds.y, minlength=3).tolist() == [count] * 3
        assert torch.equal(ds.group, ds.y) and ds.num_classes == 3
        assert all(name.startswith(data.info["classes"][int(y)]) for y, name in
                   zip(ds.y, data.info["image_names"][split]))
    assert load(replica, seed=3).info["image_names"] == data.info["image_names"]
    splits = {tuple(load(replica, seed=s).info["image_names"]["test"]) for s in range(5)}
    assert len(splits) > 1
    names = sum(data.info["image_names"].values(), [])
    assert sorted(names) == sorted(n for r in replica.classes for n in r.images)


def test_classes_by_wnid_or_index_and_num_classes(replica):
    # rule: classes= (wnids or indices) picks classes and orders the labels; num_classes=N the first N with masks
    data = load(replica, classes="n01484850,0")
    assert data.info["classes"] == ["n01484850", "n01440764"] and data.info["class_indices"] == [2, 0]
    assert all(n.startswith("n01484850") for n, y in zip(data.info["image_names"]["train"], data.train.y) if y == 0)
    assert load(replica, classes=[1, "n01484850"]).info["class_indices"] == [1, 2]
    assert load(replica, num_classes=2).info["classes"] == WNIDS[:2]
    with pytest.raises(DataError) as e:  # class 3 is in wordnet_dict.py but has no masks
        load(replica, classes="0,n01491361")
    assert one_line(e).startswith(f"{replica.masks / 'n01491361' / 'image_names_map.csv'}: no such file: class "
                                  "'n01491361' (option classes")
    with pytest.raises(DataError) as e:
        load(replica, classes="0,n09999999")
    assert one_line(e) == f"{replica.masks / 'wordnet_dict.py'}: no class 'n09999999' (option classes)"
    with pytest.raises(DataError, match=r"wordnet_dict.py: no class 7 \(option classes\)"):
        load(replica, classes="0,7")
    with pytest.raises(DataError, match=r"only 3 classes of wordnet_dict.py have a folder .*num_classes=4"):
        load(replica, num_classes=4)
    with pytest.raises(UserError, match="not both"):
        load(replica, classes="0,1", num_classes=2)


@pytest.mark.parametrize("normalize", ["none", "imagenet"])
def test_streaming_batches_equal_in_memory_ones(replica, tmp_path, normalize):
    # rule: stream=true (with or without its cache) decodes the same numbers, soft masks too
    memory = load(replica, normalize=normalize)
    cache = str(tmp_path / "cache")
    for extra in ({}, {"cache": cache}, {"cache": cache}):
        stream = load(replica, stream=True, normalize=normalize, **extra)
        assert stream.info["image_names"] == memory.info["image_names"]
        for split in ("train", "val", "test"):
            m, s = memory.split(split), stream.split(split)
            assert isinstance(s, SalientStreamingDataset) and isinstance(m, SalientImageNetDataset)
            b, soft = s.soft_batch(torch.arange(len(s)))
            assert torch.equal(b.x, m.x) and torch.equal(b.mask.bool(), m.mask) and torch.equal(b.y, m.y)
            assert torch.equal(s.batch(torch.arange(len(s))).x, m.x)
            assert torch.equal(soft.core, m.core_mask.float() / 255)
            assert torch.equal(soft.spurious, m.spurious_mask.float() / 255)
            assert torch.equal(soft.has_core, m.has_core) and torch.equal(s.has_mask, m.has_mask)
            assert s.input_range == m.input_range and s.normalization == m.normalization
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 18
    sub = stream.train.subset(torch.tensor([2, 0]))
    assert torch.equal(sub.soft_batch(slice(None))[1].spurious, memory.train.subset(torch.tensor([2, 0]))
                       .soft_batch(slice(None))[1].spurious)


@pytest.mark.parametrize("order", [("image", "mask"), ("mask", "image")])
def test_a_two_column_map_in_either_order_reads_the_same(replica, own, order):
    # rule: image_names_map.csv as columns image and mask (either order) = the one-column-per-feature form
    for rec in own.classes:
        write_long_map(own.masks / rec.wnid / "image_names_map.csv", rec, order)
    a, b = load(replica), load(own)
    assert a.info["image_names"] == b.info["image_names"] and a.info["features"] == b.info["features"]
    for split in ("train", "val", "test"):
        for name in ("x", "mask", "core_mask", "spurious_mask", "has_mask", "has_core"):
            assert torch.equal(getattr(a.split(split), name), getattr(b.split(split), name))


# ------------------------------------------------------------------------------------------ wordnet_dict.py


@pytest.mark.parametrize("text", [
    "{" + ", ".join(f"{i}: '{w}'" for i, w in enumerate(WNIDS)) + "}\n",
    '"""wnids"""\nwordnet_dict: dict = {\n' + "".join(f"    {i}: \"{w}\",\n" for i, w in enumerate(WNIDS)) + "}\n",
    "{" + ", ".join(f"'{w}': {i}" for i, w in enumerate(WNIDS)) + "}",
], ids=["bare", "annotated-multiline", "wnid-to-index"])
def test_wordnet_dict_forms(replica, own, text):
    # rule: a bare dict literal or one assignment of it, index -> wnid or wnid -> index
    write_wordnet(own.masks / "wordnet_dict.py", text)
    assert load(own).info["class_indices"] == [0, 1, 2]


ALL = ", ".join(f"{i}: '{w}'" for i, w in enumerate(WNIDS[1:], 1))


@pytest.mark.parametrize("template, line", [
    ("mapping = {{0: __import__('os').system('touch {marker}'), " + ALL + "}}\n", 1),
    ("__import__('os').system('touch {marker}')\nmapping = {{0: 'n01440764', " + ALL + "}}\n", 1),
    ("import os\nos.system('touch {marker}')\nmapping = {{0: 'n01440764', " + ALL + "}}\n", 1),
    ("mapping = {{\n  0: 'n01440764',\n  **__import__('os').system('touch {marker}'),\n}}\n", 3),
    ("mapping = {{0: 'n01440764' + str(exec(\"open('{marker}', 'w')\")), " + ALL + "}}\n", 1),
    ("mapping = {{0: 'n01440764', " + ALL + "}}\nexec(\"open('{marker}', 'w')\")\n", 2),
], ids=["call-value", "call-statement", "import", "unpacking", "exec-value", "exec-after"])
def test_a_hostile_wordnet_dict_is_refused_and_never_run(replica, own, tmp_path, template, line):
    # rule: wordnet_dict.py is parsed and literal_eval'ed, never imported or executed
    marker = tmp_path / "MARKER"
    write_wordnet(own.masks / "wordnet_dict.py", template.format(marker=marker))
    with pytest.raises(DataError) as e:
        load(own)
    assert one_line(e).startswith(f"{own.masks / 'wordnet_dict.py'} line {line}: ")
    assert not marker.exists()


def test_wordnet_dict_errors(replica, own):
    # rule: a missing file, a duplicate index and a value that is not a wnid are errors naming the file and line
    path = own.masks / "wordnet_dict.py"
    write_wordnet(path, "m = {\n 0: 'n01440764',\n 1: 'n01443537',\n 1: 'n01484850',\n}\n")
    with pytest.raises(DataError, match=r"wordnet_dict.py line 4: class index 1 already on line 3"):
        load(own)
    write_wordnet(path, "m = {0: 'n01440764', 1: '../etc'}\n")
    with pytest.raises(DataError, match=r"wordnet_dict.py line 1: entry 1: '../etc' is not class index -> wnid"):
        load(own)
    write_wordnet(path, "m = {0: 'n01440764'\n")
    with pytest.raises(DataError, match=r"wordnet_dict.py line 1: not a Python dict literal"):
        load(own)
    path.unlink()
    with pytest.raises(DataError) as e:
        load(own)
    assert one_line(e).startswith(f"{path}: no such file")


# ------------------------------------------------------------------------------------------ map, masks, MTurk


def test_a_mask_file_that_maps_to_no_image_and_missing_files(replica, own):
    # rule: every mask file under feature_<f>/ is named by a row; every row's image and mask exist
    rec = own.classes[0]
    stray = own.masks / rec.wnid / "feature_59" / "n01440764_9999.JPEG"
    shutil.copy(rec.mask_files[rec.images[0], 59], stray)
    with pytest.raises(DataError) as e:
        load(own)
    map_path = own.masks / rec.wnid / "image_names_map.csv"
    assert one_line(e) == f"{stray}: mask file maps to no image (no row of {map_path} names it)"
    stray.unlink()
    image = own.image_file(rec, rec.images[2])
    image.unlink()
    for stream in (False, True):
        with pytest.raises(DataError) as e:
            load(own, stream=stream)
        assert one_line(e) == f"{image} ({map_path} row 4): no such file"  # the row of its first feature, 59
    shutil.copy(own.image_file(rec, rec.images[0]), image)
    (own.masks / rec.wnid / "feature_1696" / rec.mask_files[rec.images[1], 1696].name).unlink()
    with pytest.raises(DataError) as e:
        load(own)
    assert one_line(e) == (f"{map_path} row 3, column '1696': no mask file "
                           f"{own.masks / rec.wnid / 'feature_1696' / (rec.images[1] + '.JPEG')}")


def test_map_errors_name_the_row_and_column(replica, own):
    # rule: a header that is neither form, a name with a path in it, a duplicate are errors naming the row
    path = own.masks / own.classes[1].wnid / "image_names_map.csv"
    text = path.read_text()
    path.write_text("feature,image\n" + "\n".join(text.splitlines()[1:]) + "\n")
    with pytest.raises(DataError, match="expected one column per feature .* or the two columns mask and image"):
        load(own)
    lines = text.splitlines()
    path.write_text("\n".join(lines[:2] + ["../../x," + lines[2].split(",")[1]] + lines[3:]) + "\n")
    with pytest.raises(DataError) as e:
        load(own)
    assert one_line(e) == f"{path} row 3, column '316': image name '../../x' is not a plain file name"
    path.write_text("\n".join(lines[:3] + [lines[2]] + lines[4:]) + "\n")
    with pytest.raises(DataError, match=r"row 4, column '316': image '\S+' already has a mask of feature 316 "):
        load(own)


def test_mturk_errors_name_the_file_row_and_column(replica, own):
    # rule: the answer must be main_object, separate_object or background; columns are read by name
    lines = mturk_lines(own.classes)
    bad = list(lines)
    bad[7] = bad[7].replace("main_object", "maybe").replace("separate_object", "maybe").replace("background", "maybe")
    own.mturk.write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError) as e:
        load(own)
    assert one_line(e) == f"{own.mturk} row 8, column 'Answer.main': answer 'maybe' is not one of main_object, " \
                          "separate_object, background"
    own.mturk.write_text("\n".join([lines[0].replace("Answer.main,", "Answer.mainly,")] + lines[1:]) + "\n")
    with pytest.raises(DataError, match=r"discover_spurious_features.csv: missing column 'Answer.main'"):
        load(own)
    own.mturk.write_text("\n".join(line for line in lines if ",0,1696," not in line) + "\n")
    with pytest.raises(DataError) as e:
        load(own)
    assert one_line(e) == (f"{own.masks / 'n01440764' / 'image_names_map.csv'}: feature 1696 has masks but "
                           f"{own.mturk} has no answers for class 0 (n01440764), feature 1696")
    dup = list(lines)
    dup[3] = dup[2]
    own.mturk.write_text("\n".join(dup) + "\n")
    with pytest.raises(DataError, match=r"row 4: worker '21' already answered class 0, feature 59 on row 3"):
        load(own)
    wrong = list(lines)
    wrong[1] = wrong[1].replace(",n01440764,", ",n01443537,")
    own.mturk.write_text("\n".join(wrong) + "\n")
    with pytest.raises(DataError, match=r"row 2: Input.wordnet_id 'n01443537' but wordnet_dict.py says class 0 is "):
        load(own)


def test_the_mturk_option_overrides_the_default_file(replica, own, tmp_path):
    # rule: mturk=FILE replaces MASKS/discover_spurious_features.csv
    moved = tmp_path / "answers.csv"
    shutil.move(own.mturk, moved)
    with pytest.raises(DataError) as e:
        load(own)
    assert one_line(e).startswith(f"{own.mturk}: no such file") and "mturk=FILE" in str(e.value)
    data = load(own, mturk=str(moved))
    assert data.info["mturk"] == str(moved) and data.info["features"] == load(replica).info["features"]


# ------------------------------------------------------------------------------------------ spec and options


def test_paths_with_a_comma_and_the_train_folder(replica, tmp_path):
    # rule: IMAGES,MASKS with one comma; with option images= the part after the colon is MASKS, whole;
    # IMAGES may be the folder holding train/ or train/ itself
    images, masks = tmp_path / "image,net", tmp_path / "masks,v1"
    shutil.copytree(replica.images, images)
    shutil.copytree(replica.masks, masks)
    data = load_dataset(f"salient-imagenet:{masks}", images=str(images), size=SIDE)
    assert data.info["masks_path"] == str(masks) and data.info["images_path"] == str(images / "train")
    ref = load(replica)
    assert torch.equal(data.train.x, ref.train.x)
    direct = load_dataset(f"salient-imagenet:{replica.images / 'train'},{replica.masks}", size=SIDE)
    assert torch.equal(direct.train.x, ref.train.x)
    for spec in (f"salient-imagenet:{images},{masks}", f"salient-imagenet:{replica.masks}",
                 f"salient-imagenet:{replica.images},"):
        with pytest.raises(UserError) as e:
            load_dataset(spec, size=SIDE)
        assert "expected IMAGES,MASKS" in one_line(e) and "images=IMAGES" in str(e.value)
    with pytest.raises(DataError, match=r"nowhere: no such directory \(the ImageNet images"):
        load_dataset(f"salient-imagenet:{tmp_path / 'nowhere'},{replica.masks}", size=SIDE)


@pytest.mark.parametrize("options, message", [
    ({"colour": 1}, "unknown option"), ({"size": "28,30"}, "option size must be one number"),
    ({"size": None}, "option size"), ({"workers": 2}, "workers needs stream=true"),
    ({"mask_threshold": 0}, "mask_threshold must"), ({"val_fraction": 0.6, "test_fraction": 0.5}, "must be < 1"),
    ({"classes": "0"}, "at least two classes"), ({"classes": "0,0"}, "names 0 twice"),
    ({"classes": "0,a/b"}, "neither a wnid nor a class index"), ({"num_classes": 1}, "num_classes must be"),
    ({"normalize": "zscore"}, "normalize"), ({"stream": "maybe"}, "stream must be"),
])
def test_option_errors(replica, options, message):
    # rule: options are checked, one-line UserErrors naming the option
    with pytest.raises(UserError, match=message) as e:
        load(replica, **options)
    one_line(e)


def test_registered_defaults():
    # rule: salient-imagenet:IMAGES,MASKS trains resnet18 unless the config names a model
    assert registry.default_model("salient-imagenet:/a,/b") == "resnet18"
    assert registry.default_batch_size("salient-imagenet:/a,/b") == 32


# ------------------------------------------------------------------------------------------ metrics


class Probe(nn.Module):
    """Reads the label from pixel (0, 0) (1 = class 1) and predicts it while the pixels of ``region`` are all
    0.5; the other class once any of them moved."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region)

    def forward(self, x):
        label = (x[:, 0, 0, 0] > 0.5).long()
        moved = ((x[:, 0] - 0.5).abs() * self.region).flatten(1).amax(1) > 1e-6
        return nn.functional.one_hot(torch.where(moved, 1 - label, label), 2).float()


def rows(*which, value=1.0):
    out = torch.zeros(4, 4)
    for r in which:
        out[r] = value
    return out


def probe_dataset():
    """Six 1 x 4 x 4 examples: row 1 (A) is what the probe reads; core / spurious masks on rows 1, 2, 3."""
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    x = torch.full((6, 1, 4, 4), 0.5)
    x[:, 0, 0, 0] = y.float()
    x[:, 0, 0, 1:] = 0.0  # nothing is masked on row 0
    none = torch.zeros(4, 4)
    spur = torch.stack([rows(1), rows(3), none, rows(1), rows(3), rows(1, value=0.5)])[:, None]
    core = torch.stack([rows(2), rows(2), rows(1), none, none, none])[:, None]
    has_spurious = torch.tensor([True, True, False, True, True, True])
    has_core = torch.tensor([True, True, True, False, False, False])
    return SalientImageNetDataset(x, y, (spur > 0), None, has_spurious, core, spur, has_core, num_classes=2,
                                  name="probe")


def test_core_and_spurious_accuracy_of_a_model_that_reads_one_region():
    # rule: core accuracy = accuracy with noise inside the spurious masks (examples with one), spurious accuracy
    # = with noise inside the core masks (examples with one); means of per-class accuracies (or per example)
    data, model = probe_dataset(), Probe(rows(1))
    # noise on the spurious masks moves row 1 for examples 0, 3 and 5 (weight 0.5 too): class 0 1/2, class 1 1/3
    assert core_accuracy(model, data) == pytest.approx(5 / 12, abs=1e-15)
    assert core_accuracy(model, data, average="example") == pytest.approx(2 / 5, abs=1e-15)
    # noise on the core masks moves row 1 for example 2 only: class 0 2/3, class 1 has no core mask
    assert spurious_accuracy(model, data) == pytest.approx(2 / 3, abs=1e-15)
    assert spurious_accuracy(model, data, average="example") == pytest.approx(2 / 3, abs=1e-15)
    out = salient_metrics(model, data)
    assert out["clean_accuracy"] == 1.0 and out["core_examples"] == 5 and out["spurious_examples"] == 3
    assert out["relative_core_sensitivity"] == pytest.approx(-3 / 11, abs=1e-15)
    assert core_accuracy(model, data, sigma=0.0) == 1.0  # no noise, nothing moves
    # a model that reads row 2 (a core region here): its core accuracy is perfect, its spurious accuracy is not
    # (its spurious accuracy: examples 0 and 1 have core masks on row 2, example 2 on row 1: 1/3)
    assert core_accuracy(Probe(rows(2)), data) == 1.0 and spurious_accuracy(Probe(rows(2)), data) == 1 / 3
    assert salient_metrics(Probe(rows(2)), data)["relative_core_sensitivity"] == 1.0


def test_relative_core_sensitivity_formula():
    # rule: RCS = (a_C - a_S) / (2 min(a, 1 - a)), a = (a_C + a_S) / 2; 0 when a is 0 or 1
    cases = [((5 / 12, 2 / 3), -3 / 11), ((0.9, 0.5), 2 / 3), ((1.0, 0.0), 1.0), ((0.25, 0.75), -0.5),
             ((0.0, 0.5), -1.0), ((0.2, 0.1), 1 / 3), ((0.3, 0.3), 0.0), ((1.0, 1.0), 0.0), ((0.0, 0.0), 0.0)]
    for (a_core, a_spur), expected in cases:
        got = relative_core_sensitivity(a_core, a_spur)
        assert isinstance(got, float) and math.isclose(got, expected, rel_tol=1e-15, abs_tol=1e-15), (a_core, a_spur)
    a_core, a_spur = np.float64(0.61), np.float64(0.47)
    mean = (a_core + a_spur) / 2
    assert relative_core_sensitivity(float(a_core), float(a_spur)) == (a_core - a_spur) / (2 * min(mean, 1 - mean))
    assert math.isnan(relative_core_sensitivity(math.nan, 0.5))
    with pytest.raises(UserError, match="core_accuracy must be a number in"):
        relative_core_sensitivity(1.5, 0.5)


class SignProbe(nn.Module):
    """Predicts class 1 when the masked region's pixels sum above 0.5 each: a coin flip under noise."""

    def forward(self, x):
        s = (x[:, :, 1] - 0.5).flatten(1).sum(1)
        return torch.stack([-s, s], 1)


def test_noise_is_seeded_and_the_global_rng_untouched():
    # rule: noise only from the generator given (default seed 0), the same seed the same numbers
    n = 64
    x = torch.full((n, 1, 4, 4), 0.5)
    spur = rows(1)[None, None].expand(n, 1, 4, 4).clone()
    y = torch.arange(n) % 2
    data = SalientImageNetDataset(x, y, spur > 0, None, torch.ones(n, dtype=torch.bool), spur.clone(), spur,
                                  torch.ones(n, dtype=torch.bool), num_classes=2, name="coins")
    state = torch.get_rng_state()
    first = core_accuracy(SignProbe(), data, generator=torch.Generator().manual_seed(7))
    assert first == core_accuracy(SignProbe(), data, generator=torch.Generator().manual_seed(7))
    assert core_accuracy(SignProbe(), data) == core_accuracy(SignProbe(), data, generator=torch.Generator()
                                                             .manual_seed(0))
    assert len({core_accuracy(SignProbe(), data, generator=torch.Generator().manual_seed(s)) for s in range(6)}) > 1
    assert torch.equal(torch.get_rng_state(), state)
    # salient_metrics draws the same noise as core_accuracy and spurious_accuracy with its seed
    out = salient_metrics(SignProbe(), data, seed=7, trials=3)
    assert out["core_accuracy"] == core_accuracy(SignProbe(), data, generator=torch.Generator().manual_seed(7),
                                                 trials=3)
    assert out["spurious_accuracy"] == spurious_accuracy(SignProbe(), data, trials=3,
                                                         generator=torch.Generator().manual_seed(7))


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.zeros(len(x), 2)


def test_noise_is_weighted_by_the_soft_mask_clamped_and_in_pixel_units():
    # rule: x + m * noise, clamped to the data range; on normalised data the noise is divided by the std and the
    # clamp is each channel's range
    x = torch.tensor([0.9, 0.2, 0.5])[None, :, None, None].expand(1, 3, 1, 2).clone()
    m = torch.tensor([[[[1.0, 0.5]]]])
    noise = torch.tensor([0.3, -0.4])[None, None, None].expand(1, 3, 1, 2)
    out = noisy_inputs(x, m, noise, 0.0, 1.0)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 0.5, 0.8]))  # 0.9 + 0.3 clamped to 1
    assert torch.allclose(out[0, :, 0, 1], torch.tensor([0.7, 0.0, 0.3]))  # 0.2 - 0.2 = 0
    n = 5
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.5, 0.2)
    x = torch.rand((n, 3, 4, 4), generator=torch.Generator().manual_seed(1))
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    soft = torch.rand((n, 1, 4, 4), generator=torch.Generator().manual_seed(2))
    data = SalientImageNetDataset(x, torch.arange(n) % 2, (soft > 0.5).expand(-1, 3, -1, -1), None,
                                  torch.ones(n, dtype=torch.bool),
                                  soft, soft, torch.ones(n, dtype=torch.bool), num_classes=2, name="normalised",
                                  normalization=(mean, std), input_range=(-2.5, 3.5))
    model = Recorder()
    core_accuracy(model, data, sigma=2.0, generator=torch.Generator().manual_seed(3))
    draws = torch.randn((n, 3, 4, 4), generator=torch.Generator().manual_seed(3)) * 2.0
    s, mu = torch.tensor(std)[:, None, None], torch.tensor(mean)[:, None, None]
    pixels = torch.clamp(x * s + mu + soft * draws, 0, 1)  # the noise added to the pixels, in [0, 1]
    assert len(model.seen) == 1 and torch.allclose(model.seen[0], (pixels - mu) / s, atol=1e-6)


class Lookup(nn.Module):
    """Knows the clean inputs: finds the nearest one (fewest moved pixels), predicts its label while no pixel of
    ``region`` moved, the next class once one did."""

    def __init__(self, clean: torch.Tensor, labels: torch.Tensor, region: torch.Tensor, k: int):
        super().__init__()
        self.clean, self.labels, self.region, self.k = clean, labels, region, k

    def forward(self, x):
        moved = (x[:, None] - self.clean[None]).abs() > 1e-6  # (B, N, C, H, W)
        j = moved.flatten(2).sum(2).argmin(1)
        touched = (moved[torch.arange(len(x)), j] & self.region).flatten(1).any(1)
        pred = torch.where(touched, (self.labels[j] + 1) % self.k, self.labels[j])
        return nn.functional.one_hot(pred, self.k).float()


def test_metrics_on_the_replica_follow_the_mask_files(replica):
    # rule: the loader's soft masks put the noise where the mask files are: a model that reads the top 3 rows
    # fails exactly on the examples whose spurious (core) masks reach them
    data = load(replica)
    ds = data.train
    region = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    region[:3] = True
    model = Lookup(ds.x, ds.y, region, 3)
    recs = records(replica)
    expected = {}
    for spurious in (True, False):
        correct, total = np.zeros(3), np.zeros(3)
        for (wnid, name), y in zip(examples(data, "train"), ds.y.tolist()):
            found = masks_of(recs[wnid], name, spurious)
            if found:
                total[y] += 1
                correct[y] += not (np.maximum.reduce(found)[:3] > 0).any()
        expected[spurious] = float(np.mean(correct[total > 0] / total[total > 0]))
    assert 0 < expected[True] < 1 and 0 < expected[False] < 1  # the region splits both sets
    out = salient_metrics(model, ds)
    assert out["clean_accuracy"] == 1.0
    assert out["core_accuracy"] == pytest.approx(expected[True], abs=1e-12)
    assert out["spurious_accuracy"] == pytest.approx(expected[False], abs=1e-12)
    stream = load(replica, stream=True).train
    assert salient_metrics(model, stream) == out


def test_metrics_refuse_data_without_soft_masks_and_warn_when_nothing_counts():
    # rule: the metrics need soft masks; no example with the masks needed gives NaN and a warning
    from rightreasons.data.dataset import ExplanationDataset

    plain = ExplanationDataset(torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 0, 1]), name="plain")
    with pytest.raises(UserError, match="'plain' has no core and spurious soft masks"):
        core_accuracy(Probe(rows(1)), plain)
    data = probe_dataset().subset(torch.tensor([3, 4, 5]))  # no core masks
    with pytest.warns(UserWarning, match="spurious_accuracy: no example"):
        assert math.isnan(spurious_accuracy(Probe(rows(1)), data))
    with pytest.raises(UserError, match="sigma must be"):
        core_accuracy(Probe(rows(1)), data, sigma=-1.0)
    with pytest.raises(UserError, match="average must be"):
        core_accuracy(Probe(rows(1)), data, average="group")
