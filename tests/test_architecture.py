"""The package's import graph: no cycles, and imports run one way through the layers
(ops -> data, methods, metrics -> train -> bench, report, audit -> cli).

The graph is read from the source with ``ast`` (every import, also those inside functions), so a
cycle hidden in a lazy import counts too. ``from pkg import name`` is an edge to ``pkg.name`` when that
is a module, else to ``pkg`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import rightreasons

ROOT = Path(rightreasons.__file__).parent
PACKAGE = "rightreasons"

#: layer of each top-level part of the package; a module may import only from its own layer or lower ones
LAYERS = {
    "errors": 0, "registry": 0, "files": 0, "batch": 0, "console": 0, "devices": 0, "precision": 0, "tokens": 0,
    "layers": 0,
    "ops": 1, "models": 1,
    "data": 2, "methods": 2, "metrics": 2,
    "train": 3,
    "audit": 4, "find_another": 4, "mask_proposals": 4, "annotate": 4, "sweep": 4, "bench": 4, "demo": 4, "guided": 4,
    "report": 5,
    "cli": 6, "__main__": 6,
}
#: old import paths kept as thin re-exports for users' code; they sit above what they re-export
SHIMS = {"models_split": 1, "method_docs": 5, "audit_cli": 6}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                while target and target not in known:  # `import a.b.c` of a function's module: its module
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE + ".") and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the top-level package re-exports the public API
    return {**LAYERS, **SHIMS}.get(parts[1])


def test_the_checker_finds_a_planted_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere():
    assert find_cycles(import_graph()) == []


def test_every_part_of_the_package_has_a_layer():
    unplaced = sorted({m.split(".")[1] for m in modules() if "." in m} - set(LAYERS) - set(SHIMS))
    assert unplaced == []


def test_imports_run_one_way_through_the_layers():
    upward = []
    for source, targets in import_graph().items():
        for target in targets:
            a, b = layer(source), layer(target)
            if a is not None and b is not None and b > a:
                upward.append(f"{source} -> {target}")
    assert sorted(upward) == []
