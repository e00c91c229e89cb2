"""Your own text: ``load_dataset("text:PATH", **options)`` (CLI: ``--data text:PATH``); and the pieces every
text loader shares (options, safe CSV / JSON / JSONL reading, rationale -> mask, building the splits).

PATH is a CSV file (a header row, then one row per document) or a JSONL file (one JSON object per line),
told apart by its suffix (``.csv``, ``.jsonl``) or by option ``format=csv|jsonl``. Columns (JSONL: keys):

- ``text`` (option ``text_column``): the document, tokenized by the built-in tokenizer.
- ``label`` (option ``label_column``): class names (numbered in sorted order, or as option ``classes`` lists
  them) or integers 0..K-1 (option ``num_classes`` fixes K); the names are recorded.
- ``group`` (optional): names or integers, for worst-group accuracy (default: the label).
- ``split`` (optional): train / val / test. Without it, each class is split at random (seeded by the seed):
  ``val_fraction`` 0.15 and ``test_fraction`` 0.15 of it, the rest train; with it but no val rows,
  ``val_fraction`` of each train class becomes val (as ``csv:PATH`` and ``folder:PATH`` do).
- ``rationale_spans`` (optional): a JSON list of ``[start, end]`` character spans of the text (end exclusive;
  in a CSV cell, the JSON as a string); a token is marked when it overlaps a span.
- ``rationale_tokens`` (optional): a JSON list of token positions (0-based) of the built-in tokenizer.

A row with an empty (CSV) or missing / null (JSONL) rationale is not annotated (``has_mask`` False); ``[]``
is an annotation that marks nothing. Option ``rationale``: ``ignore`` (the default here: the marked tokens
are the shortcut, mask = them) or ``relevant`` (the marked tokens are the evidence, mask = every other token
of the document; an annotated row whose evidence lies entirely beyond ``max_length`` is then not annotated).

Tokens: documents cut at ``max_length`` tokens (default 400); the vocabulary is the training split's words
occurring at least ``min_count`` times (default 1 here, 2 for the benchmark loaders), at most ``max_vocab``
(default 50,000). Errors are one-line DataErrors naming the file, the row (CSV: the line a record starts on,
the header being line 1) or line (JSONL), and the column.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ...errors import DataError, UserError
from ..csv_common import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    MAX_CSV_BYTES,
    MAX_CSV_CELLS,
    MAX_CSV_COLUMNS,
    SPLIT_NAMES,
    encode_labels,
    encode_splits,
    label_and_split_options,
    one_line_errors,
    parse_options,
    read_bounded,
    resolve_splits,
)
from ..dataset import DataSplits
from ..decoy_mnist import MAX_COUNT
from ..registry import register_path_dataset
from .dataset import TextDataset, encode, token_mask
from .tokenizer import PAD, Vocabulary, tokenize, tokens_in_spans

#: how a rationale becomes the mask: the tokens to ignore, or the evidence (mask = the other tokens)
RATIONALE_MODES = ("ignore", "relevant")
#: the token joining two texts of one example (premise and hypothesis, query and document); the built-in
#: tokenizer never produces it from text (it splits ``[sep]`` into three marks)
SEP = "[sep]"
#: the options of every text loader, with the defaults of the benchmark loaders
TEXT_DEFAULTS = {"max_length": 400, "min_count": 2, "max_vocab": 50_000}
#: the most a JSON or JSONL file may hold
MAX_JSON_BYTES = 1 << 30


# --------------------------------------------------------------------------------- shared: options


def check_count(source: str, key: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= MAX_COUNT:
        raise UserError(f"{source}: option {key} must be an integer in [{minimum}, {MAX_COUNT}], got {value!r}")
    return int(value)


def check_choice(source: str, key: str, value, choices) -> str:
    if value not in choices:
        raise UserError(f"{source}: option {key}={value!r} is not one of {', '.join(choices)}")
    return value


def text_options(source: str, options: dict, defaults: dict) -> dict:
    """``defaults`` updated with ``options`` (unknown names refused), the shared ones checked: ``max_length``,
    ``min_count``, ``max_vocab`` and, when ``defaults`` has it, ``rationale``."""
    opts = parse_options(source, options, defaults)
    for key in ("max_length", "min_count", "max_vocab"):
        opts[key] = check_count(source, key, opts[key])
    if "rationale" in defaults:
        check_choice(source, "rationale", opts["rationale"], RATIONALE_MODES)
    return opts


# --------------------------------------------------------------------------------- shared: reading


def read_text_file(path: Path, what: str, limit: int) -> str:
    """The UTF-8 text (a byte-order mark dropped) of the regular file ``path`` of at most ``limit`` bytes."""
    raw = read_bounded(path, what, limit)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    if "\x00" in text:
        raise DataError(f"{path} line {text[:text.index(chr(0))].count(chr(10)) + 1}: NUL byte (binary file?)")
    return text


def _loads(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise DataError(f"{where}: invalid JSON ({str(exc).split(':')[0]})") from None


def read_json_file(path: Path, what: str, limit: int = MAX_JSON_BYTES):
    """The JSON value in the regular file ``path``; a syntax error names its line and column."""
    return _loads(read_text_file(path, what, limit), str(path))


def jsonl_records(path: Path, what: str, limit: int = MAX_JSON_BYTES) -> Iterator[tuple[int, object]]:
    """(line number, JSON value) of every non-blank line of the JSONL file ``path`` (lines split at ``\\n``
    only: a JSON string may hold other line separators)."""
    text = read_text_file(path, what, limit)
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, _loads(line, f"{path} line {number}")


def csv_records(path: Path, what: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header (names stripped) and an iterator of (row, cells) of the CSV file ``path``; cells are kept
    as written (text is not stripped); a row's number is the line its record starts on (the header being
    line 1). Blank lines are skipped; a row with the wrong number of cells is an error naming it."""
    text = read_text_file(path, what, MAX_CSV_BYTES)
    reader = csv.reader(io.StringIO(text, newline=""))

    def records() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        try:
            for cells in reader:
                if len(cells) <= 1 and not "".join(cells).strip():
                    start = reader.line_num + 1
                    continue
                yield start, cells
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{path} row {start}: malformed CSV ({exc})") from None

    rows = records()
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: empty file, expected a header row")
    header = [c.strip() for c in first[1]]
    if len(header) > MAX_CSV_COLUMNS:
        raise DataError(f"{path}: {len(header)} columns in the header, more than {MAX_CSV_COLUMNS}")
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{path}: column {i + 1} of the header has no name")
        if name in header[:i]:
            raise DataError(f"{path}: column {name!r} appears twice in the header")

    def checked() -> Iterator[tuple[int, list[str]]]:
        cells_read = 0
        for row, cells in rows:
            if len(cells) != len(header):
                raise DataError(f"{path} row {row}: {len(cells)} fields, expected {len(header)} ({', '.join(header)})")
            cells_read += len(cells)
            if cells_read > MAX_CSV_CELLS:
                raise DataError(f"{path} row {row}: more than {MAX_CSV_CELLS} cells in the file")
            yield row, cells

    return header, checked()


def require_columns(path: Path, header: Sequence[str], names: Sequence[str]) -> dict[str, int]:
    """The position of each of ``names`` in ``header``; a missing one is an error naming it."""
    for name in names:
        if name not in header:
            raise DataError(f"{path}: no column {name!r}; columns: {', '.join(header)}")
    return {name: header.index(name) for name in names}


def inside(root: Path, name: str, where: str, what: str) -> Path:
    """``root / name`` for a plain file name (no path separators, not ``.`` or ``..``) that resolves, symbolic
    links followed, inside ``root``."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\x00" in name:
        raise DataError(f"{where}: {what} {name!r} is not a plain file name")
    path = root / name
    real, base = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, base]) != base:
        raise DataError(f"{where}: {what} {name!r} leads outside {root}")
    return path


# --------------------------------------------------------------------------------- shared: building


@dataclass
class Example:
    """One document: its tokens, label, the positions a person marked (``None``: not annotated), its group
    (``None``: the label) and the positions never masked (separators, a query)."""

    words: list[str]
    label: int
    rationale: Optional[Sequence[int]] = None
    group: Optional[int] = None
    keep: Sequence[int] = ()


def build_text_splits(name: str, parts: dict[str, list[Example]], class_names: Sequence[str], opts: dict,
                      info: Optional[dict] = None, num_groups: Optional[int] = None) -> DataSplits:
    """TextDatasets of ``parts`` (split -> examples): the vocabulary from the training split, masks from the
    rationales by ``opts["rationale"]`` (see the module docstring), the padding never masked."""
    length, mode = opts["max_length"], opts.get("rationale", "ignore")
    for split in SPLIT_NAMES:
        if not parts[split]:
            raise DataError(f"{name}: the {split} split is empty")
    vocab = Vocabulary.build([ex.words[:length] for ex in parts["train"]], min_count=opts["min_count"],
                             max_size=opts["max_vocab"])
    out, annotated, out_of_view = {}, {}, {}
    for split in SPLIT_NAMES:
        examples = parts[split]
        ids = encode([ex.words for ex in examples], vocab, length)
        marked = torch.tensor([ex.rationale is not None for ex in examples], dtype=torch.bool)
        rationale = token_mask(ids, [ex.rationale or () for ex in examples])
        given = torch.tensor([bool(ex.rationale) for ex in examples], dtype=torch.bool)
        out_of_view[split] = int((given & ~rationale.any(1)).sum())
        if mode == "ignore":
            mask, has_mask = rationale, marked
        else:
            keep = token_mask(ids, [ex.keep for ex in examples])
            has_mask = marked & rationale.any(1)
            mask = (ids != PAD) & ~rationale & ~keep & has_mask[:, None]
        y = torch.tensor([ex.label for ex in examples], dtype=torch.long)
        group = torch.tensor([ex.label if ex.group is None else ex.group for ex in examples], dtype=torch.long)
        out[split] = TextDataset(ids, y, vocab, mask=mask, group=group, has_mask=has_mask,
                                 rationale=rationale if bool(marked.any()) else None,
                                 words=[ex.words for ex in examples], num_classes=len(class_names),
                                 num_groups=num_groups if num_groups is not None else len(class_names),
                                 name=f"{name}/{split}", class_names=class_names)
        annotated[split] = int(has_mask.sum())
    full = {"dataset": name, "classes": list(class_names), "vocabulary": len(vocab), "max_length": length,
            "min_count": opts["min_count"], "rationale": mode, **(info or {}),
            "sizes": {split: len(out[split]) for split in SPLIT_NAMES}, "annotated": annotated,
            "rationale_beyond_max_length": out_of_view}
    return DataSplits(out["train"], out["val"], out["test"], info=full)


# --------------------------------------------------------------------------------- text:PATH

FORMATS = ("csv", "jsonl")
DEFAULTS = {**TEXT_DEFAULTS, "min_count": 1, "format": None, "text_column": "text", "label_column": "label",
            "rationale": "ignore", "classes": None, "num_classes": None, "val_fraction": DEFAULT_VAL_FRACTION,
            "test_fraction": DEFAULT_TEST_FRACTION}
SPANS, TOKENS = "rationale_spans", "rationale_tokens"


def _column_option(source: str, key: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{source}: option {key} must be a column name, got {value!r}")
    return value.strip()


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_spans(value, text: str, where: str) -> list[tuple[int, int]]:
    """``[[start, end], ...]`` character spans of ``text`` (0 <= start <= end <= len(text))."""
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a JSON list of [start, end] spans, got {type(value).__name__}")
    spans = []
    for i, span in enumerate(value):
        if not (isinstance(span, list) and len(span) == 2 and all(_integer(v) for v in span)):
            raise DataError(f"{where}: span {i} is {json.dumps(span)[:40]}, not [start, end] (two integers)")
        start, end = span
        if not 0 <= start <= end <= len(text):
            raise DataError(f"{where}: span {i} [{start}, {end}] is not within the text's {len(text)} characters "
                            "(0 <= start <= end <= length, end exclusive)")
        spans.append((start, end))
    return spans


def parse_positions(value, count: int, where: str, what: str = "token") -> list[int]:
    """A JSON list of positions 0..count-1."""
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a JSON list of {what} positions, got {type(value).__name__}")
    for i, v in enumerate(value):
        if not _integer(v):
            raise DataError(f"{where}: entry {i} is {json.dumps(v)[:40]}, not an integer {what} position")
        if not 0 <= v < count:
            raise DataError(f"{where}: {what} position {v} is beyond the {count} {what}s (0-based)")
    return sorted(set(value))


def _records(path: Path, fmt: str) -> tuple[str, list[tuple[int, dict]]]:
    """("row" or "line", [(number, {column: value})]); CSV values are strings, JSONL values JSON values."""
    if fmt == "csv":
        header, rows = csv_records(path, "CSV file")
        return "row", [(row, dict(zip(header, cells))) for row, cells in rows]
    out = []
    for line, record in jsonl_records(path, "JSONL file"):
        if not isinstance(record, dict):
            raise DataError(f"{path} line {line}: expected a JSON object, got {type(record).__name__}")
        out.append((line, record))
    return "line", out


def _cell(record: dict, column: str, where: str, fmt: str) -> str:
    """A label, group or split value as a stripped string ("" when missing)."""
    value = record.get(column)
    if value is None:
        return ""
    if fmt == "csv":
        return value.strip()
    if _integer(value):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}, column {column!r}: expected a string or an integer, got {type(value).__name__}")
    return value.strip()


def _rationale(record: dict, column: str, where: str, fmt: str):
    """The JSON value of a rationale column, or None when the row is not annotated."""
    value = record.get(column)
    if fmt == "csv":
        if value is None or not value.strip():
            return None
        return _loads(value, f"{where}, column {column!r}")
    return value


def _relabelled(unit: str, call, *args):
    """``call(*args)``, its errors speaking of lines when the file is JSONL (csv_common says rows)."""
    try:
        return call(*args)
    except DataError as exc:
        if unit == "row":
            raise
        raise DataError(str(exc).replace(f"{args[0]} row ", f"{args[0]} line ", 1)) from None


@register_path_dataset("text", default_model="text-cnn", default_epochs=10, default_batch_size=32)
@one_line_errors
def load_text_table(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """Your own text in a CSV or JSONL file (see the module docstring)."""
    path = Path(path)
    source = f"text:{path}"
    opts = text_options(source, options, DEFAULTS)
    text_col = _column_option(source, "text_column", opts["text_column"])
    label_col = _column_option(source, "label_column", opts["label_column"])
    fmt = opts["format"]
    if fmt is None:
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UserError(f"{source}: cannot tell the format from the suffix {path.suffix!r}; "
                            "set option format=csv or format=jsonl")
    check_choice(source, "format", fmt, FORMATS)
    classes, num_classes, val_f, test_f, rng = label_and_split_options(source, opts, seed, "text")

    unit, records = _records(path, fmt)
    if not records:
        raise DataError(f"{path}: no examples")
    columns = set().union(*(r.keys() for _, r in records))
    for name, option in ((text_col, "text_column"), (label_col, "label_column")):
        if name not in columns:
            raise DataError(f"{path}: no column {name!r} (set option {option}=COLUMN); columns: "
                            f"{', '.join(sorted(columns))}")
    numbers = [n for n, _ in records]
    where = [f"{path} {unit} {n}" for n in numbers]
    texts = []
    for w, (_, record) in zip(where, records):
        text = record.get(text_col)
        if not isinstance(text, str):
            raise DataError(f"{w}, column {text_col!r}: expected a string, got "
                            f"{'nothing' if text is None else type(text).__name__}")
        texts.append(text)
    y, class_names = _relabelled(unit, encode_labels, path, numbers,
                                 [_cell(r, label_col, w, fmt) for w, (_, r) in zip(where, records)],
                                 f"label (column {label_col!r})", classes, num_classes)
    group, group_names = None, None
    if "group" in columns:
        group, group_names = _relabelled(unit, encode_labels, path, numbers,
                                         [_cell(r, "group", w, fmt) for w, (_, r) in zip(where, records)],
                                         "group (column 'group')")
    split = None
    if "split" in columns:
        split = _relabelled(unit, encode_splits, path, numbers,
                            [_cell(r, "split", w, fmt) for w, (_, r) in zip(where, records)], "split (column 'split')")
    split, how = resolve_splits(path, y, split, rng, val_f, test_f)

    parts: dict[str, list[Example]] = {name: [] for name in SPLIT_NAMES}
    for i, (w, (_, record)) in enumerate(zip(where, records)):
        tokens = tokenize(texts[i])
        spans = _rationale(record, SPANS, w, fmt)
        positions = _rationale(record, TOKENS, w, fmt)
        if spans is not None and positions is not None:
            raise DataError(f"{w}: both {SPANS} and {TOKENS} given; give one")
        rationale = None
        if spans is not None:
            rationale = tokens_in_spans(tokens, parse_spans(spans, texts[i], f"{w}, column {SPANS!r}"))
        elif positions is not None:
            rationale = parse_positions(positions, len(tokens), f"{w}, column {TOKENS!r}")
        parts[SPLIT_NAMES[split[i]]].append(Example(list(tokens.words), int(y[i]), rationale,
                                                    None if group is None else int(group[i])))
    info = {"path": str(path), "format": fmt, "split": how, "seed": seed,
            "groups": group_names if group_names is not None else list(class_names)}
    return build_text_splits("text", parts, class_names, opts, info,
                             num_groups=None if group_names is None else len(group_names))
