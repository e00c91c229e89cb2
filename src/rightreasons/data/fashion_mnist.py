"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; Zalando, MIT licence) and its Decoy variant, offline.

The images are read from the four standard IDX files (``train-images-idx3-ubyte.gz`` etc.) that Debian's
package ``dataset-fashion-mnist`` installs under ``/usr/share/datasets/fashion-mnist/``, or from any folder
of those files given as ``source=DIR``, with MNIST's IDX reader and its checks (:func:`load_idx_dir`).
Splits as for MNIST's IDX files: the last sixth of the 60,000 training images is the validation split
(train 50,000 / val 10,000 / test 10,000).

Registered datasets (``(N, 1, 28, 28)`` float32 in [0, 1], 10 classes):

- ``fashion-mnist``: the clean images (the oracle), all-zero masks, has_mask False. Options ``source``,
  ``limit_train`` (as ``mnist``).
- ``decoy-fmnist`` (the Decoy-FMNIST of Friedrich, Stammer, Schramowski & Kersting 2023, "A typology for
  exploring the mitigation of shortcut behaviour", Nature Machine Intelligence): built exactly like
  ``decoy-mnist`` (Ross et al. 2017): a 4x4 swatch in a random corner, shade 255 - 25*y in train,
  255 - 25*(random class) in test; mask = the 16 swatch pixels. Options ``val``, ``limit_train``,
  ``groups``, ``minority``, ``source`` as ``decoy-mnist``'s (see :mod:`.decoy_mnist`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .dataset import DataSplits
from .decoy_mnist import VARIANTS, Variant, build_clean, build_decoy
from .mnist_source import load_idx_dir
from .registry import register_dataset

#: where Debian's ``dataset-fashion-mnist`` installs the four IDX files
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = ("install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or pass "
                "`--data-option source=DIR`, DIR holding the four IDX files of the Fashion-MNIST release "
                "(github.com/zalandoresearch/fashion-mnist)")
PAPER = "Xiao, Rasul & Vollgraf 2017, Fashion-MNIST (arXiv:1708.07747)"


def load_fashion_mnist(source: Optional[os.PathLike | str] = None) -> dict:
    """Fashion-MNIST as ``{"train": (images, labels), "val": ..., "test": ..., "source": str}`` (images uint8
    (N, 28, 28), labels int64), from ``source`` (a directory of the four IDX files) or :data:`DEFAULT_DIR`."""
    return load_idx_dir(DEFAULT_DIR if source is None else source, dataset="Fashion-MNIST", hint=INSTALL_HINT)


_ross = VARIANTS["decoy-mnist"]
DECOY_FMNIST = Variant(
    "decoy-fmnist",
    "Friedrich, Stammer, Schramowski & Kersting 2023, A typology for exploring the mitigation of shortcut "
    "behaviour (Nature Machine Intelligence); construction of Ross et al. 2017 on Fashion-MNIST",
    "Fashion-MNIST; 4x4 swatch in a random corner; shade 255-25*y (train), 255-25*(random class) (test); "
    "mask = swatch",
    _ross.place, _ross.size, _ross.train_shade, _ross.test_shade, _ross.test_random)


@register_dataset("decoy-fmnist")
def decoy_fmnist(seed: int = 0, **options) -> DataSplits:
    """Decoy-FMNIST (Friedrich et al. 2023): Ross et al.'s 4x4 corner swatch (255 - 25*y) on Fashion-MNIST."""
    return build_decoy(DECOY_FMNIST, seed, options, load_fashion_mnist)


@register_dataset("fashion-mnist")
def fashion_mnist(seed: int = 0, **options) -> DataSplits:
    """Clean Fashion-MNIST (the oracle for decoy-fmnist): same splits, all-zero masks, has_mask False."""
    return build_clean("fashion-mnist", PAPER, seed, options, load_fashion_mnist)


__all__ = ["DECOY_FMNIST", "DEFAULT_DIR", "load_fashion_mnist"]
