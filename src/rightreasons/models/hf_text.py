"""``hf:PATH``: a Hugging Face sequence classifier saved in a local directory, as a text model.

The directory holds what ``save_pretrained`` writes (``config.json``, the weights) and the tokenizer's
``tokenizer.json``; it is read with the optional ``transformers`` and ``tokenizers`` packages, with
``local_files_only`` (never a download). The model becomes a :class:`~rightreasons.models.text.TextClassifier`:
the embedding maps this data's vocabulary ids to the tokenizer's ids and looks them up in the model's own
input embeddings; the body runs the model on ``inputs_embeds`` with the attention mask from the token flags,
so every method trains it in embedding space. Tokenize the data with the same tokenizer
(``--data-option tokenizer=hf:PATH``), so that the vocabulary's words are the model's tokens; a vocabulary
most of whose words the tokenizer does not know is refused. The classification head is resized to the
data's classes when the checkpoint has another number.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..tokens import embeddings, token_flags
from .registry import register_prefix_model
from .text import TextClassifier

#: the share of the vocabulary the tokenizer must know
MIN_KNOWN = 0.5


class HFBody(nn.Module):
    """(B, L, D + 1) embedded text -> the Hugging Face model's logits on ``inputs_embeds``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=embeddings(x), attention_mask=token_flags(x).long()).logits


class MappedEmbedding(nn.Module):
    """ids of this data's vocabulary -> the tokenizer's ids -> the body's model's input embeddings (shared,
    not a second copy: the body is referenced, not registered)."""

    def __init__(self, table: torch.Tensor, body: HFBody):
        super().__init__()
        self.register_buffer("table", table)
        object.__setattr__(self, "_body", body)
        self.embedding_dim = body.model.get_input_embeddings().embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._body.model.get_input_embeddings()(self.table[ids])


def _imports(spec: str):
    try:
        from tokenizers import Tokenizer
        from transformers import AutoModelForSequenceClassification
    except ImportError:
        raise UserError(f"model {spec!r} needs the optional packages transformers and tokenizers "
                        "(pip install transformers tokenizers)") from None
    return Tokenizer, AutoModelForSequenceClassification


def hf_factory(spec: str):
    """The factory of ``hf:PATH`` (see the module docstring)."""
    path = Path(spec.partition(":")[2])
    if not spec.partition(":")[2] or not path.is_dir():
        raise UserError(f"model {spec!r}: expected hf:DIR, a local directory written by save_pretrained")

    def factory(input_shape, num_classes, vocab_size=None, vocabulary=None):
        if vocabulary is None:
            raise UserError(f"model {spec!r} is a text model: train it on text data, tokenized with "
                            f"--data-option tokenizer=hf:{path}")
        Tokenizer, AutoModel = _imports(spec)
        if not (path / "tokenizer.json").is_file():
            raise UserError(f"model {spec!r}: {path / 'tokenizer.json'} is missing (save the tokenizer beside it)")
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        try:
            model = AutoModel.from_pretrained(str(path), num_labels=num_classes, local_files_only=True,
                                              ignore_mismatched_sizes=True)
        except (OSError, ValueError) as exc:
            raise UserError(f"model {spec!r}: cannot load it ({str(exc).splitlines()[0][:200]})") from None
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions is not None and int(input_shape[0]) > positions:
            raise UserError(f"model {spec!r} takes at most {positions} tokens; the data has {input_shape[0]} "
                            f"(--data-option max_length={positions})")
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
        unk = tokenizer.token_to_id("[UNK]") if tokenizer.token_to_id("[UNK]") is not None else pad
        ids = [tokenizer.token_to_id(w) for w in vocabulary]
        known = sum(i is not None for i in ids[2:])
        if len(vocabulary) > 2 and known < MIN_KNOWN * (len(vocabulary) - 2):
            raise UserError(f"model {spec!r}: its tokenizer knows {known} of the data's {len(vocabulary) - 2} "
                            f"words; tokenize the data with --data-option tokenizer=hf:{path}")
        table = torch.tensor([pad, unk] + [unk if i is None else i for i in ids[2:]], dtype=torch.long)
        body = HFBody(model)
        return TextClassifier(len(vocabulary), body.model.get_input_embeddings().embedding_dim, body,
                              embedding=MappedEmbedding(table, body))

    return factory


register_prefix_model("hf", hf_factory)
