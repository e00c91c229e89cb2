"""``salient-imagenet:IMAGES,MASKS``, registered: the classes chosen, their masks and votes, the seeded split
per class, and the splits (see the package docstring)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..csv_common import SPLIT_NAMES, one_line_errors, split_generator, stratified_split
from ..dataset import DataSplits
from ..folder import _make_cache_dir
from ..image_files import _input_range
from ..registry import register_path_dataset
from ..streaming import ExampleCache
from .class_map import WORDNET_FILE, read_wordnet
from .dataset import salient_splits
from .decoder import SalientDecoder
from .images import class_examples
from .masks import MAP_FILE, read_map
from .mturk import MTURK_FILE, feature_kinds, kinds_info, read_mturk
from .options import _folder, check_options, select_classes, split_paths


@register_path_dataset("salient-imagenet", default_model="resnet18", default_epochs=30, default_batch_size=32)
@one_line_errors
def load_salient_imagenet(path: str, seed: int = 0, **options) -> DataSplits:
    """Salient ImageNet's images with the union of their spurious masks as the mask (see the package docstring)."""
    source = f"salient-imagenet:{path}"
    o = check_options(source, options)
    opts, size, norm, stream, workers, cache = o.opts, o.size, o.norm, o.stream, o.workers, o.cache
    val_f, test_f = o.val_fraction, o.test_fraction
    rng = split_generator(seed, "salient-imagenet")
    images_arg, masks_arg = split_paths(path, opts["images"])
    images = _folder(images_arg, "the ImageNet images, IMAGES")
    images = images / "train" if (images / "train").is_dir() else images
    masks = _folder(masks_arg, "the Salient ImageNet masks, MASKS")
    wordnet = read_wordnet(masks / WORDNET_FILE)
    mturk = Path(opts["mturk"]) if opts["mturk"] is not None else masks / MTURK_FILE
    chosen = select_classes(source, masks, wordnet, opts["classes"], opts["num_classes"])
    votes = read_mturk(mturk, wordnet)

    examples, y, has_mask, has_core, names = [], [], [], [], []
    features_info, votes_info = {}, {}
    for label, cls in enumerate(chosen):
        wnid = wordnet.wnid[cls]
        class_dir = masks / wnid
        entries = read_map(class_dir)
        kinds = feature_kinds((e.feature for e in entries), votes, cls, wnid, class_dir / MAP_FILE, mturk)
        features_info[wnid], votes_info[wnid] = kinds_info(kinds, votes, cls)
        for image, example in class_examples(images / wnid, entries, kinds):
            spurious = [s for _, _, s in example[2]]
            examples.append(example)
            y.append(label)
            has_mask.append(any(spurious))
            has_core.append(not all(spurious))
            names.append(image)

    y = np.array(y, dtype=np.int64)
    split = stratified_split(y, rng, val_f, test_f)
    for i, name in enumerate(SPLIT_NAMES):
        if not (split == i).any():
            raise DataError(f"{masks}: the {name} split is empty (too few images for val_fraction={val_f:g}, "
                            f"test_fraction={test_f:g})")
    decoder = SalientDecoder(examples, size, norm, o.threshold, None if cache is None else ExampleCache(cache))
    low, high = _input_range(norm)
    wnids = [wordnet.wnid[c] for c in chosen]
    names_array = np.array(names, dtype=object)
    info = {"dataset": "salient-imagenet", "images_path": str(images), "masks_path": str(masks),
            "mturk": str(mturk), "classes": wnids, "groups": wnids, "class_indices": chosen,
            "features": features_info, "votes": votes_info,
            "split": f"seeded per class: {val_f:g} val, {test_f:g} test", "seed": seed,
            "image_size": list(size), "channels": 3, "normalize": opts["normalize"], "input_range": [low, high],
            "mask_threshold": o.threshold, "annotated": int(sum(has_mask)), "stream": stream,
            "image_names": {s: names_array[split == i].tolist() for i, s in enumerate(SPLIT_NAMES)}}
    if stream:
        if cache is not None:
            _make_cache_dir(source, cache)
        info.update(workers=workers, cache=None if cache is None else str(cache))
    out = salient_splits(decoder, split, y, has_mask, has_core, num_classes=len(chosen),
                         normalization=None if norm is None else (tuple(norm[0]), tuple(norm[1])),
                         input_range=(low, high), stream=stream, workers=workers)
    info["sizes"] = {s: len(out[s]) for s in SPLIT_NAMES}
    return DataSplits(out["train"], out["val"], out["test"], info)
