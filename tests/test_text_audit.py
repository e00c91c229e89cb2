"""audit() on text: masked tokens replaced by random words, by <unk> and removed (never perturbed in
embedding space); a model that reads the decoys "relies", one that reads the content words does not;
seeded, the global RNG untouched; the command prints the text audit."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rightreasons.audit import audit
from rightreasons.cli import main
from rightreasons.data import load_dataset
from rightreasons.data.text.tokenizer import PAD, UNK
from rightreasons.errors import UserError
from rightreasons.metrics.token_replacement import remove_tokens, replace_tokens, token_replacement
from rightreasons.models import create_model
from rightreasons.models.text import TextClassifier, embeddings, token_flags

CLASSES = ("business", "sport", "tech")


def corpus(root, per_class=10):
    """A BBC-layout folder <class>/NNN.txt: each class with words of its own (2 to 4 of them) and shared ones."""
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            words = " ".join(f"{name}word{j}" for j in range(i % 3 + 2))
            (root / name / f"{i + 1:03d}.txt").write_text(f"Title {i}\n\nThe {words} and shared text number {i}.\n")
    return root


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    source = corpus(tmp_path_factory.mktemp("bbc") / "bbc")
    return load_dataset("decoy-bbc", source=str(source), min_count=1, test_fraction=0.4, val_fraction=0.2)


class CountBody(nn.Module):
    """logits_k = sum over tokens of relu(e_t[k])."""

    def forward(self, x):
        return (F.relu(embeddings(x)) * token_flags(x).unsqueeze(-1)).sum(1)


def reader(vocab, reads: str) -> TextClassifier:
    """A text model that counts, per class k, the tokens of class k it ``reads``: "decoys" (decoyk) or "words"
    (the class's own words); every other token has embedding -1 (nothing, and no gradient)."""
    model = TextClassifier(len(vocab), len(CLASSES), CountBody())
    with torch.no_grad():
        w = torch.full((len(vocab), len(CLASSES)), -1.0)
        for i, word in enumerate(vocab.words):
            for k, name in enumerate(CLASSES):
                if word == (f"decoy{k}" if reads == "decoys" else f"{name}word{word[-1]}"):
                    w[i, k] = 1.0
        model.embedding.weight.copy_(w)
    return model


def test_a_model_that_reads_the_decoys_relies_on_them(splits):
    model = reader(splits.test.vocab, "decoys")
    result = audit(model, splits.test)
    assert result["verdict"] == "relies", result["summary"]
    assert result["input"] == "text" and result["annotated_examples"] == len(splits.test)
    assert result["randomised_flip_rate"] >= 0.10 and result["removed_flip_rate"] >= 0.10
    assert result["unk_flip_rate"] >= 0.10
    assert result["summary"].startswith("RELIES ON THE MASKED REGION: replacing only the masked tokens by random words")
    assert "masked_pgd_accuracy" not in result and "eps" not in result  # no box in embedding space
    tokens = int((splits.test.ids != PAD).sum())
    assert result["mask_area"] == pytest.approx(len(splits.test) / tokens)  # one decoy per document
    assert result["mask_gradient_share"] is not None and result["mask_gradient_share"] > 0.5


def test_a_model_that_reads_the_content_words_does_not_rely(splits):
    result = audit(reader(splits.test.vocab, "words"), splits.test)
    assert result["verdict"] == "does_not_rely", result["summary"]
    assert result["randomised_flip_rate"] == result["unk_flip_rate"] == result["removed_flip_rate"] == 0.0
    assert result["annotated_accuracy"] == result["accuracy"] == 1.0
    assert result["summary"].startswith("DOES NOT RELY ON THE MASKED REGION: ")


def test_text_audit_is_seeded_and_leaves_the_model_and_global_rng_alone(splits):
    model = create_model("text-cnn", splits.test.input_shape, 3, vocab_size=len(splits.test.vocab))
    model.train()
    state = torch.random.get_rng_state()
    a = audit(model, splits.test, draws=3, seed=5)
    b = audit(model, splits.test, draws=3, seed=5)
    assert a == b and model.training and torch.equal(state, torch.random.get_rng_state())


def test_text_audit_refuses_what_does_not_apply(splits, tmp_path):
    with pytest.raises(UserError, match="eps does not apply"):
        audit(reader(splits.test.vocab, "decoys"), splits.test, eps=0.5)
    with pytest.raises(UserError, match="is text"):
        audit(create_model("mlp", splits.test.input_shape, 3), splits.test)
    clean = load_dataset("bbc", source=str(corpus(tmp_path / "bbc")), min_count=1)
    result = audit(reader(clean.test.vocab, "words"), clean.test)
    assert result["verdict"] == "cannot_audit" and result["summary"].startswith("CANNOT AUDIT: no document")


def test_token_replacement_replaces_only_masked_tokens():
    ids = torch.tensor([[4, 5, 6, 7, 0], [8, 9, 0, 0, 0]])
    mask = torch.tensor([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([replace_tokens(ids, mask, "random", 12, g) for _ in range(200)])
    assert torch.equal(draws[:, ~mask], ids[~mask].expand(200, -1))  # padding and unmasked tokens kept
    changed = draws[:, mask]
    assert int(changed.min()) >= 2 and int(changed.max()) <= 11 and len(changed.unique()) == 10  # words only
    again = torch.Generator().manual_seed(0)
    assert torch.equal(replace_tokens(ids, mask, "random", 12, again), draws[0])
    assert replace_tokens(ids, mask, "unk", 12).tolist() == [[4, UNK, 6, UNK, 0], [UNK, 9, 0, 0, 0]]
    assert replace_tokens(ids, mask, "removed", 12).tolist() == remove_tokens(ids, mask).tolist() == [
        [4, 6, 0, 0, 0], [9, 0, 0, 0, 0]]
    with pytest.raises(UserError, match="no words"):
        replace_tokens(ids, mask, "random", 2, g)


def test_token_replacement_numbers(splits):
    out = token_replacement(reader(splits.test.vocab, "words"), splits.test, draws=2)
    assert out["documents"] == len(splits.test) and out["masked_tokens"] == len(splits.test)
    assert out["accuracy"] == 1.0 and out["removed_flip_rate"] == 0.0 and out["random_draws"] == 2
    with pytest.raises(UserError, match="text model"):
        token_replacement(create_model("mlp", splits.test.input_shape, 3), splits.test)


def test_audit_command_on_a_text_run(tmp_path, capsys):
    source = corpus(tmp_path / "bbc")
    run = tmp_path / "run"
    assert main(["train", "--data", "decoy-bbc", "--data-option", f"source={source}", "--data-option", "min_count=1",
                 "--model", "text-bag", "--method", "erm", "--epochs", "2", "--batch-size", "8", "--threads", "1",
                 "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["audit", str(run), "--draws", "2"]) == 0
    out = capsys.readouterr().out
    assert "predictions flipped by randomising" in out and "masked tokens" in out
    assert main(["audit", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input"] == "text" and result["verdict"] in ("relies", "partly", "does_not_rely")
    assert main(["audit", str(run), "--eps", "0.1"]) == 2
    assert "eps does not apply" in capsys.readouterr().err
