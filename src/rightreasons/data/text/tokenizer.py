"""The built-in tokenizer: lower-cased words and punctuation marks, a vocabulary from the training split.

``tokenize(text)`` splits into words (letters and digits, with inner apostrophes: ``don't``) and single
punctuation marks, lower-cased, with each token's character span in the original text (so rationales
given as character spans map to tokens). :class:`Vocabulary` numbers the words of the training split:
0 is padding, 1 the unknown word, then the words by decreasing count (ties alphabetically).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from ...errors import DataError

#: a word (letters, digits, underscores; inner apostrophes kept) or one mark that is neither word nor space
TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")
PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")


@dataclass(frozen=True)
class Tokens:
    """The tokens of one text and their character spans ``(start, end)`` (end exclusive) in it."""

    words: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.words)


def tokenize(text: str) -> Tokens:
    """Lower-cased words and punctuation marks of ``text`` with their character spans."""
    words, spans = [], []
    for match in TOKEN.finditer(text):
        words.append(match.group().lower())
        spans.append(match.span())
    return Tokens(tuple(words), tuple(spans))


def tokens_in_spans(tokens: Tokens, spans: Iterable[tuple[int, int]]) -> list[int]:
    """Indices of the tokens that overlap any character span ``(start, end)``, sorted."""
    spans = sorted(spans)
    out = []
    for i, (start, end) in enumerate(tokens.spans):
        if any(s < end and start < e for s, e in spans):
            out.append(i)
    return out


class Vocabulary:
    """Word <-> id: 0 = ``<pad>``, 1 = ``<unk>``, then ``words`` in the order given."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if len(set(words)) != len(words) or set(words) & set(SPECIALS):
            raise DataError("vocabulary: words must be distinct and not <pad> or <unk>")
        self.words = [*SPECIALS, *words]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], min_count: int = 1,
              max_size: Optional[int] = None) -> "Vocabulary":
        """The words occurring at least ``min_count`` times in ``documents`` (token lists), the most
        frequent first (ties alphabetically), at most ``max_size`` of them."""
        counts = Counter(w for doc in documents for w in doc)
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked[:max_size] if max_size is not None else ranked)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Iterable[str]) -> list[int]:
        """The ids of ``words`` (unknown words -> 1)."""
        return [self.index.get(w, UNK) for w in words]

    def fingerprint(self) -> str:
        """sha256 of the words in id order: two vocabularies map ids to the same words iff it is equal."""
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[int(i)] for i in ids]
