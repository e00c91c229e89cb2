"""e-SNLI (Camburu et al., "e-SNLI: Natural Language Inference with Natural Language Explanations", NeurIPS
2018): ``load_dataset("esnli:PATH", **options)``, PATH the folder of the dataset's CSV files::

    PATH/esnli_train_1.csv, esnli_train_2.csv   train (one annotator: columns ..._1)
    PATH/esnli_dev.csv                          val (three annotators: ..._1, ..._2, ..._3)
    PATH/esnli_test.csv                         test (three annotators)

Columns read: ``pairID``, ``gold_label``, ``Sentence1`` (premise), ``Sentence2`` (hypothesis) and, per
annotator k, ``Sentence1_marked_k`` / ``Sentence2_marked_k`` (the sentence with each highlighted word
between stars: ``A *man,* sleeps``) or, with ``highlights=indices``, ``Sentence1_Highlighted_k`` /
``Sentence2_Highlighted_k`` (comma-separated 0-based word indices, ``{}`` for none); other columns (the
explanations, ``WorkerId``) are ignored.

- Input: the premise's tokens (built-in tokenizer), a ``[sep]`` token, the hypothesis's tokens. Labels:
  entailment 0, neutral 1, contradiction 2 (SNLI's order); a ``-`` gold label (no consensus) is dropped
  and counted; another value is an error.
- Highlights: e-SNLI's annotators clicked whole words, a word being a run between single spaces with its
  punctuation attached (``man,``). The e-SNLI authors ask to read the highlights from the ``marked``
  columns and to ignore the ``Highlighted`` indices, which are indices into the sentence split at single
  spaces (the authors' answer in the dataset's issue tracker). ``highlights=marked`` (default): word i of
  the sentence is highlighted when word i of the marked sentence is the word with stars added (words split
  at single spaces, or at any whitespace when the two differ only in spacing); a marked sentence that does
  not match its sentence word for word is unreadable, counted in ``info["unreadable_highlights"]`` and read
  as no highlight (an empty marked cell highlights nothing). ``highlights=indices``: the listed words (an
  index beyond the sentence is an error naming the row). A highlighted word marks every built-in token
  inside it (``man,`` -> ``man`` and ``,``).
- Rationale: train, annotator 1's highlights; val and test, the tokens highlighted by a majority (2 of 3)
  of the annotators. A pair that no annotator highlighted has no annotation (``has_mask`` False).
- Option ``rationale``: ``relevant`` (the default: highlights mark the evidence, mask = the pair's other
  tokens, ``[sep]`` never masked; a pair whose rationale is empty or beyond ``max_length`` is not
  annotated) or ``ignore``.

Options: ``limit_train=N`` (the first N training pairs in file order; train has about 550,000),
``highlights``, ``rationale``, ``max_length`` (default 400), ``min_count`` (default 2), ``max_vocab``.
Errors are one-line DataErrors naming the file, row and column.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import DataError
from ..csv_common import one_line_errors
from ..dataset import DataSplits
from ..registry import register_path_dataset
from .table import (
    SEP,
    TEXT_DEFAULTS,
    Example,
    build_text_splits,
    check_choice,
    check_count,
    csv_records,
    require_columns,
    text_options,
)
from .tokenizer import tokenize, tokens_in_spans

CLASSES = ["entailment", "neutral", "contradiction"]
FILES = {"train": ("esnli_train_1.csv", "esnli_train_2.csv"), "val": ("esnli_dev.csv",),
         "test": ("esnli_test.csv",)}
SOURCES = ("marked", "indices")
DEFAULTS = {**TEXT_DEFAULTS, "rationale": "relevant", "highlights": "marked", "limit_train": None}
PAPER = "Camburu et al., e-SNLI: Natural Language Inference with Natural Language Explanations, NeurIPS 2018"
_INDEX = re.compile(r"[0-9]+")


def word_spans(sentence: str) -> list[tuple[int, int]]:
    """The character spans of the sentence's words: the runs between single spaces (empty ones included,
    so that indices count as ``sentence.split(" ")`` does)."""
    spans, start = [], 0
    for word in sentence.split(" "):
        spans.append((start, start + len(word)))
        start += len(word) + 1
    return spans


def _aligned(words: list[str], marks: list[str]):
    """Indices of ``words`` that ``marks`` highlights (stars added), or None when they do not align."""
    if len(words) != len(marks):
        return None
    out = []
    for i, (word, mark) in enumerate(zip(words, marks)):
        if mark == word:
            continue
        if mark.replace("*", "") != word.replace("*", "") or mark.count("*") <= word.count("*"):
            return None
        out.append(i)
    return out


def marked_spans(sentence: str, marked: str):
    """The character spans of the words of ``sentence`` that ``marked`` highlights (``*word*``); None when
    ``marked`` is not ``sentence`` with stars added around some of its words. Words are compared as runs
    between single spaces, or, should the two differ only in their spacing, as runs of non-space characters.
    An empty ``marked`` highlights nothing."""
    if not marked.strip():
        return []
    found = _aligned(sentence.split(" "), marked.split(" "))
    if found is not None:
        spans = word_spans(sentence)
        return [spans[i] for i in found]
    runs = [m.span() for m in re.finditer(r"\S+", sentence)]
    found = _aligned([sentence[a:b] for a, b in runs], marked.split())
    return None if found is None else [runs[i] for i in found]


def index_spans(sentence: str, cell: str, where: str) -> list[tuple[int, int]]:
    """The character spans of the words a ``Sentence*_Highlighted_k`` cell lists (0-based indices into the
    sentence split at single spaces; ``{}`` or empty: none)."""
    cell = cell.strip()
    if cell in ("", "{}"):
        return []
    spans = word_spans(sentence)
    out = []
    for part in cell.split(","):
        part = part.strip()
        if not _INDEX.fullmatch(part):
            raise DataError(f"{where}: {part[:20]!r} is not a word index (expected comma-separated integers or {{}})")
        if int(part) >= len(spans):
            raise DataError(f"{where}: word index {part} is beyond the sentence's {len(spans)} words "
                            "(split at spaces)")
        out.append(spans[int(part)])
    return out


def _split_examples(paths: list[Path], opts: dict, limit, stats: dict, split: str) -> list[Example]:
    out = []
    for path in paths:
        header, rows = csv_records(path, "e-SNLI CSV file")
        base = require_columns(path, header, ("pairID", "gold_label", "Sentence1", "Sentence2"))
        kind = "marked" if opts["highlights"] == "marked" else "Highlighted"
        annotators = [k for k in (1, 2, 3) if f"Sentence1_{kind}_{k}" in header]
        if not annotators:
            raise DataError(f"{path}: no column Sentence1_{kind}_1; columns: {', '.join(header)}")
        cols = require_columns(path, header, [f"Sentence{s}_{kind}_{k}" for k in annotators for s in (1, 2)])
        if split == "train":
            annotators = annotators[:1]
        for row, cells in rows:
            if limit is not None and len(out) >= limit:
                return out
            label = cells[base["gold_label"]].strip()
            if label == "-":
                stats["dropped_no_gold_label"][split] += 1
                continue
            if label not in CLASSES:
                raise DataError(f"{path} row {row}, column 'gold_label': {label[:40]!r} is not one of "
                                f"{', '.join(CLASSES)}")
            sentences = [cells[base["Sentence1"]], cells[base["Sentence2"]]]
            tokens = [tokenize(s) for s in sentences]
            offsets = [0, len(tokens[0]) + 1]
            votes: dict[int, int] = {}
            highlighted = False
            for k in annotators:
                marked = set()
                for s in (0, 1):
                    column = f"Sentence{s + 1}_{kind}_{k}"
                    cell = cells[cols[column]]
                    if kind == "marked":
                        spans = marked_spans(sentences[s], cell)
                        if spans is None:
                            stats["unreadable_highlights"] += 1
                            spans = []
                    else:
                        spans = index_spans(sentences[s], cell, f"{path} row {row}, column {column!r}")
                    marked |= {offsets[s] + t for t in tokens_in_spans(tokens[s], spans)}
                highlighted |= bool(marked)
                for t in marked:
                    votes[t] = votes.get(t, 0) + 1
            need = len(annotators) // 2 + 1
            rationale = sorted(t for t, v in votes.items() if v >= need) if highlighted else None
            words = [*tokens[0].words, SEP, *tokens[1].words]
            out.append(Example(words, CLASSES.index(label), rationale, keep=[len(tokens[0])]))
    return out


@register_path_dataset("esnli", default_model="text-cnn", default_epochs=3, default_batch_size=32)
@one_line_errors
def load_esnli(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """e-SNLI's premise-hypothesis pairs with their highlighted words (see the module docstring); ``seed`` is
    recorded (the splits are the files')."""
    root = Path(path)
    source = f"esnli:{path}"
    opts = text_options(source, options, DEFAULTS)
    check_choice(source, "highlights", opts["highlights"], SOURCES)
    limit = None if opts["limit_train"] is None else check_count(source, "limit_train", opts["limit_train"])
    stats = {"dropped_no_gold_label": {"train": 0, "val": 0, "test": 0}, "unreadable_highlights": 0}
    paths = {split: [root / name for name in names] for split, names in FILES.items()}
    needed = ", ".join(name for names in FILES.values() for name in names)
    for files in paths.values():
        for file in files:
            if not file.exists():
                raise DataError(f"{file}: no such file (e-SNLI needs {needed})")
    parts = {split: _split_examples(files, opts, limit if split == "train" else None, stats, split)
             for split, files in paths.items()}
    info = {"path": str(root), "paper": PAPER, "seed": seed, "highlights": opts["highlights"],
            "limit_train": limit, **stats}
    return build_text_splits("esnli", parts, CLASSES, opts, info)
