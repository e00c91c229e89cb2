"""Salient ImageNet's MTurk answers (``MASKS/discover_spurious_features.csv``, option ``mturk=FILE``) and the
vote that makes each feature core or spurious.

Rows per (class, feature, worker); the columns read are ``Input.class_index`` or ``Input.wordnet_id`` (at least
one; both are checked against wordnet_dict.py), ``Input.feature_index``, ``Answer.main`` (``main_object``,
``separate_object`` or ``background``) and, if present, ``WorkerId`` (a worker answering one feature twice is
an error); other columns are ignored. A feature is spurious for its class when at least 3 answers (of the 5
each feature has) are ``separate_object`` or ``background``, else core (the rule of the authors' code).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ...errors import DataError
from ..csv_common import read_csv
from ..cub import _show
from .class_map import _INDEX, WordNet

MTURK_FILE = "discover_spurious_features.csv"
ANSWERS = ("main_object", "separate_object", "background")
SPURIOUS_ANSWERS = ("separate_object", "background")
#: spurious answers that make a feature spurious (of the 5 workers each feature was shown to)
SPURIOUS_VOTES = 3
COL_CLASS, COL_WNID, COL_FEATURE, COL_ANSWER, COL_WORKER = (
    "Input.class_index", "Input.wordnet_id", "Input.feature_index", "Answer.main", "WorkerId")


def _index(where: str, column: str, cell: str) -> int:
    if not _INDEX.fullmatch(cell):
        raise DataError(f"{where}, column {column!r}: {_show(cell)} is not a non-negative integer")
    return int(cell)


def _columns(path: Path, header: list[str]) -> dict:
    """Column name -> position of the columns read; a missing required column is an error."""
    shown = ", ".join(header)[:200]
    for column in (COL_FEATURE, COL_ANSWER):
        if column not in header:
            raise DataError(f"{path}: missing column {column!r} (expected {COL_CLASS} or {COL_WNID}, {COL_FEATURE} "
                            f"and {COL_ANSWER}; header: {shown})")
    if COL_CLASS not in header and COL_WNID not in header:
        raise DataError(f"{path}: missing column {COL_CLASS!r} (or {COL_WNID!r}); header: {shown}")
    return {name: header.index(name) for name in (COL_CLASS, COL_WNID, COL_FEATURE, COL_ANSWER, COL_WORKER)
            if name in header}


def read_mturk(path: Path, wordnet: WordNet) -> dict:
    """(class index, feature index) -> [spurious answers, answers, first row] from the MTurk CSV."""
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file (the MTurk answers, {MTURK_FILE} of Salient ImageNet; pass "
                        "mturk=FILE if it is elsewhere)")
    header, rows = read_csv(path, "MTurk answers CSV")
    at = _columns(path, header)
    votes: dict = {}
    workers: dict = {}
    for row, cells in rows:
        where = f"{path} row {row}"
        feature = _index(where, COL_FEATURE, cells[at[COL_FEATURE]])
        answer = cells[at[COL_ANSWER]].lower()
        if answer not in ANSWERS:
            raise DataError(f"{where}, column {COL_ANSWER!r}: answer {_show(cells[at[COL_ANSWER]])} is not one of "
                            f"{', '.join(ANSWERS)}")
        cls = _index(where, COL_CLASS, cells[at[COL_CLASS]]) if COL_CLASS in at else None
        if COL_WNID in at:
            w = cells[at[COL_WNID]]
            if cls is None:
                cls = wordnet.index.get(w)
                if cls is None:
                    continue  # a class wordnet_dict.py does not have
            elif cls in wordnet.wnid and wordnet.wnid[cls] != w:
                raise DataError(f"{where}: {COL_WNID} {_show(w)} but {wordnet.path.name} says class {cls} is "
                                f"{wordnet.wnid[cls]!r}")
        if COL_WORKER in at:
            key = (cls, feature, cells[at[COL_WORKER]])
            if key in workers:
                raise DataError(f"{where}: worker {_show(key[2])} already answered class {cls}, feature {feature} "
                                f"on row {workers[key]}")
            workers[key] = row
        entry = votes.setdefault((cls, feature), [0, 0, row])
        entry[0] += answer in SPURIOUS_ANSWERS
        entry[1] += 1
    return votes


def feature_kinds(features: Iterable[int], votes: dict, cls: int, wnid: str, where: Path, mturk: Path) -> dict:
    """feature -> True (spurious: at least ``SPURIOUS_VOTES`` spurious answers) or False (core), for the features
    of class ``cls`` with masks (in order of first appearance); a feature without answers is an error naming
    ``where`` (the class's image_names_map.csv)."""
    kinds: dict = {}
    for feature in features:
        if feature not in kinds:
            v = votes.get((cls, feature))
            if v is None:
                raise DataError(f"{where}: feature {feature} has masks but {mturk} has no answers "
                                f"for class {cls} ({wnid}), feature {feature}")
            kinds[feature] = v[0] >= SPURIOUS_VOTES
    return kinds


def kinds_info(kinds: dict, votes: dict, cls: int) -> tuple[dict, dict]:
    """A class's entries of ``info["features"]`` (its core and spurious features) and ``info["votes"]`` (the
    spurious votes and answers of each feature)."""
    features = {"core": sorted(f for f, s in kinds.items() if not s),
                "spurious": sorted(f for f, s in kinds.items() if s)}
    counts = {str(f): {"spurious": votes[cls, f][0], "answers": votes[cls, f][1]} for f in sorted(kinds)}
    return features, counts
