"""docs/methods.md documents every registered method with its current hyperparameter defaults (so the
document cannot drift from the code). Regenerate it with `python -m rightreasons.method_docs --write`."""

import re
from pathlib import Path

from rightreasons.method_docs import generate, method_section, parameter_rows
from rightreasons.methods import METHODS

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
HINT = "docs/methods.md is out of date: run `python -m rightreasons.method_docs --write` from the repository root"


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    out = {}
    for part in parts:
        title, _, body = part.partition("\n")
        match = re.fullmatch(r"`([^`]+)`", title.strip())
        if match:
            out[match.group(1)] = body
    return out


def test_every_registered_method_is_documented_with_its_current_defaults():
    documented = sections(DOC.read_text(encoding="utf-8"))
    assert sorted(documented) == METHODS.names(), HINT
    for name in METHODS.names():
        body = documented[name]
        for row in parameter_rows(METHODS.get(name)):
            assert row in body, f"{name}: missing or stale parameter row {row!r}. {HINT}"
        table = [line for line in body.splitlines() if line.startswith("| `")]
        assert len(table) == len(METHODS.get(name).defaults), f"{name}: parameter table has extra rows. {HINT}"
        assert ("No hyperparameters." in body) == (not METHODS.get(name).defaults)


def test_sections_carry_formula_and_paper():
    for name in METHODS.names():
        section = method_section(name)
        assert "Paper:" in section and "```text" in section and len(section.splitlines()) > 8, name
    for name in ("group_dro", "feature_kl"):
        assert "loss" in method_section(name) and "Parameters:" in method_section(name)
    assert "find-another" in generate() and "split-model protocol" in generate()
