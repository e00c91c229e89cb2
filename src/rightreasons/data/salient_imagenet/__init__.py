"""Salient ImageNet (Singla & Feizi, "Salient ImageNet", ICLR 2022): ImageNet training images with soft masks of
the core and spurious features of their class. ``load_dataset("salient-imagenet:IMAGES,MASKS", **options)``.

Layout (both folders are downloads of their own)::

    IMAGES/train/<wnid>/<name>.JPEG     the ImageNet training images (IMAGES may also be the train folder)
    MASKS/wordnet_dict.py               a Python dict literal, class index -> wnid (or wnid -> index)
    MASKS/<wnid>/image_names_map.csv    which image each mask file belongs to
    MASKS/<wnid>/feature_<f>/<name>.JPEG   soft mask 0..255 of feature f on image <name> (JPEG or PNG)
    MASKS/discover_spurious_features.csv   the MTurk answers (option ``mturk=FILE`` if elsewhere)

Paths: the spec holds two folders separated by one comma. A folder whose path has a comma in it: write
``salient-imagenet:MASKS`` with option ``images=IMAGES``; with ``images`` the part after the colon is
MASKS, whole. Any other number of commas is an error.

Features: a feature is spurious for its class when at least 3 of its 5 MTurk answers are ``separate_object``
or ``background``, else core.
``info["features"]`` lists each class's core and spurious features, ``info["votes"]`` their spurious votes and
answers. A feature with masks but no MTurk answers is an error.

Classes: ``classes=`` (wnids or class indices, comma-separated or a list; the labels follow that order) or
``num_classes=N`` (the first N classes, by class index, that have a mask folder); neither: every class with
a mask folder (about 52,000 images: use ``stream=true``). ``info["classes"]`` holds the wnids,
``info["class_indices"]`` their ImageNet indices. Groups are the labels.

Splits: only training images have masks (ImageNet's val images have none), so each class's images are
split with the seed: ``val_fraction`` (default 0.15) and ``test_fraction`` (default 0.15) of them, rounded,
the rest train. ``info["image_names"]`` lists the images of each split, in order.

Masks (1 = ignore): an image's training mask is the union of its spurious features' masks, thresholded at
``mask_threshold`` (default 0.5); an image without a spurious feature mask has ``has_mask`` False. The soft
masks stay for the metrics (:meth:`~SalientImageNetDataset.soft_batch`).

Options: ``size`` (default 224, one number), ``normalize``, ``stream``, ``workers``, ``cache`` (as in
``folder:PATH``), ``classes``, ``num_classes``, ``mturk``, ``mask_threshold``, ``val_fraction``,
``test_fraction``, ``images``. Errors are one line naming the file and row or line.

Modules: :mod:`.class_map` (wordnet_dict.py, parsed, never run), :mod:`.mturk` (the answers and the vote),
:mod:`.masks` (image_names_map.csv and the feature folders), :mod:`.images` (the ImageNet image of each mask),
:mod:`.decoder` (pixels: the centre crop and the masks), :mod:`.dataset` (the datasets with soft masks),
:mod:`.options` (the spec's folders, the options, the classes chosen), :mod:`.loader` (the registered loader).
"""

from __future__ import annotations

from ..cub import _show
from .class_map import (
    _INDEX,
    _WNID,
    LAYOUT,
    MAX_DICT_BYTES,
    WORDNET_FILE,
    WordNet,
    _entry_kind,
    _literal,
    _statement,
    is_class_index,
    is_wnid,
    read_wordnet,
)
from .dataset import SalientImageNetDataset, SalientStreamingDataset, SoftMasks, _as_soft, salient_splits
from .decoder import SalientDecoder, centre_crop
from .images import IMAGE_SUFFIX, IMAGE_SUFFIXES, class_examples, image_file
from .loader import load_salient_imagenet
from .masks import (
    _FEATURE,
    IMAGE_COLUMNS,
    MAP_FILE,
    MASK_COLUMNS,
    MASK_SUFFIXES,
    Entry,
    _feature_files,
    _image_stem,
    _plain_name,
    read_map,
)
from .mturk import (
    ANSWERS,
    COL_ANSWER,
    COL_CLASS,
    COL_FEATURE,
    COL_WNID,
    COL_WORKER,
    MTURK_FILE,
    SPURIOUS_ANSWERS,
    SPURIOUS_VOTES,
    _index,
    feature_kinds,
    kinds_info,
    read_mturk,
)
from .options import DEFAULTS, _class_tokens, _folder, _num_classes, select_classes, split_paths

__all__ = [
    "ANSWERS", "COL_ANSWER", "COL_CLASS", "COL_FEATURE", "COL_WNID", "COL_WORKER", "DEFAULTS", "IMAGE_COLUMNS",
    "IMAGE_SUFFIX", "IMAGE_SUFFIXES", "LAYOUT", "MAP_FILE", "MASK_COLUMNS", "MASK_SUFFIXES", "MAX_DICT_BYTES",
    "MTURK_FILE", "SPURIOUS_ANSWERS", "SPURIOUS_VOTES", "WORDNET_FILE", "Entry", "SalientDecoder",
    "SalientImageNetDataset", "SalientStreamingDataset", "SoftMasks", "WordNet", "centre_crop", "class_examples",
    "feature_kinds", "image_file", "is_class_index", "is_wnid", "kinds_info", "load_salient_imagenet", "read_map",
    "read_mturk", "read_wordnet", "salient_splits", "select_classes", "split_paths",
]
# private helpers kept importable from here, as they were from the single module
_PRIVATE = (_FEATURE, _INDEX, _WNID, _as_soft, _class_tokens, _entry_kind, _feature_files, _folder, _image_stem,
            _index, _literal, _num_classes, _plain_name, _show, _statement)
