"""HateXplain (Mathew et al., "HateXplain: A Benchmark Dataset for Explainable Hate Speech Detection", AAAI
2021): ``load_dataset("hatexplain:PATH", **options)``, PATH the repository's ``Data`` folder::

    PATH/dataset.json            {post_id: {post_tokens: [...], annotators: [{label, annotator_id, target}, ...],
                                  rationales: [[0/1 per token] per annotator who gave one]}}
    PATH/post_id_divisions.json  {train: [post_id, ...], val: [...], test: [...]}

Tokens are ``post_tokens`` as given, lower-cased (not re-tokenized, so rationale positions stay exact).

- Label: the annotators' majority among hatespeech / offensive / normal. A post without a majority (three
  annotators, three labels; in general, no single most frequent label) is dropped, as HateXplain's
  ``get_annotated_data`` drops it ("undecided"); the drops are counted in ``info["dropped_no_majority"]``.
  ``classes=3`` (default): hatespeech 0, normal 1, offensive 2 (sorted, as HateXplain's classes.npy);
  ``classes=2``: non-toxic 0 (normal), toxic 1 (hatespeech or offensive), taken from the 3-class majority
  as HateXplain does (so a hatespeech / offensive / normal post is dropped in both).
- Rationale: the tokens marked by more than half of the annotators who gave a rationale
  (``rationale_rule=majority``, the default) or by any of them (``rationale_rule=union``, the rule of
  HateXplain's ERASER-format evaluation). Posts whose majority label is normal carry none (``has_mask``
  False), nor do toxic posts without rationales.
- Option ``rationale``: ``relevant`` (the default: rationales mark the evidence, mask = the post's other
  tokens; a post whose rationale is empty or beyond ``max_length`` is not annotated) or ``ignore``.

Splits are the divisions' (the seed is recorded); posts in no division are left out (counted). Options
``classes``, ``rationale``, ``rationale_rule``, ``max_length`` (default 400), ``min_count`` (default 2),
``max_vocab``. Errors are one-line DataErrors naming the file and the post.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ...errors import DataError, UserError
from ..csv_common import SPLIT_NAMES, one_line_errors
from ..dataset import DataSplits
from ..registry import register_path_dataset
from .table import TEXT_DEFAULTS, Example, build_text_splits, check_choice, read_json_file, text_options

LABELS = ("hatespeech", "normal", "offensive")
TWO_CLASSES = ("non-toxic", "toxic")
RULES = ("majority", "union")
DEFAULTS = {**TEXT_DEFAULTS, "rationale": "relevant", "classes": 3, "rationale_rule": "majority"}
PAPER = "Mathew et al., HateXplain: A Benchmark Dataset for Explainable Hate Speech Detection, AAAI 2021"


def majority_label(labels: list[str]):
    """The most frequent label, or None when two or more labels share the top count."""
    counts = Counter(labels).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def combine_rationales(rationales: list[list[int]], rule: str) -> list[int]:
    """Token positions marked by more than half of the lists (majority) or by any (union)."""
    marked = [sum(column) for column in zip(*rationales)]
    need = len(rationales) // 2 + 1 if rule == "majority" else 1
    return [i for i, count in enumerate(marked) if count >= need]


def _post(post_id: str, post, where: str) -> tuple[list[str], list[str], list[list[int]]]:
    """(tokens, annotator labels, rationale lists) of one post, checked."""
    if not isinstance(post, dict):
        raise DataError(f"{where}: expected an object, got {type(post).__name__}")
    tokens = post.get("post_tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{where}: post_tokens must be a list of strings")
    annotators = post.get("annotators")
    if not isinstance(annotators, list) or not annotators:
        raise DataError(f"{where}: annotators must be a non-empty list")
    labels = []
    for k, annotator in enumerate(annotators):
        label = annotator.get("label") if isinstance(annotator, dict) else None
        if not isinstance(label, str) or label.strip().lower() not in LABELS:
            raise DataError(f"{where}: annotator {k} has label {label!r}, not one of {', '.join(LABELS)}")
        labels.append(label.strip().lower())
    rationales = post.get("rationales", [])
    if rationales is None:
        rationales = []
    if not isinstance(rationales, list):
        raise DataError(f"{where}: rationales must be a list of 0/1 lists")
    for k, rationale in enumerate(rationales):
        if not isinstance(rationale, list) or not all(v in (0, 1) and not isinstance(v, float) for v in rationale):
            raise DataError(f"{where}: rationale {k} is not a list of 0s and 1s")
        if len(rationale) != len(tokens):
            raise DataError(f"{where}: rationale {k} has {len(rationale)} entries for {len(tokens)} post_tokens")
    return [t.lower() for t in tokens], labels, [[int(v) for v in r] for r in rationales]


@register_path_dataset("hatexplain", default_model="text-cnn", default_epochs=10, default_batch_size=32)
@one_line_errors
def load_hatexplain(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """HateXplain's posts, majority labels and rationales (see the module docstring)."""
    root = Path(path)
    source = f"hatexplain:{path}"
    opts = text_options(source, options, DEFAULTS)
    if opts["classes"] not in (2, 3, "2", "3") or isinstance(opts["classes"], bool):
        raise UserError(f"{source}: option classes must be 3 or 2, got {opts['classes']!r}")
    two = int(opts["classes"]) == 2
    check_choice(source, "rationale_rule", opts["rationale_rule"], RULES)
    data_file, divisions_file = root / "dataset.json", root / "post_id_divisions.json"
    data = read_json_file(data_file, "HateXplain dataset file")
    if not isinstance(data, dict):
        raise DataError(f"{data_file}: expected a JSON object of posts by post_id")
    divisions = read_json_file(divisions_file, "HateXplain divisions file")
    if not isinstance(divisions, dict):
        raise DataError(f"{divisions_file}: expected a JSON object with lists train, val, test")
    classes = list(TWO_CLASSES if two else LABELS)
    parts, dropped, seen = {}, {}, {}
    for split in SPLIT_NAMES:
        ids = divisions.get(split)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataError(f"{divisions_file}: {split!r} must be a list of post ids")
        parts[split], dropped[split] = [], 0
        for post_id in ids:
            if post_id in seen:
                raise DataError(f"{divisions_file}: post {post_id!r} is in both {seen[post_id]} and {split}")
            seen[post_id] = split
            if post_id not in data:
                raise DataError(f"{divisions_file}: post {post_id!r} ({split}) is not in {data_file}")
            tokens, labels, rationales = _post(post_id, data[post_id], f"{data_file} post {post_id!r}")
            label = majority_label(labels)
            if label is None:
                dropped[split] += 1
                continue
            rationale = None
            if label != "normal" and rationales:
                rationale = combine_rationales(rationales, opts["rationale_rule"])
            if two:
                label = "non-toxic" if label == "normal" else "toxic"
            parts[split].append(Example(tokens, classes.index(label), rationale))
    info = {"path": str(root), "paper": PAPER, "seed": seed, "rationale_rule": opts["rationale_rule"],
            "dropped_no_majority": dropped, "posts_in_no_division": len(set(data) - set(seen))}
    return build_text_splits("hatexplain", parts, classes, opts, info)
