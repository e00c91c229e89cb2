"""waterbirds:PATH on a miniature replica: splits, labels and the group numbering 2 * y + place from
metadata.csv, background masks from CUB's segmentations matched by file stem, and one-line errors."""

import shutil

import pytest
import torch

from replicas_cub import set_line, write_waterbirds
from rightreasons import load_dataset
from rightreasons.errors import DataError, UserError

HW = (32, 40)


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    base = tmp_path_factory.mktemp("wb")
    root, segs = base / "waterbird_complete95_forest2water2", base / "CUB_200_2011" / "segmentations"
    return root, segs, write_waterbirds(root, segs, hw=HW)


@pytest.fixture
def own(replica, tmp_path):
    root, segs, records = replica
    return (shutil.copytree(root, tmp_path / "wb"), shutil.copytree(segs, tmp_path / "segs"), records)


def waterbirds(root, segs=None, **options):
    if segs is not None:
        options["segmentations"] = str(segs)
    options.setdefault("size", "32,40")
    return load_dataset(f"waterbirds:{root}", **options)


def test_splits_labels_and_group_numbering(replica):
    # rule: split 0 train / 1 val / 2 test, y 0 landbird / 1 waterbird, group = 2 * y + place
    # (0 landbird/land, 1 landbird/water, 2 waterbird/land, 3 waterbird/water)
    root, segs, records = replica
    data = waterbirds(root, segs)
    assert data.info["classes"] == ["landbird", "waterbird"]
    assert data.info["groups"] == ["landbird/land", "landbird/water", "waterbird/land", "waterbird/water"]
    for s, name in enumerate(("train", "val", "test")):
        rows = [r for r in records if r.split == s]
        ds = data.split(name)
        assert data.info["image_ids"][name] == [r.img_id for r in rows]
        assert ds.y.tolist() == [r.y for r in rows]
        assert ds.group.tolist() == [2 * r.y + r.place for r in rows] and sorted(ds.group.tolist()) == [0, 1, 2, 3]
        assert ds.num_classes == 2 and ds.num_groups == 4
    by_group = {2 * r.y + r.place: (r.y, r.place) for r in records}
    assert by_group == {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}


def test_masks_are_the_background_of_the_cub_segmentation(replica):
    # rule: mask = complement of pixel / 255 >= mask_threshold (0.5) of the segmentation; mask_invert -> the bird
    root, segs, records = replica
    data = waterbirds(root, segs)
    bird = waterbirds(root, segs, mask_invert=True)
    lower = waterbirds(root, segs, mask_threshold=0.3)
    for s, name in enumerate(("train", "val", "test")):
        rows = [r for r in records if r.split == s]
        for i, r in enumerate(rows):
            seg = torch.from_numpy(r.seg)
            assert torch.equal(data.split(name).mask[i], (seg < 128).expand(3, *HW))
            assert torch.equal(bird.split(name).mask[i, 0], seg >= 128)
            assert torch.equal(lower.split(name).mask[i, 0], seg < 77)
        assert bool(data.split(name).has_mask.all())


def test_segmentations_are_matched_by_file_stem(own, tmp_path):
    # rule: an image's segmentation is the .png of its file stem anywhere under segmentations=DIR
    root, segs, records = own
    flat = tmp_path / "flat" / "any" / "where"
    flat.mkdir(parents=True)
    for png in segs.rglob("*.png"):
        shutil.move(png, flat / png.name)
    data = waterbirds(root, tmp_path / "flat")
    train = [r for r in records if r.split == 0]
    assert torch.equal(data.train.mask[0, 0], torch.from_numpy(train[0].seg < 128))
    shutil.copy(flat / (records[5].filename.split("/")[1].replace(".jpg", ".png")), tmp_path / "flat")
    with pytest.raises(DataError, match=r"metadata.csv row 7\): 2 .* segmentation"):
        waterbirds(root, tmp_path / "flat")


def test_without_segmentations_an_error_unless_mask_none(replica, tmp_path):
    # rule: no segmentations directory is an error naming it, unless mask=none (every example un-annotated)
    root, _, _ = replica
    with pytest.raises(DataError) as e:
        waterbirds(root)
    assert str(e.value).startswith(f"{root / 'segmentations'}: no segmentations directory")
    assert "mask=none" in str(e.value) and "\n" not in str(e.value)
    data = waterbirds(root, mask="none")
    for ds in (data.train, data.val, data.test):
        assert not bool(ds.has_mask.any()) and not bool(ds.mask.any())
    with pytest.raises(UserError, match="segmentations needs mask=segmentation"):
        waterbirds(root, tmp_path, mask="none")


def test_malformed_metadata_is_a_one_line_error_naming_row_and_column(own):
    # rule: split must be 0, 1 or 2, y and place 0 or 1; errors name metadata.csv's row and column
    root, segs, records = own
    csv = root / "metadata.csv"
    good = csv.read_text()
    set_line(csv, 3, f"2,{records[1].filename},1,3,0,/o/ocean/1.jpg")
    with pytest.raises(DataError) as e:
        waterbirds(root, segs)
    assert str(e.value) == f"{csv} row 3, column 'split': '3' is not 0 (train), 1 (val) or 2 (test)"
    csv.write_text(good)
    set_line(csv, 4, f"3,{records[2].filename},waterbird,0,0,/o/ocean/1.jpg")
    with pytest.raises(DataError, match=r"row 4, column 'y': 'waterbird' is not 0 \(landbird\) or 1 \(waterbird\)"):
        waterbirds(root, segs)
    csv.write_text(good.replace("place,", "where,"))
    with pytest.raises(DataError, match="missing column 'place'"):
        waterbirds(root, segs)
    csv.write_text(good)
    (root / records[4].filename).unlink()
    for stream in (False, True):
        with pytest.raises(DataError) as e:
            waterbirds(root, segs, stream=stream)
        assert str(e.value) == f"{root / records[4].filename} (metadata.csv row 6): no such file"
    csv.write_text(good.replace(records[4].filename, "../elsewhere.jpg"))
    with pytest.raises(DataError, match=r"row 6, column 'img_filename': image path '\.\./elsewhere.jpg' resolves"):
        waterbirds(root, segs)


def test_a_missing_segmentation_names_the_image(own):
    # rule: every image needs its segmentation (matched by stem) unless mask=none
    root, segs, records = own
    stem = records[2].filename.split("/")[1].replace(".jpg", "")
    next(segs.rglob(f"{stem}.png")).unlink()
    with pytest.raises(DataError) as e:
        waterbirds(root, segs)
    assert str(e.value) == f"{root / records[2].filename} (metadata.csv row 4): no segmentation {stem}.png under {segs}"


def test_streaming_equals_in_memory(replica):
    # rule: stream=true decodes the same numbers as the in-memory path
    root, segs, _ = replica
    memory = waterbirds(root, segs, size=16, normalize="imagenet")
    stream = waterbirds(root, segs, size=16, normalize="imagenet", stream=True)
    for name in ("train", "val", "test"):
        m, s = memory.split(name), stream.split(name)
        b = s.batch(torch.arange(len(s)))
        assert torch.equal(b.x, m.x) and torch.equal(b.mask.bool(), m.mask) and torch.equal(b.group, m.group)
