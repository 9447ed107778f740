"""Data flows one way: schedule → spaces → models → data → train → search → report/export → cli.
A module never imports one to its right (checked on the source, imports anywhere in a file)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "nas_dil"
# rank of each top-level part of the package; shared helpers sit below everything
RANK = {
    "errors": 0, "resources": 0, "_lazy": 0, "pareto": 0, "schedule": 1, "spaces": 2,
    "models": 3, "data": 4, "train": 5, "search": 6, "report": 7, "export": 7, "cli": 8,
    "__main__": 9, "__init__": 9,
}


def _part(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n.split(".")[1] for n in names if n.startswith("nas_dil.")}


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_import_to_the_right(path: Path) -> None:
    me = _part(path)
    assert me in RANK, f"{me} has no rank: add it to RANK"
    bad = [m for m in _imports(path) if RANK.get(m, 99) > RANK[me]]
    assert not bad, f"{path.relative_to(PKG)} ({me}) imports {bad}, which come later"
