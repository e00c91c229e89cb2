"""Text: tokenizer, token datasets, text models in embedding space, methods and metrics on them, decoy-bbc."""

import math

import pytest
import torch

from rightreasons.batch import Batch
from rightreasons.data import load_dataset
from rightreasons.data.text import TextDataset, Vocabulary, explanation_space, tokenize
from rightreasons.data.text.dataset import encode, token_mask
from rightreasons.data.text.decoy_bbc import DECOY
from rightreasons.data.text.tokenizer import tokens_in_spans
from rightreasons.errors import DataError, UserError
from rightreasons.methods import create_method
from rightreasons.metrics import evaluate
from rightreasons.models import create_model
from rightreasons.models.text import TEXT_MODELS, token_flags

CLASSES = ("business", "sport", "tech")


def test_tokenizer_lowercases_keeps_apostrophes_and_spans():
    text = "Don't PANIC: 42 fish, Ok?"
    tokens = tokenize(text)
    assert tokens.words == ("don't", "panic", ":", "42", "fish", ",", "ok", "?")
    for word, (start, end) in zip(tokens.words, tokens.spans):
        assert text[start:end].lower() == word
    assert tokens_in_spans(tokens, [(6, 11)]) == [1]  # "PANIC"
    assert tokens_in_spans(tokens, [(0, 1), (21, 25)]) == [0, 6, 7]  # "D" and " Ok?"


def test_vocabulary_most_frequent_first_ties_alphabetical_min_count():
    vocab = Vocabulary.build([["b", "a", "c", "c"], ["a", "d"]], min_count=2)
    assert vocab.words == ["<pad>", "<unk>", "a", "c"]  # a and c twice (tie: alphabetical), b and d once
    assert vocab.encode(["c", "zzz", "a"]) == [3, 1, 2]


def test_encode_cuts_and_pads_and_mask_never_on_padding():
    vocab = Vocabulary(["a", "b"])
    ids = encode([["a", "b", "a"], ["b"]], vocab, max_length=2)
    assert ids.tolist() == [[2, 3], [3, 0]]
    mask = token_mask(ids, [[1, 5], [0, 1]])  # 5 beyond the cut, 1 on padding: both dropped
    assert mask.tolist() == [[False, True], [True, False]]


def test_text_dataset_refuses_padding_inside_and_masks_on_padding():
    vocab = Vocabulary(["a", "b"])
    y = torch.tensor([0, 1])
    with pytest.raises(DataError, match="padding"):
        TextDataset(torch.tensor([[2, 0, 3], [2, 3, 0]]), y, vocab)
    with pytest.raises(DataError, match="marks padding"):
        TextDataset(torch.tensor([[2, 3, 0], [2, 3, 0]]), y, vocab, mask=torch.tensor([[0, 0, 1], [0, 0, 0]]))
    with pytest.raises(DataError, match="out of range"):
        TextDataset(torch.tensor([[2, 9]]), torch.tensor([0]), vocab)


def _data(n=12, length=9, vocab_size=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab_size, (n, length), generator=g)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    ids[torch.arange(length) >= lengths[:, None]] = 0
    mask = (torch.rand(n, length, generator=g) < 0.3) & (ids != 0)
    vocab = Vocabulary([f"w{i}" for i in range(vocab_size - 2)])
    return TextDataset(ids, torch.arange(n) % 3, vocab, mask=mask, num_classes=3)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_padding_is_never_a_feature(name):
    """More padding changes no logit, and the token flag carries no gradient."""
    torch.manual_seed(0)
    data = _data()
    model = create_model(name, (data.input_shape[0] + 4,), 3, vocab_size=len(data.vocab)).eval()
    ids = data.ids
    longer = torch.cat([ids, torch.zeros(len(ids), 4, dtype=torch.long)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(longer), rtol=1e-5, atol=1e-6)
    x = model.embed(ids).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.body(x).log_softmax(1).sum(), x)
    assert float(grad[..., -1].abs().max()) == 0.0
    assert float(grad[..., :-1][ids == 0].abs().max()) == 0.0  # no gradient on padding either
    assert float(grad[..., :-1][ids != 0].abs().sum()) > 0


def test_embed_batch_spreads_the_token_mask_over_the_embedding_not_the_flag():
    data = _data()
    model = create_model("text-bag", data.input_shape, 3, vocab_size=len(data.vocab), dim=5)
    batch = model.embed_batch(data.batch(torch.arange(4)))
    assert batch.x.shape == (4, data.input_shape[0], 6) and batch.mask.shape == batch.x.shape
    assert torch.equal(batch.mask[..., :5], data.mask[:4, :, None].float().expand(-1, -1, 5))
    assert float(batch.mask[..., 5].abs().sum()) == 0.0
    assert torch.equal(token_flags(batch.x), (data.ids[:4] != 0).float())


def test_rrr_on_a_text_model_is_the_masked_embedding_gradient_penalty_float64():
    """rrr's penalty equals lam * mean_n ||m_n * d sum_k log p_k / d e_n||^2, computed slowly per example."""
    torch.manual_seed(1)
    data = _data()
    model = create_model("text-cnn", data.input_shape, 3, vocab_size=len(data.vocab), dim=6, dropout=0.0).double()
    batch = data.batch(torch.arange(6))
    out = create_method("rrr", lam=3.0).loss(model, batch)
    expected = []
    for n in range(6):
        e = model.embed(batch.x[n:n + 1]).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model.body(e).log_softmax(1).sum(), e)
        m = batch.mask[n:n + 1].double().unsqueeze(-1)
        expected.append((g[..., :-1] * m).pow(2).sum())
    torch.testing.assert_close(out.terms["rrr"], 3.0 * torch.stack(expected).mean())


def test_rrr_with_an_empty_mask_is_erm_and_trains_the_embedding():
    torch.manual_seed(2)
    data = _data()
    model = create_model("text-transformer", data.input_shape, 3, vocab_size=len(data.vocab), dropout=0.0)
    b = data.batch(torch.arange(6))
    empty = Batch(b.x, b.y, torch.zeros_like(b.mask))
    rrr = create_method("rrr").loss(model, empty)
    erm = create_method("erm").loss(model, empty)
    torch.testing.assert_close(rrr.loss, erm.loss)
    out = create_method("rrr", lam=100.0).loss(model, b)  # double backward through attention (math kernel)
    out.loss.backward()
    assert float(model.embedding.weight.grad.abs().sum()) > 0
    assert float(out.terms["rrr"]) > 0


@pytest.mark.parametrize("name", ["text-cnn", "text-transformer"])
def test_methods_that_do_not_apply_to_a_text_model_say_so_before_training(name):
    data = _data()
    model = create_model(name, data.input_shape, 3, vocab_size=len(data.vocab))
    for method in ("ibp_ex", "cdep"):
        with pytest.raises(UserError):
            create_method(method).check_model(model)


def _embedded_bag(seed=0):
    torch.manual_seed(seed)
    data = _data(seed=seed)
    model = create_model("text-bag", data.input_shape, 3, vocab_size=len(data.vocab), dim=4, hidden=[7]).double()
    batch = model.embed_batch(data.batch(torch.arange(len(data))))
    return model, batch.x.detach(), batch.mask


def test_interval_bounds_of_the_bag_model_hold_sampled_points_and_are_exact_at_eps_0_float64():
    from rightreasons.ops.interval_bounds import interval_bounds

    model, x, mask = _embedded_bag()
    lower, upper = interval_bounds(model.body, x - 0.7 * mask, x + 0.7 * mask)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        point = x + 0.7 * mask * (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1)
        out = model.body(point)
        assert bool((out >= lower - 1e-12).all() and (out <= upper + 1e-12).all())
    lo0, hi0 = interval_bounds(model.body, x, x)
    torch.testing.assert_close(lo0, model.body(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(hi0, model.body(x), rtol=0, atol=1e-12)
    moved = torch.zeros_like(mask)
    moved[..., -1] = 1  # a box over the token flags is refused, not bounded wrongly
    with pytest.raises(UserError, match="token flags"):
        interval_bounds(model.body, x - moved, x + moved)


def test_contextual_decomposition_of_the_bag_model_adds_up_to_the_logits_float64():
    from rightreasons.ops.contextual_decomposition import contextual_decomposition

    model, x, mask = _embedded_bag(seed=2)
    relevant, irrelevant = contextual_decomposition(model.body, x, mask)
    torch.testing.assert_close(relevant + irrelevant, model.body(x), rtol=0, atol=1e-10)
    nothing, _ = contextual_decomposition(model.body, x, torch.zeros_like(mask))  # relevant = the masked part
    torch.testing.assert_close(nothing, torch.zeros_like(nothing), rtol=0, atol=1e-12)


def test_metrics_run_in_embedding_space_and_models_must_match_the_data():
    data = _data()
    model = create_model("text-bag", data.input_shape, 3, vocab_size=len(data.vocab))
    out = evaluate(model, data)
    assert 0 <= out["accuracy"] <= 1 and 0 <= out["mask_gradient_share"] <= 1
    with pytest.raises(UserError, match="text"):
        explanation_space(create_model("mlp", data.input_shape, 3), data)
    with pytest.raises(UserError, match="text model"):
        create_model("text-bag", (1, 28, 28), 3, vocab_size=10)
    with pytest.raises(UserError, match="text data"):
        create_model("text-cnn", (9,), 3)


def _corpus(root, per_class=8):
    """A BBC-layout folder: <class>/NNN.txt, each class with words of its own beside shared ones."""
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            words = " ".join(f"{name}word{j}" for j in range(i % 3 + 2))
            (root / name / f"{i + 1:03d}.txt").write_text(f"Title {i}\n\nThe {words} and shared text number {i}.\n")
    return root


def test_decoy_bbc_puts_the_class_decoy_in_train_and_a_random_one_in_test(tmp_path):
    source = _corpus(tmp_path / "bbc")
    splits = load_dataset("decoy-bbc", seed=3, source=str(source), min_count=1, test_fraction=0.4,
                          val_fraction=0.2, groups="label_decoy")
    decoys = {DECOY.format(k) for k in range(len(CLASSES))}
    seen_other = False
    for split in ("train", "val", "test"):
        ds = splits.split(split)
        assert bool(ds.has_mask.all())
        for n in range(len(ds)):
            (position,) = torch.nonzero(ds.mask[n]).flatten().tolist()
            word = ds.vocab.words[int(ds.ids[n, position])]
            assert word in decoys and sum(w in decoys for w in ds.words[n]) == 1
            k = int(word.removeprefix("decoy"))
            if split != "test":  # val defaults to "train": the decoy reveals the label
                assert k == int(ds.y[n])
            seen_other |= k != int(ds.y[n])
            assert int(ds.group[n]) == 2 * int(ds.y[n]) + (k == int(ds.y[n]))
    assert seen_other
    again = load_dataset("decoy-bbc", seed=3, source=str(source), min_count=1, test_fraction=0.4,
                         val_fraction=0.2, groups="label_decoy")
    assert torch.equal(again.test.ids, splits.test.ids) and torch.equal(again.train.mask, splits.train.mask)
    other = load_dataset("decoy-bbc", seed=4, source=str(source), min_count=1, test_fraction=0.4, val_fraction=0.2)
    assert not torch.equal(other.train.ids, splits.train.ids)
    assert torch.equal(other.train.y, splits.train.y)  # the split does not depend on the seed


def test_bbc_oracle_has_no_decoys_and_no_annotations(tmp_path):
    source = _corpus(tmp_path / "bbc")
    splits = load_dataset("bbc", source=str(source), min_count=1)
    assert not any(w.startswith("decoy") for w in splits.train.vocab.words)
    assert not bool(splits.train.has_mask.any()) and not bool(splits.train.mask.any())
    with pytest.raises(UserError, match="decoy-bbc only"):
        load_dataset("bbc", source=str(source), val="decorrelated")
    with pytest.raises(UserError, match="max_length"):
        load_dataset("decoy-bbc", source=str(source), max_length=0)


def test_training_a_text_model_end_to_end(tmp_path):
    from rightreasons.train.config import TrainConfig
    from rightreasons.train.run import run_training

    source = _corpus(tmp_path / "bbc", per_class=10)
    config = TrainConfig(data="decoy-bbc", data_options={"source": str(source), "min_count": 1}, method="rrr",
                         model="text-bag", epochs=2, batch_size=8)
    out = run_training(config)
    assert 0 <= out.metrics["test"]["accuracy"] <= 1
    assert not math.isnan(out.metrics["test"]["mask_gradient_share"])
    assert out.metrics["test"]["masked_pgd_accuracy"] is None  # embeddings have no finite range: no default eps


def test_fit_refuses_mismatched_models_data_and_augmentation():
    import rightreasons as rr

    data = _data()
    splits = rr.DataSplits(data, data, data)
    text_model = create_model("text-bag", data.input_shape, 3, vocab_size=len(data.vocab))
    with pytest.raises(UserError, match="is text: train a text model"):
        rr.fit(create_model("mlp", (9,), 3), create_method("erm"), splits, rr.TrainConfig(epochs=1))
    with pytest.raises(UserError, match="augmentation"):
        rr.fit(text_model, create_method("erm"), splits, rr.TrainConfig(epochs=1, augment={"preset": "flip"}))
    from rightreasons.train.config import TrainConfig
    from rightreasons.train.run import build_model

    with pytest.raises(UserError, match="data is text"):
        build_model(TrainConfig(model="mlp"), (9,), 3, {"vocab_size": 30})
    with pytest.raises(UserError, match="set by the data"):
        build_model(TrainConfig(model="text-bag", model_options={"vocab_size": 5}), (9,), 3, {"vocab_size": 30})


def test_a_run_refuses_text_data_with_another_vocabulary(tmp_path):
    from rightreasons.train.config import TrainConfig
    from rightreasons.train.run import load_run, run_training, save_run

    source = _corpus(tmp_path / "bbc", per_class=10)
    config = TrainConfig(data="decoy-bbc", data_options={"source": str(source), "min_count": 1}, method="erm",
                         model="text-bag", epochs=1, batch_size=8)
    output = run_training(config)
    assert output.metrics["vocabulary"]["sha256"] == output.data.train.vocab.fingerprint()
    save_run(tmp_path / "run", output)
    model, _, data = load_run(tmp_path / "run")  # its own data: the same vocabulary
    assert data.train.vocab.words == output.data.train.vocab.words
    other = load_dataset("decoy-bbc", source=str(source), min_count=1, max_vocab=5)  # fewer words, other ids
    with pytest.raises(UserError, match="another vocabulary"):
        load_run(tmp_path / "run", data=other)


@pytest.mark.parametrize("method", ["ig_norm", "ig_sum_norm", "rrr", "certainty", "pgd_ex+rrr", "madry"])
def test_methods_that_differentiate_input_gradients_train_the_transformer(method):
    """Attention's fused kernels have no double backward: such methods run under the math kernel. Losses at
    adversarial points only (madry, ig_sum_norm) train the embedding too."""
    from rightreasons.methods import StepContext

    data = _data()
    model = create_model("text-transformer", data.input_shape, 3, vocab_size=len(data.vocab))
    meth = create_method(method)
    meth.start_epoch(50, 100)  # after every eps ramp
    ctx = StepContext(epoch=50, num_epochs=100, generator=torch.Generator().manual_seed(0),
                      input_range=data.input_range)
    out = meth.loss(model, data.batch(torch.arange(6)), ctx)
    out.loss.backward()
    assert float(model.embedding.weight.grad.abs().sum()) > 0
