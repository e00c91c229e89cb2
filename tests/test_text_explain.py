"""`rightreasons explain` on text runs: a self-contained HTML page, every word escaped, the decoy marked as
masked, the token a model reads as its most intense span, long documents cut around the salient tokens."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rightreasons.cli import main
from rightreasons.data.text import TextDataset, Vocabulary
from rightreasons.models.text import TextClassifier, embeddings, token_flags
from rightreasons.report.text_html import FULL, HOT, TextRun, compute_rows, shown_windows, text_page
from rightreasons.train import TrainConfig, run_training, save_run

CLASSES = ("business", "sport", "tech")
SPAN = re.compile(r'<span class="(t[^"]*)"(?: style="background:#([0-9a-f]{6})")? title="[^"]*">([^<]*)</span>')


def corpus(root, per_class=10):
    """A BBC-layout folder <class>/NNN.txt whose documents also hold markup, to be shown as text."""
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            words = " ".join(f"{name}word{j}" for j in range(i % 3 + 2))
            (root / name / f"{i + 1:03d}.txt").write_text(
                f"Title {i}\n\nThe {words} and <script>alert(1)</script> shared text number {i}.\n")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-explain")
    source = corpus(root / "bbc")
    out = []
    for method in ("erm", "rrr"):
        config = TrainConfig(data="decoy-bbc", data_options={"source": str(source), "min_count": 1}, method=method,
                             model="text-bag", epochs=2, batch_size=8, threads=1)
        out.append(save_run(root / method, run_training(config)))
    return out


def spans(html: str) -> list[tuple[str, float, str]]:
    """(classes, colour intensity 0..1, text) of every token span, in order."""
    out = []
    for classes, rgb, text in SPAN.findall(html):
        blue = int(rgb[4:], 16) if rgb else 255
        out.append((classes, (255 - blue) / (255 - HOT[2]), text))
    return out


def test_explain_writes_a_self_contained_page_for_two_text_runs(runs, tmp_path, capsys):
    page = tmp_path / "page.html"
    argv = ["explain", *map(str, runs), "--out", str(page), "--images", "4", "--attribution", "gradient"]
    assert main(argv) == 0
    assert "4 test documents of decoy-bbc/test" in capsys.readouterr().out
    html = page.read_text()
    assert "<script" not in html.lower() and "http" not in html and "src=" not in html and "url(" not in html
    assert "&lt;" in html and "&gt;" in html  # the documents' markup, shown as text
    sections = html.split("<section>")[1:]
    assert len(sections) == 4
    for section in sections:
        assert section.count('<span class="run">erm</span>') == section.count('<span class="run">rrr</span>') == 1
        tokens = spans(section)
        masked = [text for classes, _, text in tokens if " m" in classes]
        decoys = [text for _, _, text in tokens if text.startswith("decoy")]
        assert len(masked) == 2 and set(masked) == set(decoys) and len(decoys) == 2  # in each run's row
        assert "label <b>" in section and "predicts" in section and "p = " in section
    # the page refuses to be a PNG for text, and to overwrite
    assert main(["explain", str(runs[0]), "--out", str(tmp_path / "x.png")]) == 2
    assert ".html" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    # other data options: each run's own data is rebuilt to check that its vocabulary is the one shown
    assert main([*argv, "--overwrite", "--data-option", "val=decorrelated", "--split", "val"]) == 0
    assert "val documents" in capsys.readouterr().out


class KeyBody(nn.Module):
    """logits = (3 * sum_t relu(e_t[0]), 0): only the token whose embedding has e[0] > 0 counts."""

    def forward(self, x):
        z = (F.relu(embeddings(x)[..., 0]) * token_flags(x)).sum(1)
        return torch.stack([3 * z, torch.zeros_like(z)], 1)


def key_model(vocab_size: int, key: int) -> TextClassifier:
    model = TextClassifier(vocab_size, 2, KeyBody())
    with torch.no_grad():
        w = torch.full((vocab_size, 2), -1.0)
        w[key] = torch.tensor([1.0, 0.5])
        model.embedding.weight.copy_(w)
    return model


def dataset(words: list[list[str]], masked: list[list[int]]):
    vocab = Vocabulary(sorted({w for doc in words for w in doc}))
    length = max(map(len, words))
    ids = torch.tensor([vocab.encode(doc) + [0] * (length - len(doc)) for doc in words])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, positions in enumerate(masked):
        mask[i, positions] = True
    return TextDataset(ids, torch.zeros(len(words), dtype=torch.long), vocab, mask=mask, words=words,
                       num_classes=2, class_names=["yes", "no"])


def test_the_token_a_model_reads_is_its_most_intense_span_and_words_are_escaped():
    evil = '<script>alert("x")</script>'
    data = dataset([["the", "cat", evil, "sat", "key", "on", "mat"]], [[2]])
    model = key_model(len(data.vocab), data.vocab.index["key"])
    index = torch.tensor([0])
    html = text_page(data, index, compute_rows([TextRun("keyreader", model, "erm, hand-built")], data, index,
                                               ["gradient", "ig"]))
    assert evil not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<script" not in html
    tokens = spans(html)
    assert len(tokens) == 2 * 7  # two rows (gradient, integrated gradients), every token once
    for row in (tokens[:7], tokens[7:]):
        assert max(row, key=lambda t: t[1])[2] == "key" and max(t[1] for t in row) == pytest.approx(1.0, abs=0.01)
        assert all(t[1] == 0 for t in row if t[2] != "key")  # nothing else read: no colour
        assert [t[2] for t in row if " m" in t[0]] == [evil.replace("<", "&lt;").replace(">", "&gt;")
                                                      .replace('"', "&quot;")]
    assert "truncated" not in html


def test_long_documents_are_cut_around_the_salient_and_masked_tokens():
    s = torch.zeros(200)
    s[100] = 1.0
    assert shown_windows(200, [s], [10], context=15, top=1) == [(0, 26), (85, 116)]
    assert shown_windows(50, [s], [10], context=15, top=1) == [(0, 50)]  # short: whole
    words = [f"w{i}" for i in range(FULL + 100)]
    words[150] = "key"
    data = dataset([words], [[20]])
    model = key_model(len(data.vocab), data.vocab.index["key"])
    index = torch.tensor([0])
    html = text_page(data, index, compute_rows([TextRun("keyreader", model)], data, index, ["gradient"]))
    # the key's window, and around the masked token w20 and the next most salient tokens (all tied at 0: w0, w1)
    shown = [t[2] for t in spans(html)]
    assert shown == words[0:36] + words[135:166]
    assert "(showing 67)" in html and html.count('<span class="gap">…</span>') == 2
    assert "truncated" in html and "±15 tokens" in html
