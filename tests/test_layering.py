"""Data flows one way: schedule → spaces → models → data → train → search → report/export → cli.
A module never imports one to its right (checked on the source, imports anywhere in a file),
and no module of nas_dil imports itself back through others (no import cycle, function-local
imports included: a cycle hidden in a function still means two modules that need each other)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "nas_dil"
# rank of each top-level part of the package; shared helpers sit below everything
RANK = {
    "errors": 0, "resources": 0, "_lazy": 0, "_toml": 0, "_check": 0, "_proc": 0, "pareto": 0,
    "schedule": 1,
    "spaces": 2,
    "models": 3, "data": 4, "train": 5, "search": 6, "report": 7, "export": 7, "api": 8, "cli": 8,
    "__main__": 9, "__init__": 9,
}


def _part(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _module(path: Path) -> str:
    """Dotted name of a source file: nas_dil/search/__init__.py -> nas_dil.search."""
    parts = ["nas_dil", *path.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: module level, in functions, in classes; not
    those under ``if TYPE_CHECKING:`` (never executed)."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PKG / rel).with_suffix(".py").is_file() or (PKG / rel / "__init__.py").is_file()


def _targets(path: Path) -> set[str]:
    """nas_dil modules ``path`` imports (a name imported from a package that is itself a
    submodule counts as that submodule)."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
            continue
        base = node.module or ""
        if node.level:
            up = package.split(".")
            up = up[: len(up) - (node.level - 1)]
            base = ".".join([*up, base] if base else up)
        found.add(base)
        found.update(f"{base}.{a.name}" for a in node.names if _exists(f"{base}.{a.name}"))
    return {m for m in found if m == "nas_dil" or m.startswith("nas_dil.")} - {me}


def _imports(path: Path) -> set[str]:
    return {m.split(".")[1] for m in _targets(path) if "." in m}


SOURCES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_import_to_the_right(path: Path) -> None:
    me = _part(path)
    assert me in RANK, f"{me} has no rank: add it to RANK"
    bad = [m for m in _imports(path) if RANK.get(m, 99) > RANK[me]]
    assert not bad, f"{path.relative_to(PKG)} ({me}) imports {bad}, which come later"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle() -> None:
    graph = {_module(p): _targets(p) for p in SOURCES}
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_search_loop_imports_nothing_from_train_or_data() -> None:
    """The driver is the loop: trials train in workers, caches are prepared by preflight, so
    nas_dil/search/driver.py imports nothing from nas_dil.train or nas_dil.data."""
    path = PKG / "search" / "driver.py"
    bad = sorted(m for m in _targets(path) if m.split(".")[1:2] in (["train"], ["data"]))
    assert not bad, f"search/driver.py imports {bad}"


def test_importing_the_search_loop_does_not_import_torch() -> None:
    """``import nas_dil.search.driver`` in a fresh interpreter leaves torch unloaded (passes
    once the feature caches are prepared outside the driver: issue 20)."""
    import os
    import subprocess
    import sys

    code = "import sys, nas_dil.search.driver; assert 'torch' not in sys.modules, 'torch'"
    env = {**os.environ, "PYTHONPATH": str(PKG.parent)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
