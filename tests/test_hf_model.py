"""``hf:PATH``: a local Hugging Face sequence classifier trained as a text model in embedding space."""

import json

import pytest
import tokenizers  # noqa: F401  (optional integrations of the library; the test extra installs them)
import torch
import transformers  # noqa: F401

from rightreasons.data import load_dataset
from rightreasons.errors import UserError
from rightreasons.methods import create_method
from rightreasons.models import create_model

CLASSES = ("business", "sport", "tech")


def _model_dir(root, words):
    """A tiny BERT (random weights) and a WordLevel tokenizer over ``words``, saved as save_pretrained does."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(sorted(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    root.mkdir()
    tok.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2, pad_token_id=0)
    BertForSequenceClassification(config).save_pretrained(str(root))
    return root, vocab


def _corpus(root):
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(10):
            (root / name / f"{i + 1:03d}.txt").write_text(f"Story {i}\n\nThe {name} news today.\n")
    return root


def test_a_local_bert_trains_with_rrr_in_embedding_space(tmp_path):
    source = _corpus(tmp_path / "bbc")
    words = ["story", "the", "news", "today", "."] + list(CLASSES) + [str(i) for i in range(10)]
    path, vocab = _model_dir(tmp_path / "bert", words + [f"decoy{k}" for k in range(3)])
    data = load_dataset("decoy-bbc", source=str(source), min_count=1, tokenizer=f"hf:{path}")
    model = create_model(f"hf:{path}", data.input_shape, 3, vocab_size=len(data.train.vocab),
                         vocabulary=data.train.vocab.words)
    # the embedding maps this data's ids to the tokenizer's and uses the model's own input embeddings
    table = model.embedding.table
    for i, word in enumerate(data.train.vocab.words[2:], start=2):
        assert int(table[i]) == vocab[word]
    shared = model.body.model.get_input_embeddings().weight
    assert model.embedding._body.model.get_input_embeddings().weight is shared
    pointers = [t.data_ptr() for t in model.state_dict().values() if t.numel()]
    assert len(set(pointers)) == len(pointers)  # the embedding is not a second, shared entry of the weights
    batch = data.train.batch(torch.arange(6))
    out = create_method("rrr", lam=1.0).loss(model, batch)  # double backward through BERT's attention
    out.loss.backward()
    assert float(out.terms["rrr"]) > 0 and float(shared.grad.abs().sum()) > 0
    logits = model(batch.x)
    assert logits.shape == (6, 3)  # the head resized from the checkpoint's 2 labels to the data's 3


def test_hf_model_refusals(tmp_path):
    source = _corpus(tmp_path / "bbc")
    path, _ = _model_dir(tmp_path / "bert", ["story"])
    builtin = load_dataset("decoy-bbc", source=str(source), min_count=1)
    with pytest.raises(UserError, match="knows"):  # a vocabulary the tokenizer mostly does not know
        create_model(f"hf:{path}", builtin.input_shape, 3, vocab_size=len(builtin.train.vocab),
                     vocabulary=builtin.train.vocab.words)
    with pytest.raises(UserError, match="text model"):
        create_model(f"hf:{path}", (1, 28, 28), 3)
    with pytest.raises(UserError, match="local directory"):
        create_model(f"hf:{tmp_path / 'nowhere'}", (9,), 3, vocab_size=5, vocabulary=["a"] * 5)
    (path / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer.json"):
        create_model(f"hf:{path}", (9,), 3, vocab_size=3, vocabulary=["<pad>", "<unk>", "story"])
    assert json.loads((path / "config.json").read_text())["model_type"] == "bert"


def test_a_run_with_a_hugging_face_model_saves_and_loads(tmp_path):
    from rightreasons.train.config import TrainConfig
    from rightreasons.train.run import load_run, run_training, save_run

    source = _corpus(tmp_path / "bbc")
    words = ["story", "the", "news", "today", "."] + list(CLASSES) + [str(i) for i in range(10)]
    path, _ = _model_dir(tmp_path / "bert", words + [f"decoy{k}" for k in range(3)])
    config = TrainConfig(data="decoy-bbc", data_options={"source": str(source), "min_count": 1,
                                                         "tokenizer": f"hf:{path}"},
                         model=f"hf:{path}", method="rrr", epochs=1, batch_size=8)
    output = run_training(config)
    save_run(tmp_path / "run", output)
    model, _, data = load_run(tmp_path / "run")
    ids = data.test.ids[:4]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids), output.model.eval()(ids))
