"""``rightreasons data verify``: check a downloaded copy of a published dataset file by file, collecting every
problem (the loaders stop at the first one).

A verifier walks the files the loader reads, in the loader's order and by the loader's rules (it reuses the
loader's own parsing functions), and records in a :class:`Verification` the examples of each split and their
counts, every file read (for manifests, ``data/manifest.py``) and the problems, by kind (``report.KINDS``):
``missing``, ``unreadable``, ``undecodable`` (every image's header is read, and a JPEG or PNG must end with its
end marker; ``decode=True`` decodes every image), ``mask size``, ``malformed`` index entries and, from a
manifest comparison, ``extra``, ``changed``, ``split`` and ``options``.

When no problem is found the loader itself runs (``stream=true``) and its splits must hold the verifier's
images (``loader`` problems otherwise); a loader whose ``stream=true`` path decodes images (plant) runs only
with ``decode=True``. Verifiers are registered per dataset prefix with :func:`register_verifier`; a loader
module may instead define ``verify_files(v: Verification) -> None``. Without either, the loader runs and its
first error is the one problem reported.

Modules: ``report`` (the record and its report), ``images`` (image files), ``run`` (the registry and
:func:`verify_dataset`), ``shared`` (the checks the verifiers share), and one per dataset: ``isic``, ``plant``,
``cub``, ``waterbirds``.
"""

from __future__ import annotations

from ...errors import DataError, UserError
from ..csv_common import SPLIT_NAMES, open_regular, parse_options, read_bounded
from . import cub, images, isic, plant, run, shared, waterbirds  # noqa: F401  (the verifiers register themselves)
from .cub import verify_cub
from .images import TAIL_BYTES, Bad, image_size
from .isic import verify_isic
from .plant import verify_plant
from .report import KINDS, SAMPLE, Problem, Verification, count_table
from .run import PATH_OPTIONS, RUNTIME_OPTIONS, VERIFIERS, register_verifier, verifier_for, verify_dataset
from .waterbirds import verify_waterbirds

# the private names of the former single module verify.py, for code that imported them
_strip, _load, _plant_list = images._strip, run._load, plant.split_list
_root_ok, _under, _empty_splits, _compare_size = shared.root_ok, shared.under, shared.empty_splits, shared.compare_size

__all__ = ["KINDS", "PATH_OPTIONS", "RUNTIME_OPTIONS", "SAMPLE", "SPLIT_NAMES", "TAIL_BYTES", "VERIFIERS", "Bad",
           "DataError", "Problem", "UserError", "Verification", "count_table", "image_size", "open_regular",
           "parse_options", "read_bounded", "register_verifier", "verifier_for", "verify_cub", "verify_dataset",
           "verify_isic", "verify_plant", "verify_waterbirds"]
