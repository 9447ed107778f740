"""Helpers for the space tests: build space tables and write them as TOML files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas_dil.spaces import Space, space_from_dict

SHIPPED = ("free", "gapfree", "hdc", "exponential", "multigrid")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def toml_text(d: dict[str, Any]) -> str:
    """A space table as TOML: top-level keys inline, ``rates`` as a [rates] table."""
    lines = [f"{k} = {_value(v)}" for k, v in d.items() if k != "rates"]
    if "rates" in d:
        rates = d["rates"]
        if isinstance(rates, dict):
            lines.append("[rates]")
            lines += [f"{k} = {_value(v)}" for k, v in rates.items()]
        else:
            lines.insert(0, f"rates = {_value(rates)}")
    return "\n".join(lines) + "\n"


def space_dict(rule: str, top: dict[str, Any] | None = None, **rates: Any) -> dict[str, Any]:
    """A minimal space table for ``rule``; ``top`` overrides (None removes a key)."""
    d: dict[str, Any] = {"name": f"t_{rule}", "kernel": [3], "output_stride": [8],
                         "width": [16]}
    if rule in ("free", "gapfree", "hdc"):
        d["depth"] = {"min": 2, "max": 3}
    d.update(top or {})
    d = {k: v for k, v in d.items() if v is not None}  # top={"depth": None} drops depth
    d["rates"] = {"rule": rule, **rates}
    return d


def make_space(rule: str, top: dict[str, Any] | None = None, **rates: Any) -> Space:
    return space_from_dict(space_dict(rule, top, **rates), f"<{rule}>")


def write(tmp_path: Path, d: dict[str, Any] | str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(d if isinstance(d, str) else toml_text(d), encoding="utf-8")
    return path
