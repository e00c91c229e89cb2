"""The command line as a thin shell: one-line errors for what used to end in a traceback, the training
flags declared once, no command importing another."""

import ast
from pathlib import Path

import numpy as np

import rightreasons
from rightreasons.cli import main

CLI = Path(rightreasons.__file__).parent / "cli"


def _table(path: Path) -> Path:
    rng = np.random.default_rng(0)
    a, b = rng.random(120), rng.random(120)
    y = (a > 0.5).astype(int)
    lines = ["a,b,c,label"] + [f"{p},{q},{t},{t}" for p, q, t in zip(a, b, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_explain_on_a_table_run_is_one_line_exit_2(tmp_path, capsys):
    table = _table(tmp_path / "t.csv")
    run = tmp_path / "run"
    assert main(["train", "--data", f"csv:{table}", "--data-option", "mask_columns=c", "--method", "rrr",
                 "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["explain", str(run), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "explain draws images" in err and "(3,)" in err
    assert not (tmp_path / "x.png").exists()


def test_train_help_shows_the_default_method(capsys):
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "default: rrr" in out and "ibp_ex+rrr" in out  # the choices come from the method registry


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add(node.module or "")
    return names


def test_no_command_imports_another_and_the_training_flags_are_declared_once():
    commands = [p for p in CLI.glob("*.py") if p.name not in ("__init__.py", "options.py", "common.py")]
    assert len(commands) >= 10
    for path in commands:
        assert _imports(path) <= {"options", "common"}, path.name
    declaring = [p.name for p in CLI.rglob("*.py")
                 if '"--batch-size"' in p.read_text() or "'--batch-size'" in p.read_text()]
    assert declaring == ["options.py"]
