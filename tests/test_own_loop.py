"""The README's plain-PyTorch-loop example, run as written: RRR learns to ignore the marked shortcut;
the same loop with ERM does not (so this test can fail)."""

import contextlib
import io
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text.split("## Your own training loop", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run(code: str) -> tuple[float, float]:
    out = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    finally:
        torch.set_num_threads(threads)
    match = re.search(r"accuracy ([\d.]+); predictions unchanged when the shortcut is flipped: (\d+)%", out.getvalue())
    assert match, out.getvalue()
    return float(match.group(1)), int(match.group(2)) / 100


def test_readme_loop_with_rrr_ignores_the_shortcut():
    code = readme_example()
    assert 'create_method("rrr", lam=10.0)' in code and "out.loss.backward()" in code
    accuracy, unchanged = run(code)
    assert unchanged >= 0.9 and accuracy >= 0.7


def test_same_loop_with_erm_uses_the_shortcut():
    accuracy, unchanged = run(readme_example().replace('"rrr", lam=10.0', '"erm"'))
    assert unchanged <= 0.2 and accuracy >= 0.95
