"""Rationale metrics of text models: per-token saliency (gradient and IG) against slow float64 references,
AUPRC and top-k F1 on hand-computed cases, ERASER's comprehensiveness / sufficiency on a model that reads
one known token and against a slow per-document reference, padding never counted, documents without a
rationale left out, and evaluate's mask share on text."""

import importlib.util
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rightreasons.data.text import TextDataset, Vocabulary
from rightreasons.errors import UserError
from rightreasons.metrics import evaluate
from rightreasons.metrics.rationale import BINS, average_precision, rationale_agreement, token_saliency, top_k_f1
from rightreasons.metrics.token_replacement import remove_tokens
from rightreasons.models import create_model
from rightreasons.models.text import TextClassifier, embeddings, token_flags

KEY = 5  # the token the hand-built model reads


class KeyBody(nn.Module):
    """logits = (scale * sum_t relu(e_t[0]) * flag_t, 0): only tokens with e[0] > 0 count, and have a gradient."""

    def __init__(self, scale: float = 3.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        z = (F.relu(embeddings(x)[..., 0]) * token_flags(x)).sum(1)
        return torch.stack([self.scale * z, torch.zeros_like(z)], 1)


def key_model(vocab_size: int = 12, dim: int = 3) -> TextClassifier:
    """A text model whose output depends on token KEY only: its embedding is (1, 0.5, ...), every other
    token's first value is -1 (so relu cuts it, gradient and IG path included)."""
    model = TextClassifier(vocab_size, dim, KeyBody()).double()
    with torch.no_grad():
        w = torch.full((vocab_size, dim), 0.3, dtype=torch.float64)
        w[:, 0] = -1.0
        w[KEY] = 0.5
        w[KEY, 0] = 1.0
        w[0] = 0.0
        model.embedding.weight.copy_(w)
    return model


def vocab(size: int = 12) -> Vocabulary:
    return Vocabulary([f"w{i}" for i in range(size - 2)])


def random_data(n=10, length=11, vocab_size=25, seed=0, rationale=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab_size, (n, length), generator=g)
    lengths = torch.randint(1, length + 1, (n,), generator=g)
    ids[torch.arange(length) >= lengths[:, None]] = 0
    mask = (torch.rand(n, length, generator=g) < 0.3) & (ids != 0)
    rat = (torch.rand(n, length, generator=g) < 0.4) & (ids != 0) if rationale else None
    return TextDataset(ids, torch.arange(n) % 3, vocab(vocab_size), mask=mask, rationale=rat, num_classes=3)


# ------------------------------------------------------------------------------------------- AUPRC and F1
def test_average_precision_hand_computed():
    t = torch.tensor
    # ranks 1..4: hit, miss, hit, miss -> (1/1 + 2/3) / 2
    assert average_precision(t([0.9, 0.8, 0.7, 0.6]), t([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # a tie is one threshold: {0, 1} at 0.5 gives P 1/2, R 1/2; then 0.1 gives P 2/3, R 1
    assert average_precision(t([0.5, 0.5, 0.1]), t([1, 0, 1])) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert average_precision(t([0.1, 0.9]), t([1, 0])) == pytest.approx(0.5)  # the one hit ranked last
    assert average_precision(t([0.3, 0.2, 0.1]), t([1, 1, 0])) == pytest.approx(1.0)
    assert average_precision(t([1.0, 1.0]), t([1, 1])) == pytest.approx(1.0)
    assert math.isnan(average_precision(t([0.3, 0.2]), t([0, 0])))
    if importlib.util.find_spec("sklearn") is not None:  # a cross-check where sklearn is installed
        from sklearn.metrics import average_precision_score

        g = torch.Generator().manual_seed(0)
        for _ in range(20):
            scores = torch.randint(0, 4, (15,), generator=g).double()  # many ties
            labels = torch.randint(0, 2, (15,), generator=g)
            if labels.any():
                assert average_precision(scores, labels) == pytest.approx(
                    average_precision_score(labels.numpy(), scores.numpy()))


def test_top_k_f1_takes_as_many_tokens_as_the_rationale_has():
    t = torch.tensor
    assert top_k_f1(t([0.1, 0.9, 0.8, 0.2]), t([0, 1, 0, 1])) == pytest.approx(0.5)  # top 2 = {1, 2}
    assert top_k_f1(t([0.1, 0.9, 0.8, 0.2]), t([0, 1, 1, 0])) == pytest.approx(1.0)
    assert top_k_f1(t([0.1, 0.9, 0.8, 0.2]), t([1, 0, 0, 0])) == pytest.approx(0.0)
    assert top_k_f1(t([1.0, 1.0, 1.0, 1.0]), t([0, 0, 1, 1])) == pytest.approx(0.0)  # ties: earlier tokens first
    assert top_k_f1(t([1.0, 1.0, 1.0, 1.0]), t([1, 1, 0, 0])) == pytest.approx(1.0)
    assert math.isnan(top_k_f1(t([0.5, 0.5]), t([0, 0])))


# ----------------------------------------------------------------------------------------------- saliency
@pytest.mark.parametrize("name", ["text-bag", "text-cnn", "text-transformer"])
def test_gradient_saliency_is_the_embedding_gradient_norm_per_token_float64(name):
    torch.manual_seed(0)
    data = random_data()
    model = create_model(name, data.input_shape, 3, vocab_size=len(data.vocab), dim=8).double().eval()
    saliency = token_saliency(model, data.ids, "grad")
    for n in range(len(data)):
        e = model.embed(data.ids[n:n + 1]).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model.body(e).log_softmax(1).sum(), e)
        expected = g[0, :, :-1].norm(dim=-1) * (data.ids[n] != 0)
        torch.testing.assert_close(saliency[n], expected)
    assert float(saliency[data.ids == 0].abs().max()) == 0.0


def test_ig_saliency_is_the_riemann_sum_from_the_zero_embedding_with_flags_fixed_float64():
    torch.manual_seed(1)
    data = random_data(n=4)
    model = create_model("text-cnn", data.input_shape, 3, vocab_size=len(data.vocab), dim=5, dropout=0.0).double()
    steps = 7
    saliency = token_saliency(model, data.ids, "ig", ig_steps=steps)
    for n in range(len(data)):
        x = model.embed(data.ids[n:n + 1]).detach()
        flag = x[..., -1:]
        total = torch.zeros_like(x)
        for k in range(1, steps + 1):
            z = torch.cat([k / steps * embeddings(x), flag], -1).requires_grad_(True)
            (g,) = torch.autograd.grad(model.body(z).log_softmax(1).sum(), z)
            total += g / steps
        expected = (embeddings(x) * embeddings(total))[0].norm(dim=-1)
        torch.testing.assert_close(saliency[n], expected)


# ------------------------------------------------------------------------------- comprehensiveness etc.
def test_aopc_on_a_model_that_reads_one_known_token():
    model = key_model()
    ids = torch.tensor([[3, KEY, 4, 6, 7, 8, 9, 2, 3, 4],  # the key inside
                        [3, 4, 6, 0, 0, 0, 0, 0, 0, 0]])  # no key: nothing the model reads
    data = TextDataset(ids, torch.tensor([0, 1]), vocab(), rationale=ids == KEY, num_classes=2)
    saliency = token_saliency(model, ids)
    assert saliency[0].argmax() == 1 and float(saliency[0].sum() - saliency[0, 1]) == 0.0
    assert float(saliency[1].abs().sum()) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one document has a rationale: no warning
        out = rationale_agreement(model, data)
    p = 1 / (1 + math.exp(-3.0))  # p(class 0) with the key; without it both logits are 0
    # removing the top tokens always removes the key: p - 1/2 for the first document, 0 for the second
    assert out["comprehensiveness"] == pytest.approx(((p - 0.5) + 0.0) / 2)
    assert out["sufficiency"] == pytest.approx(0.0, abs=1e-12)  # the key alone is all the model needs
    assert list(out["comprehensiveness_by_bin"]) == [f"{b}%" for b in BINS]
    assert all(v == pytest.approx((p - 0.5) / 2) for v in out["comprehensiveness_by_bin"].values())
    assert out["token_f1"] == pytest.approx(1.0) and out["auprc"] == pytest.approx(1.0)
    assert out["documents"] == 2 and out["rationale_documents"] == 1
    ig = rationale_agreement(model, data, attribution="ig", ig_steps=5)
    assert ig["attribution"] == "ig" and ig["comprehensiveness"] == pytest.approx(out["comprehensiveness"])


def _slow_reference(model, data, saliency):
    """Comprehensiveness and sufficiency per document, one document and bin at a time, with lists."""
    comps, suffs = [], []
    for n in range(len(data)):
        tokens = [int(t) for t in data.ids[n] if t != 0]
        if not tokens:
            continue
        s = saliency[n, :len(tokens)].tolist()
        order = sorted(range(len(tokens)), key=lambda i: (-s[i], i))

        def prob(seq, k=None):
            x = torch.tensor([seq + [0] * (data.ids.shape[1] - len(seq))])
            p = model(x).double().softmax(1)[0]
            return p if k is None else float(p[k])

        full = prob(tokens)
        k = int(full.argmax())
        c, u = [], []
        for b in BINS:
            top = set(order[:math.ceil(b * len(tokens) / 100)])
            c.append(float(full[k]) - prob([t for i, t in enumerate(tokens) if i not in top], k))
            u.append(float(full[k]) - prob([t for i, t in enumerate(tokens) if i in top], k))
        comps.append(c)
        suffs.append(u)
    return torch.tensor(comps, dtype=torch.float64), torch.tensor(suffs, dtype=torch.float64)


def test_comprehensiveness_and_sufficiency_match_a_slow_reference_float64():
    torch.manual_seed(2)
    data = random_data(n=9, length=37)
    model = create_model("text-cnn", data.input_shape, 3, vocab_size=len(data.vocab), dim=4, dropout=0.0).double()
    out = rationale_agreement(model, data, batch_size=4)
    with torch.no_grad():
        comps, suffs = _slow_reference(model.eval(), data, token_saliency(model, data.ids))
    assert out["comprehensiveness"] == pytest.approx(float(comps.mean()), abs=1e-12)
    assert out["sufficiency"] == pytest.approx(float(suffs.mean()), abs=1e-12)
    for i, b in enumerate(BINS):
        assert out["comprehensiveness_by_bin"][f"{b}%"] == pytest.approx(float(comps[:, i].mean()), abs=1e-12)
        assert out["sufficiency_by_bin"][f"{b}%"] == pytest.approx(float(suffs[:, i].mean()), abs=1e-12)


def test_remove_tokens_deletes_and_shifts_left():
    ids = torch.tensor([[5, 6, 7, 8, 0], [9, 3, 0, 0, 0]])
    drop = torch.tensor([[False, True, False, True, False], [True, True, False, False, False]])
    assert remove_tokens(ids, drop).tolist() == [[5, 7, 0, 0, 0], [0, 0, 0, 0, 0]]


# ------------------------------------------------------------------------------------ what is counted
def test_padding_is_never_counted():
    torch.manual_seed(3)
    data = random_data(n=8, length=9)
    padded = TextDataset(torch.cat([data.ids, torch.zeros(8, 6, dtype=torch.long)], 1), data.y, data.vocab,
                         rationale=torch.cat([data.rationale, torch.ones(8, 6, dtype=torch.bool)], 1),
                         num_classes=3)
    assert not bool(padded.rationale[:, 9:].any())  # a rationale on padding is dropped by the dataset
    model = create_model("text-bag", (15,), 3, vocab_size=len(data.vocab), dim=5).double()  # padding-invariant
    a, b = rationale_agreement(model, data), rationale_agreement(model, padded)
    for key in ("token_f1", "auprc", "comprehensiveness", "sufficiency"):
        assert a[key] == pytest.approx(b[key], abs=1e-12), key
    assert float(token_saliency(model, padded.ids)[:, 9:].abs().max()) == 0.0
    # zero saliency everywhere (the key model without its key): one tie among the 3 tokens, AP = 1/3 (1/6 if
    # the 3 padding positions counted), and the top-1 token is the first, not a padding position
    ids = torch.tensor([[3, 4, 6, 0, 0, 0]])
    one = TextDataset(ids, torch.tensor([0]), vocab(), rationale=torch.tensor([[0, 0, 1, 0, 0, 0]]), num_classes=2)
    out = rationale_agreement(key_model(), one)
    assert out["auprc"] == pytest.approx(1 / 3) and out["token_f1"] == 0.0


def test_documents_without_a_rationale_are_left_out():
    torch.manual_seed(4)
    data = random_data(n=10)
    rationale = data.rationale.clone()
    rationale[::2] = False  # every other document: no rationale
    data = TextDataset(data.ids, data.y, data.vocab, rationale=rationale, num_classes=3)
    model = create_model("text-bag", data.input_shape, 3, vocab_size=len(data.vocab), dim=5).double()
    out = rationale_agreement(model, data)
    s = token_saliency(model, data.ids)
    kept = [n for n in range(10) if bool(rationale[n].any())]
    tokens = data.ids != 0
    f1 = [top_k_f1(s[n][tokens[n]], rationale[n][tokens[n]]) for n in kept]
    ap = [average_precision(s[n][tokens[n]], rationale[n][tokens[n]]) for n in kept]
    assert out["rationale_documents"] == len(kept) < 10 and out["documents"] == 10
    assert out["token_f1"] == pytest.approx(sum(f1) / len(f1)) and out["auprc"] == pytest.approx(sum(ap) / len(ap))
    none = TextDataset(data.ids, data.y, data.vocab, num_classes=3)
    with pytest.warns(RuntimeWarning, match="no document with a rationale"):
        out = rationale_agreement(model, none)
    assert math.isnan(out["token_f1"]) and math.isnan(out["auprc"]) and out["rationale_documents"] == 0
    assert not math.isnan(out["comprehensiveness"])  # faithfulness needs no rationale


def test_evaluate_gives_the_share_of_the_embedding_gradient_on_masked_tokens_float64():
    """mask_gradient_share of a text model = mean over annotated documents of sum|g| m / sum|g|, with g the
    embedding gradient and m the masked tokens' embedding values (the token flag never counted)."""
    torch.manual_seed(5)
    data = random_data(n=8)
    model = create_model("text-cnn", data.input_shape, 3, vocab_size=len(data.vocab), dim=4, dropout=0.0).double()
    shares = []
    for n in range(len(data)):
        if not bool(data.mask[n].any()):
            continue
        e = model.embed(data.ids[n:n + 1]).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model.body(e).log_softmax(1).sum(), e)
        g = g[0, :, :-1].abs()
        shares.append(float((g * data.mask[n, :, None]).sum() / g.sum()))
    assert evaluate(model, data)["mask_gradient_share"] == pytest.approx(sum(shares) / len(shares))


def test_wrong_inputs_are_one_line_errors():
    data = random_data(n=3)
    with pytest.raises(UserError, match="text model"):
        rationale_agreement(create_model("mlp", data.input_shape, 3), data)
    model = create_model("text-bag", data.input_shape, 3, vocab_size=len(data.vocab))
    with pytest.raises(UserError, match="attribution"):
        rationale_agreement(model, data, attribution="lime")
    with pytest.raises(UserError, match="batch_size"):
        rationale_agreement(model, data, batch_size=0)
