"""Text: the built-in tokenizer, token datasets with per-token masks, the BBC News corpus and its
decoy-word variant, and the view of a text dataset in a text model's embedding space."""

from . import decoy_bbc  # noqa: F401  (registers bbc and decoy-bbc)
from .dataset import TextDataset
from .embedded import EmbeddedTextDataset, explanation_space, is_text_dataset
from .tokenizer import Tokens, Vocabulary, tokenize

__all__ = ["EmbeddedTextDataset", "TextDataset", "Tokens", "Vocabulary", "explanation_space", "is_text_dataset",
           "tokenize"]
