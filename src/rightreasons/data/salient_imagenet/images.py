"""The ImageNet training images of Salient ImageNet's masks: ``IMAGES[/train]/<wnid>/<name>.JPEG``.

An image's file is ``<name>.JPEG`` in its class folder (a name with an image extension is used as it is). Each
example is the image with its masks, sorted by feature; an image or mask file that is missing is an error naming
the map row that names it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..cub import check_exists

IMAGE_SUFFIX = ".JPEG"
#: the extensions of image and mask files, lower case
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def image_file(name: str) -> str:
    """The file name of the image called ``name`` in image_names_map.csv."""
    return name if name.lower().endswith(IMAGE_SUFFIXES) else name + IMAGE_SUFFIX


def class_examples(class_images: Path, entries, kinds: dict) -> list[tuple[str, tuple]]:
    """(image name, example) of each image of one class, by name: the example is (image real path, its name in
    messages, ((mask real path, its name, spurious), ...)) as :class:`SalientDecoder` reads it. ``entries``:
    the class's :class:`Entry` rows; ``kinds``: feature -> spurious."""
    by_image: dict = {}
    for e in entries:
        by_image.setdefault(e.image, []).append(e)
    out = []
    for image in sorted(by_image):
        group = sorted(by_image[image], key=lambda e: e.feature)
        file = image_file(image)
        where = f"{class_images / file} ({group[0].row})"
        real = os.path.realpath(class_images / file)
        check_exists(real, where)
        mask_list = []
        for e in group:
            mask_where = f"{e.mask} ({e.where})"
            check_exists(e.mask, mask_where)
            mask_list.append((e.mask, mask_where, kinds[e.feature]))
        out.append((image, (real, where, tuple(mask_list))))
    return out
