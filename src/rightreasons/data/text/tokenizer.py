"""Tokenizers: the built-in one (lower-cased words and punctuation marks) or a Hugging Face tokenizer file,
and the vocabulary from the training split.

``tokenize(text)`` uses the tokenizer of the current :func:`using_tokenizer` block: ``"builtin"`` (the
default) or ``"hf:PATH"``, a Hugging Face ``tokenizer.json`` (or a directory holding one) read with the
optional ``tokenizers`` package; its subword tokens and their character spans are used as they come (no
special tokens added), and the vocabulary is still built from the training split. The built-in one splits
into words (letters and digits, with inner apostrophes: ``don't``) and single
punctuation marks, lower-cased, with each token's character span in the original text (so rationales
given as character spans map to tokens). :class:`Vocabulary` numbers the words of the training split:
0 is padding, 1 the unknown word, then the words by decreasing count (ties alphabetically).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

from ...errors import DataError, UserError

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


_CURRENT: ContextVar[Optional[Callable[[str], "Tokens"]]] = ContextVar("rightreasons_tokenizer", default=None)


def tokenize(text: str) -> Tokens:
    """The tokens of ``text`` and their character spans, by the current tokenizer (see the module docstring)."""
    current = _CURRENT.get()
    return builtin_tokenize(text) if current is None else current(text)


def builtin_tokenize(text: str) -> Tokens:
    """Lower-cased words and punctuation marks of ``text`` with their character spans."""
    words, spans = [], []
    for match in TOKEN.finditer(text):
        words.append(match.group().lower())
        spans.append(match.span())
    return Tokens(tuple(words), tuple(spans))


def hf_tokenizer(path: str) -> Callable[[str], Tokens]:
    """The tokens of a Hugging Face tokenizer file (``tokenizer.json``, or a directory holding one), read with
    the optional ``tokenizers`` package (never downloaded)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("tokenizer=hf:PATH needs the optional package 'tokenizers' (pip install tokenizers)") from None
    file = Path(path)
    file = file / "tokenizer.json" if file.is_dir() else file
    if not file.is_file():
        raise DataError(f"{file}: no Hugging Face tokenizer file there (tokenizer=hf:PATH wants a tokenizer.json)")
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust library raises its own exception types
        raise DataError(f"{file}: not a Hugging Face tokenizer file ({str(exc).splitlines()[0][:200]})") from None

    def run(text: str) -> Tokens:
        encoding = tokenizer.encode(text, add_special_tokens=False)
        return Tokens(tuple(encoding.tokens), tuple(tuple(o) for o in encoding.offsets))

    return run


def tokenizer_for(spec: Optional[str]) -> Optional[Callable[[str], Tokens]]:
    """The tokenizer a ``tokenizer`` option names: None (or "builtin") for the built-in one, ``hf:PATH``."""
    if spec is None or spec == "builtin":
        return None
    if isinstance(spec, str) and spec.startswith("hf:") and len(spec) > 3:
        return hf_tokenizer(spec[3:])
    raise UserError(f"option tokenizer must be 'builtin' or 'hf:PATH' (a Hugging Face tokenizer.json), got {spec!r}")


@contextlib.contextmanager
def using_tokenizer(spec: Optional[str]) -> Iterator[None]:
    """Within the block, :func:`tokenize` uses the tokenizer ``spec`` names (see :func:`tokenizer_for`)."""
    token = _CURRENT.set(tokenizer_for(spec))
    try:
        yield
    finally:
        _CURRENT.reset(token)


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
        counts = Counter(w for doc in documents for w in doc if w not in SPECIALS)
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked[:max_size] if max_size is not None else ranked)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Iterable[str]) -> list[int]:
        """The ids of ``words`` (unknown words -> 1; a word spelt like the padding token too)."""
        return [UNK if w == SPECIALS[PAD] else self.index.get(w, UNK) for w in words]

    def fingerprint(self) -> str:
        """sha256 of the words in id order: two vocabularies map ids to the same words iff it is equal."""
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[int(i)] for i in ids]
