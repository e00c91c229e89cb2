"""Text: the built-in tokenizer, token datasets with per-token masks, the BBC News corpus and its
decoy-word variant, the view of a text dataset in a text model's embedding space, and text from files:
your own table (``text:PATH``) and the ERASER, HateXplain, e-SNLI and 20 Newsgroups benchmarks."""

from . import (  # noqa: F401  (bbc and decoy-bbc; text:, eraser:, hatexplain:, esnli:, newsgroups:)
    decoy_bbc,
    eraser,
    esnli,
    hatexplain,
    newsgroups,
    table,
)
from .dataset import TextDataset
from .embedded import EmbeddedTextDataset, explanation_space, is_text_dataset
from .tokenizer import Tokens, Vocabulary, tokenize

__all__ = ["EmbeddedTextDataset", "TextDataset", "Tokens", "Vocabulary", "explanation_space", "is_text_dataset",
           "tokenize"]
