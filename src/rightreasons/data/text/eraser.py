"""ERASER benchmark tasks (DeYoung et al., "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL
2020): ``load_dataset("eraser:PATH", **options)``, PATH one task's extracted folder (e.g. ``movies``)::

    PATH/train.jsonl, val.jsonl, test.jsonl   one annotation per line: annotation_id, classification,
                                              evidences (a list of evidence groups, each a list of
                                              {docid, start_token, end_token, text, ...}), optional query,
                                              docids
    PATH/docs/<docid>                         a document: one sentence per line, tokens joined by spaces
    (or PATH/docs.jsonl: {"docid": ..., "document": ...} per line, as some tasks ship it)

Tokens are the documents' own tokens, lower-cased, not re-tokenized, so that the evidence offsets
(``start_token`` inclusive, ``end_token`` exclusive, counted over the whole document) stay exact. A document
is split into tokens as ERASER's ``rationale_benchmark.utils.load_documents`` does: lines stripped, blank
lines dropped, each line split at single spaces with empty tokens dropped (``docs.jsonl``: split at newlines,
then at single spaces, nothing dropped).

The documents of an annotation: its ``docids`` list when given (in that order), else the one document its
evidences name, else (no evidence) the document named by ``annotation_id`` (movies: docid = annotation_id).
Several documents are joined with a ``[sep]`` token between them and each evidence shifted by its document's
start; evidences from several documents without a ``docids`` list are refused (the order to join them in is
unknown). Option ``query=true`` puts the query's tokens (split at whitespace, as ERASER's
``intern_annotations`` splits it; lower-cased) and ``[sep]`` first.

Labels: the ``classification`` values of train, numbered in sorted order (movies: NEG 0, POS 1); a val or
test label not among them is an error. Rationale = the union of all evidence tokens. Option ``rationale``:
``relevant`` (the default: evidence marks what matters, so mask = the document's other tokens; the query and
separators are never masked; an annotation without evidence, or with all of it beyond ``max_length``, is not
annotated) or ``ignore`` (mask = the evidence). Evidence whose ``text`` differs from the tokens it spans is
counted (``info["evidence_text_mismatch"]``), not refused. Options ``max_length`` (default 400: movie
reviews are longer, and evidence beyond the cut is lost, counted in ``info``), ``min_count`` (default 2),
``max_vocab``, ``query``. Errors are one-line DataErrors naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..csv_common import SPLIT_NAMES, one_line_errors, option_bool
from ..dataset import DataSplits
from ..registry import register_path_dataset
from .table import (
    MAX_JSON_BYTES,
    SEP,
    TEXT_DEFAULTS,
    Example,
    build_text_splits,
    inside,
    jsonl_records,
    read_text_file,
    text_options,
)

DEFAULTS = {**TEXT_DEFAULTS, "rationale": "relevant", "query": False}
#: the most one document file may hold
MAX_DOC_BYTES = 64 << 20
PAPER = "DeYoung et al., ERASER: A Benchmark to Evaluate Rationalized NLP Models, ACL 2020"


def _tokens_of_file(text: str) -> list[str]:
    """ERASER's load_documents: stripped non-blank lines, split at single spaces, empty tokens dropped."""
    return [t.lower() for line in text.split("\n") if line.strip() for t in line.strip().split(" ") if t]


class Documents:
    """The documents of PATH, read on demand (``docs/<docid>``) or all at once (``docs.jsonl``)."""

    def __init__(self, root: Path):
        self.root, self.cache = root, {}
        self.jsonl = root / "docs.jsonl"
        self.folder = root / "docs"
        if self.jsonl.is_file():
            if self.folder.exists():
                raise DataError(f"{root}: both docs/ and docs.jsonl; keep one")
            for line, record in jsonl_records(self.jsonl, "ERASER documents file"):
                where = f"{self.jsonl} line {line}"
                if not (isinstance(record, dict) and isinstance(record.get("docid"), str)
                        and isinstance(record.get("document"), str)):
                    raise DataError(f"{where}: expected an object with string fields docid and document")
                self.cache[record["docid"]] = [t.lower() for line_ in record["document"].split("\n")
                                               for t in line_.strip().split(" ")]
        elif not self.folder.is_dir():
            raise DataError(f"{root}: no docs/ folder (nor docs.jsonl); is PATH an ERASER task folder?")

    def get(self, docid, where: str) -> list[str]:
        if docid in self.cache:
            return self.cache[docid]
        if self.jsonl.is_file():
            raise DataError(f"{where}: document {docid!r} is not in {self.jsonl}")
        path = inside(self.folder, docid, where, "docid")
        try:
            self.cache[docid] = _tokens_of_file(read_text_file(path, "document", MAX_DOC_BYTES))
        except DataError as exc:
            raise DataError(f"{where}: document {docid!r}: {exc}") from None
        return self.cache[docid]


def _field(record: dict, key: str, kind, where: str, optional: bool = False):
    value = record.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{where}: field {key!r} must be {expected}, got "
                        f"{'nothing' if value is None else type(value).__name__}")
    return value


def _evidences(record: dict, where: str) -> list[dict]:
    groups = record.get("evidences")
    if groups is None:
        return []
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise DataError(f"{where}: field 'evidences' must be a list of evidence groups (lists)")
    out = []
    for group in groups:
        for ev in group:
            if not isinstance(ev, dict):
                raise DataError(f"{where}: an evidence is {type(ev).__name__}, not an object")
            _field(ev, "docid", str, where)
            _field(ev, "start_token", int, where)
            _field(ev, "end_token", int, where)
            out.append(ev)
    return out


def _example(record, where: str, docs: Documents, opts: dict, stats: dict) -> tuple[str, Example]:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    annotation_id = _field(record, "annotation_id", str, where)
    label = _field(record, "classification", str, where)
    evidences = _evidences(record, where)
    docids = record.get("docids")
    if docids is not None:
        if not isinstance(docids, list) or not docids or not all(isinstance(d, str) for d in docids):
            raise DataError(f"{where}: field 'docids' must be a non-empty list of document ids")
        if len(set(docids)) != len(docids):
            raise DataError(f"{where}: field 'docids' names a document twice")
    else:
        named = sorted({ev["docid"] for ev in evidences})
        if len(named) > 1:
            raise DataError(f"{where}: evidence from {len(named)} documents ({', '.join(named[:3])}) and no "
                            "'docids' list: the order to join them in is unknown")
        docids = named or [annotation_id]
    words, keep, start = [], [], {}
    if opts["query"]:
        query = record.get("query")
        if query is not None and not isinstance(query, str):
            raise DataError(f"{where}: field 'query' must be a string")
        words = [t.lower() for t in (query or "").split()] + [SEP]
        keep = list(range(len(words)))
    for i, docid in enumerate(docids):
        if i:
            keep.append(len(words))
            words.append(SEP)
        start[docid] = len(words)
        words.extend(docs.get(docid, where))
    rationale = set()
    for ev in evidences:
        docid, s, e = ev["docid"], ev["start_token"], ev["end_token"]
        if docid not in start:
            raise DataError(f"{where}: evidence in document {docid!r}, which is not among the annotation's "
                            f"documents ({', '.join(docids)})")
        length = len(docs.get(docid, where))
        if not 0 <= s <= e <= length:
            raise DataError(f"{where}: evidence [{s}, {e}) in document {docid!r} is beyond its {length} tokens")
        text = ev.get("text")
        if isinstance(text, str) and " ".join(text.lower().split()) != " ".join(docs.get(docid, where)[s:e]):
            stats["evidence_text_mismatch"] += 1
        rationale.update(range(start[docid] + s, start[docid] + e))
    return label, Example(words, -1, sorted(rationale) if evidences else None, keep=keep)


@register_path_dataset("eraser", default_model="text-cnn", default_epochs=10, default_batch_size=32)
@one_line_errors
def load_eraser(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """An ERASER task's annotations and documents (see the module docstring); ``seed`` is recorded (the
    splits are the files')."""
    root = Path(path)
    source = f"eraser:{path}"
    opts = text_options(source, options, DEFAULTS)
    opts["query"] = option_bool(source, "query", opts["query"])
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected an ERASER task folder with train.jsonl, val.jsonl, "
                        "test.jsonl and docs/)")
    for split in SPLIT_NAMES:
        if not (root / f"{split}.jsonl").exists():
            raise DataError(f"{root / f'{split}.jsonl'}: no such file")
    docs = Documents(root)
    stats = {"evidence_text_mismatch": 0}
    labelled: dict[str, list[tuple[str, str, Example]]] = {}
    for split in SPLIT_NAMES:
        file = root / f"{split}.jsonl"
        labelled[split] = [(f"{file} line {line}", *_example(record, f"{file} line {line}", docs, opts, stats))
                           for line, record in jsonl_records(file, "ERASER annotations file", MAX_JSON_BYTES)]
    classes = sorted({label for _, label, _ in labelled["train"]})
    parts = {}
    for split in SPLIT_NAMES:
        parts[split] = []
        for where, label, example in labelled[split]:
            if label not in classes:
                raise DataError(f"{where}: classification {label!r} is not a training label "
                                f"({', '.join(classes)})")
            example.label = classes.index(label)
            parts[split].append(example)
    info = {"path": str(root), "paper": PAPER, "seed": seed, "query": opts["query"], **stats}
    return build_text_splits("eraser", parts, classes, opts, info)
