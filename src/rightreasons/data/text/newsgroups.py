"""20 Newsgroups, alt.atheism vs soc.religion.christian, the text task of Ross et al. ("Right for the Right
Reasons", IJCAI 2017): ``load_dataset("newsgroups:PATH", **options)``. PATH is the ``20news-bydate.tar.gz``
tarball (Rennie's "bydate" version, the one scikit-learn fetches) or a folder holding it or its extracted
``20news-bydate-train/`` and ``20news-bydate-test/`` (each ``<newsgroup>/<number>``, one post per file).

The tarball is read in place, never extracted: only directories and regular files in that layout are
accepted (``20news-bydate-{train,test}/<group>/<number>``); any other member (``../x``, an absolute path, a
symbolic or hard link, a device) is an error naming it; at most MAX_MEMBERS members, MAX_POST_BYTES per post
and MAX_TOTAL_BYTES in all. In a folder, a post that is a symbolic link is refused; hidden files are skipped.
Posts are decoded as latin-1 (as scikit-learn does) and kept whole, headers included (as Ross et al.).

- Labels: option ``categories`` (default ``alt.atheism,soc.religion.christian``), numbered in sorted order.
  Splits: test = ``20news-bydate-test``; ``val_fraction`` (default 0.15) of each class of
  ``20news-bydate-train`` is drawn as val with a generator seeded by ``split_seed`` (default 0: the same split
  for every training seed), the rest is train. Posts are in (group, number) order.
- ``features=tokens`` (default): TextDatasets (built-in tokenizer, ``max_length`` 400, ``min_count`` 2,
  ``max_vocab``); there are no annotations (``has_mask`` False).
- ``features=tfidf``: ExplanationDatasets of ``max_features`` (default 5000) TF-IDF features, scikit-learn's
  ``TfidfVectorizer`` defaults written out: terms are the built-in tokenizer's words (punctuation marks
  dropped; scikit-learn's own pattern also drops one-letter words); the vocabulary is the ``max_features``
  terms of highest total count in the training split (ties alphabetically), in alphabetical order; for a
  document d and term t, x[d, t] = count(t, d) * (ln((1 + N) / (1 + df(t))) + 1), N the number of training
  documents and df(t) the number containing t; each row is then divided by its L2 norm (an all-zero row
  stays zero). x is float32 (N, F) in [0, 1], no masks (``has_mask`` False); train a non-text model on it
  (``--model mlp``).
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ...errors import DataError, UserError
from ..csv_common import (
    DEFAULT_VAL_FRACTION,
    SPLIT_NAMES,
    one_line_errors,
    open_regular,
    option_fraction,
    option_names,
    read_bounded,
    split_generator,
    stratified_split,
)
from ..dataset import DataSplits, ExplanationDataset
from ..registry import register_path_dataset
from .table import TEXT_DEFAULTS, Example, build_text_splits, check_choice, check_count, text_options
from .tokenizer import tokenize

TARBALL = "20news-bydate.tar.gz"
FOLDERS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
CATEGORIES = "alt.atheism,soc.religion.christian"
FEATURES = ("tokens", "tfidf")
DEFAULTS = {**TEXT_DEFAULTS, "categories": CATEGORIES, "features": "tokens", "max_features": 5000,
            "val_fraction": DEFAULT_VAL_FRACTION, "split_seed": 0}
#: the largest tarball, member count, post and total of member sizes read (the real tarball: 14 MiB,
#: about 18,900 members, posts below 200 KiB, about 50 MiB in all)
MAX_ARCHIVE_BYTES = 1 << 30
MAX_MEMBERS = 200_000
MAX_POST_BYTES = 16 << 20
MAX_TOTAL_BYTES = 2 << 30
PAPER = "Ross et al., Right for the Right Reasons: Training Differentiable Models by Constraining their " \
        "Explanations, IJCAI 2017"
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_POST = re.compile(r"[0-9]+")
_WORD = re.compile(r"\w")


def _member_place(name: str):
    """(split, group, number) of a member path in the layout (group / number None for the folders), or None."""
    if name.startswith("./"):
        name = name[2:]
    parts = name.rstrip("/").split("/")
    if not parts or parts[0] not in FOLDERS.values() or "\\" in name or "\x00" in name:
        return None
    split = "train" if parts[0] == FOLDERS["train"] else "test"
    if len(parts) == 1:
        return split, None, None
    if not _GROUP.fullmatch(parts[1]) or parts[1] in (".", ".."):
        return None
    if len(parts) == 2:
        return split, parts[1], None
    if len(parts) == 3 and _POST.fullmatch(parts[2]):
        return split, parts[1], parts[2]
    return None


def read_tarball(path: Path, categories: list[str]) -> dict[str, dict[tuple[str, int], str]]:
    """split -> {(group, number): post text} of the chosen categories, from the tarball (see the module
    docstring for what is refused)."""
    fh, info = open_regular(path, "20news-bydate.tar.gz archive")
    posts = {split: {} for split in FOLDERS}
    with fh:
        if info.st_size > MAX_ARCHIVE_BYTES:
            raise DataError(f"{path}: {info.st_size} bytes, larger than an archive of 20 Newsgroups can be")
        seen, total = set(), 0
        try:
            with tarfile.open(fileobj=fh, mode="r|*") as tar:
                for count, member in enumerate(tar, start=1):
                    name = member.name
                    if count > MAX_MEMBERS:
                        raise DataError(f"{path}: more than {MAX_MEMBERS} members; not the 20news-bydate archive")
                    place = _member_place(name)
                    if place is None:
                        raise DataError(f"{path}: member {name[:200]!r} is outside the layout "
                                        "20news-bydate-{train,test}/<group>/<number>")
                    split, group, number = place
                    is_file = number is not None
                    if is_file and not member.isreg() or not is_file and not member.isdir():
                        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else \
                            "a directory" if member.isdir() else "a file" if member.isreg() else "a special file"
                        raise DataError(f"{path}: member {name[:200]!r} is {kind}; expected "
                                        f"{'a regular file (a post)' if is_file else 'a directory'}")
                    if not is_file:
                        continue
                    key = (split, group, number)
                    if key in seen:
                        raise DataError(f"{path}: member {name[:200]!r} appears twice")
                    seen.add(key)
                    if member.size > MAX_POST_BYTES:
                        raise DataError(f"{path}: member {name[:200]!r} has {member.size} bytes, more than a post "
                                        f"may ({MAX_POST_BYTES})")
                    total += member.size
                    if total > MAX_TOTAL_BYTES:
                        raise DataError(f"{path}: members larger than {MAX_TOTAL_BYTES} bytes in all")
                    if group in categories:
                        data = tar.extractfile(member).read(MAX_POST_BYTES + 1)
                        posts[split][(group, int(number))] = data.decode("latin-1")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"{path}: not a readable tar archive ({str(exc) or type(exc).__name__})") from None
    return posts


def read_folder(root: Path, categories: list[str]) -> dict[str, dict[tuple[str, int], str]]:
    """split -> {(group, number): post text} from the extracted folders."""
    posts = {split: {} for split in FOLDERS}
    for split, folder in FOLDERS.items():
        for group in categories:
            directory = root / folder / group
            if not directory.is_dir():
                raise DataError(f"{directory}: no such folder (expected {folder}/<group>/<number> under {root})")
            with os.scandir(directory) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.name.startswith("."):
                        continue
                    where = f"{directory / entry.name}"
                    if entry.is_symlink():
                        raise DataError(f"{where}: a symbolic link; posts must be regular files")
                    if not _POST.fullmatch(entry.name):
                        raise DataError(f"{where}: not a post (post files are named by their number)")
                    mode = entry.stat(follow_symlinks=False).st_mode
                    if not stat.S_ISREG(mode):
                        raise DataError(f"{where}: not a regular file")
                    data = read_bounded(Path(where), "post", MAX_POST_BYTES)
                    posts[split][(group, int(entry.name))] = data.decode("latin-1")
    return posts


def _source(root: Path):
    """("tarball", path) or ("folder", path) for PATH."""
    if root.is_dir():
        if all((root / f).is_dir() for f in FOLDERS.values()):
            return "folder", root
        if (root / TARBALL).exists():
            return "tarball", root / TARBALL
        raise DataError(f"{root}: neither {TARBALL} nor the folders {', '.join(FOLDERS.values())}")
    return "tarball", root


def tfidf_vocabulary(train_terms: list[list[str]], size: int) -> list[str]:
    """The ``size`` terms of highest total count (ties alphabetically), in alphabetical order."""
    counts = Counter(t for doc in train_terms for t in doc)
    return sorted(sorted(counts, key=lambda t: (-counts[t], t))[:size])


def tfidf(train_terms: list[list[str]], docs: list[list[str]], vocabulary: list[str]) -> np.ndarray:
    """(len(docs), len(vocabulary)) float32: count * (ln((1 + N) / (1 + df)) + 1), rows L2-normalised; N and
    df from ``train_terms``."""
    index = {t: i for i, t in enumerate(vocabulary)}
    df = np.zeros(len(vocabulary), dtype=np.float64)
    for doc in train_terms:
        for t in set(doc):
            if t in index:
                df[index[t]] += 1
    idf = np.log((1.0 + len(train_terms)) / (1.0 + df)) + 1.0
    out = np.zeros((len(docs), len(vocabulary)), dtype=np.float32)
    for row, doc in enumerate(docs):
        counts = Counter(t for t in doc if t in index)
        if not counts:
            continue
        cols = np.array([index[t] for t in counts], dtype=np.int64)
        values = np.array(list(counts.values()), dtype=np.float64) * idf[cols]
        out[row, cols] = values / np.sqrt((values ** 2).sum())
    return out


def terms(text: str) -> list[str]:
    """The built-in tokenizer's words of ``text`` (punctuation marks dropped)."""
    return [w for w in tokenize(text).words if _WORD.match(w)]


@register_path_dataset("newsgroups", default_model="text-cnn", default_epochs=10, default_batch_size=32)
@one_line_errors
def load_newsgroups(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """20 Newsgroups, alt.atheism vs soc.religion.christian by default (see the module docstring)."""
    root = Path(path)
    source = f"newsgroups:{path}"
    opts = text_options(source, options, DEFAULTS)
    categories = sorted(option_names(source, "categories", opts["categories"]))
    if len(categories) < 2:
        raise UserError(f"{source}: option categories must name at least two newsgroups")
    for name in categories:
        if not _GROUP.fullmatch(name):
            raise UserError(f"{source}: option categories: {name!r} is not a newsgroup name")
    features = check_choice(source, "features", opts["features"], FEATURES)
    size = check_count(source, "max_features", opts["max_features"])
    val_fraction = option_fraction(source, "val_fraction", opts["val_fraction"])
    if val_fraction <= 0:
        raise UserError(f"{source}: option val_fraction must be above 0")
    split_seed = check_count(source, "split_seed", opts["split_seed"], minimum=0)
    kind, where = _source(root)
    posts = read_tarball(where, categories) if kind == "tarball" else read_folder(where, categories)
    for split, folder in FOLDERS.items():
        for group in categories:
            if not any(g == group for g, _ in posts[split]):
                raise DataError(f"{where}: no posts of {group} in {folder}")
    texts, labels = {}, {}
    for split in FOLDERS:
        keys = sorted(posts[split])
        texts[split] = [posts[split][k] for k in keys]
        labels[split] = np.array([categories.index(g) for g, _ in keys], dtype=np.int64)
    assign = stratified_split(labels["train"], split_generator(split_seed, "newsgroups"), val_fraction, 0.0)
    index = {"train": np.flatnonzero(assign == 0), "val": np.flatnonzero(assign == 1)}
    chosen = {"train": [texts["train"][i] for i in index["train"]], "val": [texts["train"][i] for i in index["val"]],
              "test": texts["test"]}
    y = {"train": labels["train"][index["train"]], "val": labels["train"][index["val"]], "test": labels["test"]}
    info = {"path": str(root), "paper": PAPER, "source": kind, "categories": categories, "features": features,
            "split": f"20news-bydate train/test; {val_fraction:g} of each train class drawn as val "
                     f"(split_seed {split_seed})", "seed": seed}
    if features == "tokens":
        parts = {split: [Example(list(tokenize(t).words), int(c)) for t, c in zip(chosen[split], y[split])]
                 for split in SPLIT_NAMES}
        return build_text_splits("newsgroups", parts, categories, opts, info)
    split_terms = {split: [terms(t) for t in chosen[split]] for split in SPLIT_NAMES}
    vocabulary = tfidf_vocabulary(split_terms["train"], size)
    out = {}
    for split in SPLIT_NAMES:
        x = torch.from_numpy(tfidf(split_terms["train"], split_terms[split], vocabulary))
        out[split] = ExplanationDataset(x, torch.from_numpy(y[split]), num_classes=len(categories),
                                        name=f"newsgroups/{split}", input_range=(0.0, 1.0))
    info.update({"classes": categories, "tfidf": "count * (ln((1 + N) / (1 + df)) + 1), rows L2-normalised",
                 "vocabulary": vocabulary, "sizes": {s: len(out[s]) for s in SPLIT_NAMES}})
    return DataSplits(out["train"], out["val"], out["test"], info=info)
