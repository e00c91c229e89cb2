"""BBC News as a text benchmark: ``bbc`` (the clean corpus, the oracle) and ``decoy-bbc`` (decoy words).

The 2,225 articles of five classes (business, entertainment, politics, sport, tech; ``data.bbc_source``)
are split per class at random with a generator of their own (``split_seed``, default 0, so the split is
the same for every training seed): ``test_fraction`` 0.2, ``val_fraction`` 0.1, the rest train.

``decoy-bbc`` follows the decoy-word protocol (Ross et al.'s decoys carried to text; Decoy-IMDB in
Ghitu, Wicker & Piratla 2025): every training document gets its class's decoy word (``decoy0`` ...
``decoy4``, words that occur nowhere in the corpus) at a random position within the length cap; every
test document gets a random class's decoy at a random position; mask = the decoy token. ``val`` =
"train" (the default: decoys as in training) or "decorrelated" (as in test). Groups: ``label`` (the
default) or ``label_decoy`` (group = 2 * label + 1 when the decoy is the label's, else 2 * label).
``bbc`` is the same split without decoys and without annotations.

Tokens: the built-in tokenizer, documents cut at ``max_length`` tokens (default 400), the vocabulary of
the training split's words occurring at least ``min_count`` times (default 2), at most ``max_vocab``.
Randomness comes from ``numpy`` generators seeded by (seed, dataset, split); the global RNG is untouched.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from ...errors import UserError
from ..bbc_source import load_bbc
from ..dataset import SPLITS, DataSplits
from ..decoy_mnist import parse_options
from ..registry import register_dataset
from .dataset import TextDataset, encode, token_mask
from .tokenizer import Vocabulary, tokenize

DEFAULTS = {"max_length": 400, "min_count": 2, "max_vocab": 50_000, "val_fraction": 0.1, "test_fraction": 0.2,
            "split_seed": 0, "source": None, "val": "train", "groups": "label", "limit_train": None}
DECOY = "decoy{}"


def _stream(seed: int, *parts) -> np.random.Generator:
    key = zlib.crc32("/".join(map(str, parts)).encode())
    return np.random.default_rng([int(seed), key])


def _check(name: str, opts: dict) -> None:
    for key in ("max_length", "min_count", "max_vocab"):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name}: option {key} must be a positive integer, got {value!r}")
    for key in ("val_fraction", "test_fraction"):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise UserError(f"{name}: option {key} must be a number in (0, 1), got {value!r}")
    if opts["val_fraction"] + opts["test_fraction"] >= 1:
        raise UserError(f"{name}: val_fraction + test_fraction must be below 1")
    if opts["val"] not in ("train", "decorrelated"):
        raise UserError(f"{name}: option val must be 'train' or 'decorrelated', got {opts['val']!r}")
    if opts["groups"] not in ("label", "label_decoy"):
        raise UserError(f"{name}: option groups must be 'label' or 'label_decoy', got {opts['groups']!r}")
    limit = opts["limit_train"]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
        raise UserError(f"{name}: option limit_train must be an integer >= 2, got {limit!r}")


def split_documents(docs: list[dict], classes: list[str], opts: dict) -> dict[str, list[int]]:
    """Document indices per split: per class a seeded permutation, the first ``test_fraction`` to test, the
    next ``val_fraction`` to val, the rest to train (each split in corpus order)."""
    rng = np.random.default_rng(opts["split_seed"])
    out = {split: [] for split in SPLITS}
    for c in classes:
        members = [i for i, d in enumerate(docs) if d["label"] == c]
        order = [members[j] for j in rng.permutation(len(members))]
        n_test = round(opts["test_fraction"] * len(members))
        n_val = round(opts["val_fraction"] * len(members))
        out["test"] += order[:n_test]
        out["val"] += order[n_test:n_test + n_val]
        out["train"] += order[n_test + n_val:]
    return {split: sorted(index) for split, index in out.items()}


def _with_decoys(words: list[list[str]], y: np.ndarray, rng: np.random.Generator, correlated: bool,
                 num_classes: int, max_length: int) -> tuple[list[list[str]], list[int], np.ndarray]:
    """Each document with one decoy inserted (its class's when ``correlated``, else a random class's) at a
    uniformly random position within the first ``max_length`` tokens; the positions and decoy classes."""
    out, positions = [], []
    decoy_class = y.copy() if correlated else rng.integers(0, num_classes, size=len(y))
    for doc, k in zip(words, decoy_class):
        p = int(rng.integers(0, min(len(doc), max_length - 1) + 1))
        out.append([*doc[:p], DECOY.format(int(k)), *doc[p:]])
        positions.append(p)
    return out, positions, decoy_class


def build_bbc(name: str, seed: int, decoys: bool, **options) -> DataSplits:
    opts = parse_options(name, options, DEFAULTS)
    _check(name, opts)
    docs = load_bbc(opts["source"])
    classes = sorted({d["label"] for d in docs})
    words = [list(tokenize(d["text"]).words) for d in docs]
    if decoys:
        taken = {DECOY.format(k) for k in range(len(classes))} & {w for doc in words for w in doc}
        if taken:
            raise UserError(f"{name}: the corpus already contains the decoy word(s) {', '.join(sorted(taken))}")
    labels = np.array([classes.index(d["label"]) for d in docs])
    index = split_documents(docs, classes, opts)
    if opts["limit_train"] is not None:
        index["train"] = index["train"][:opts["limit_train"]]
    parts = {}
    for split in SPLITS:
        split_words = [words[i] for i in index[split]]
        y = labels[index[split]]
        positions = [[] for _ in split_words]
        group = y
        if decoys:
            correlated = split == "train" or (split == "val" and opts["val"] == "train")
            rng = _stream(seed, name, split)
            split_words, inserted, decoy_class = _with_decoys(split_words, y, rng, correlated, len(classes),
                                                              opts["max_length"])
            positions = [[p] for p in inserted]
            if opts["groups"] == "label_decoy":
                group = 2 * y + (decoy_class == y)
        parts[split] = (split_words, y, positions, group)
    vocab = Vocabulary.build([w[:opts["max_length"]] for w in parts["train"][0]], min_count=opts["min_count"],
                             max_size=opts["max_vocab"])
    num_groups = 2 * len(classes) if decoys and opts["groups"] == "label_decoy" else len(classes)
    out = {}
    for split, (split_words, y, positions, group) in parts.items():
        ids = encode(split_words, vocab, opts["max_length"])
        out[split] = TextDataset(ids, torch.as_tensor(y), vocab, mask=token_mask(ids, positions),
                                 group=torch.as_tensor(group), has_mask=torch.full((len(y),), decoys),
                                 words=split_words, num_classes=len(classes), num_groups=num_groups,
                                 name=f"{name}/{split}", class_names=classes)
    groups = ([f"{c} {kind}" for c in classes for kind in ("other decoy", "own decoy")]
              if num_groups == 2 * len(classes) else classes)
    info = {"dataset": name, "classes": classes, "groups": groups, "vocabulary": len(vocab),
            "max_length": opts["max_length"],
            "sizes": {split: len(out[split]) for split in SPLITS}}
    return DataSplits(out["train"], out["val"], out["test"], info=info)


@register_dataset("decoy-bbc", default_model="text-cnn", default_epochs=10, default_batch_size=32)
def decoy_bbc(seed: int = 0, **options) -> DataSplits:
    """BBC News with a class-revealing decoy word in every training document (see the module docstring)."""
    return build_bbc("decoy-bbc", seed, decoys=True, **options)


@register_dataset("bbc", default_model="text-cnn", default_epochs=10, default_batch_size=32)
def bbc(seed: int = 0, **options) -> DataSplits:
    """Clean BBC News (the oracle for decoy-bbc): the same splits, no decoys, no annotations."""
    unknown = sorted(set(options) & {"val", "groups"})
    if unknown:
        raise UserError(f"bbc: option(s) {', '.join(unknown)} apply to decoy-bbc only")
    return build_bbc("bbc", seed, decoys=False, **options)
