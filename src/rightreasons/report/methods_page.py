"""Generate docs/methods.md, every method in one place, from the method registry: each method's formula
and paper (its module and class docstrings) and a table of its hyperparameters with their current
defaults, allowed values and bounds. tests/test_methods_doc.py fails when the file is out of date.

    python -m rightreasons.report.methods_page              print the document
    python -m rightreasons.report.methods_page --write      rewrite docs/methods.md (from the repository root)
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from ..methods import METHODS
from ..methods.base import param_text

DOC_PATH = Path("docs/methods.md")

HEADER = """# Methods

Every registered training method in one place: what it optimises (formula), where it comes from, and
its hyperparameters with their defaults. Pass hyperparameters as `--param KEY=VALUE` on the command
line or `create_method(name, KEY=VALUE)` in Python. Conventions: the mask m is 1 on what the model must
ignore; inputs are in [0, 1] for the built-in datasets; CE is the cross-entropy averaged over the batch.
A `clip_min` / `clip_max` of `none` means the training data's value range (`input_range`: [0, 1] for
images, the observed range for tables and normalised folders); `-inf` / `inf` means no clamp.

This file is generated from the code by `python -m rightreasons.report.methods_page --write`
(tests/test_methods_doc.py fails when it is out of date).
"""


def _fmt(value) -> str:
    return repr(value) if isinstance(value, str) else param_text(value)


def parameter_rows(cls) -> list[str]:
    """The markdown rows of ``cls``'s hyperparameter table (one per entry of ``defaults``)."""
    rows = []
    for key, default in cls.defaults.items():
        allowed = " / ".join(_fmt(c) for c in cls.choices.get(key, ()))
        low, high = cls.bounds.get(key, (None, None))
        if not allowed and (low is not None or high is not None):
            allowed = f"{'(-inf' if low is None else '[' + _fmt(low)}, {'inf)' if high is None else _fmt(high) + ']'}"
        kind = "float" if default is None else type(default).__name__
        if default is None or key in cls.optional:
            kind += " or none"
        rows.append(f"| `{key}` | {kind} | `{_fmt(default)}` | {allowed} |")
    return rows


def _docstring(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def method_section(name: str) -> str:
    cls = METHODS.get(name)
    module = sys.modules[cls.__module__]
    flags = [f"reads masks: {'yes' if cls.uses_mask else 'no'}"]
    if cls.needs_split_model:
        flags.append("needs a split model")
    if not cls.composable:
        flags.append(f"not combinable ({cls.not_composable})")
    if cls.standalone:
        flags.append("standalone (tested on its own, see its docstring)")
    lines = [f"## `{name}`", "", f"*{_docstring(cls).splitlines()[0] if cls.__doc__ else cls.__name__}*",
             "", f"Paper: {cls.paper or 'see below'}. Module `{cls.__module__}`; {'; '.join(flags)}.", "",
             "```text", _docstring(module), "```", ""]
    if cls.defaults:
        lines += ["| parameter | type | default | allowed |", "|---|---|---|---|", *parameter_rows(cls), ""]
    else:
        lines += ["No hyperparameters.", ""]
    return "\n".join(lines)


def extra_sections() -> str:
    from .. import find_another
    from ..models import split as models_split

    return "\n".join([
        "## Not a registered method: `find-another` (find-another-explanation)", "",
        "A sequence of trainings, not one loss: `rightreasons find-another --data toy-colors --data-option "
        "annotate=none --models 3 --out DIR`, or `rightreasons.find_another.find_another_explanation(config, "
        "data, n_models=3, threshold=0.67)`. Each model is trained with the config's method (default `rrr`, "
        "with its hyperparameters above).", "",
        "```text", _docstring(find_another), "```", "",
        "## The split-model protocol (for `feature_kl`)", "",
        "```text", _docstring(models_split), "```", ""])


def generate() -> str:
    overview = ["| method | paper | reads masks |", "|---|---|---|"]
    overview += [f"| [`{n}`](#{n.replace('+', '')}) | {METHODS.get(n).paper or 'see section'} | "
                 f"{'yes' if METHODS.get(n).uses_mask else 'no'} |" for n in METHODS.names()]
    body = [method_section(n) for n in METHODS.names()]
    return "\n".join([HEADER, *overview, "", *body, extra_sections()]).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = generate()
    if "--write" in argv:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {DOC_PATH} ({len(METHODS.names())} methods)")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
