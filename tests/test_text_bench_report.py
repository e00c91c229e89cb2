"""The bench report on text data shows the documents' tokens coloured by each method's saliency."""

from rightreasons.cli import main


def _corpus(root):
    for name in ("business", "sport", "tech"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            (root / name / f"{i + 1:03d}.txt").write_text(f"Story {i}\n\nThe {name}word{i % 3} <b>and</b> text.\n")
    return root


def test_bench_on_text_writes_a_token_page_and_frames_it(tmp_path):
    source = _corpus(tmp_path / "bbc")
    out = tmp_path / "bench"
    assert main(["bench", "--data", "decoy-bbc", "--methods", "erm,rrr", "--seeds", "1", "--epochs", "1",
                 "--data-option", f"source={source}", "--data-option", "min_count=1", "--model", "text-bag",
                 "--out", str(out), "--threads", "1", "--quiet"]) == 0
    page = (out / "saliency" / "decoy-bbc-tokens.html").read_text()
    report = (out / "report.html").read_text()
    assert 'src="saliency/decoy-bbc-tokens.html"' in report and "No saliency grid" not in report
    documents = page.count("<section>")
    assert documents == min(8, 6) and page.count('class="row"') == 2 * documents  # two methods per document
    assert "&lt;" in page and "&gt;" in page and "<b>and" not in page  # marks from the data are escaped
    assert page.count('class="t m"') >= 2 * documents  # each row outlines its document's decoy token
