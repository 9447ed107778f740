"""Find shipped data files (search spaces, studies) by name, installed or from a checkout."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from nas_dil.errors import UserError

__all__ = ["load_toml", "resolve", "shipped_names"]

_KINDS = {"search_spaces": "nas_dil.search_spaces", "studies": "nas_dil.studies"}
_REPO = Path(__file__).resolve().parents[1]


def _folder(kind: str) -> Path | None:
    try:
        path = Path(str(resources.files(_KINDS[kind])))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    repo = _REPO / kind  # running from a checkout without installing
    return repo if repo.is_dir() else None


def shipped_names(kind: str) -> list[str]:
    folder = _folder(kind)
    return sorted(p.stem for p in folder.glob("*.toml")) if folder else []


def resolve(kind: str, name_or_path: str | Path) -> Path | None:
    """A path that exists as given wins; else a shipped name (``hdc`` or ``hdc.toml``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    if path.parent == Path(".") and path.suffix in ("", ".toml"):
        folder = _folder(kind)
        if folder is not None:
            candidate = folder / f"{path.stem}.toml"
            if candidate.is_file():
                return candidate
    return None


def load_toml(kind: str, name_or_path: str | Path, error: type[UserError],
              noun: str) -> tuple[dict[str, Any], Path]:
    """Read a shipped or given TOML file; every failure is one ``error`` line naming it."""
    path = resolve(kind, name_or_path)
    if path is None:
        shipped = ", ".join(shipped_names(kind)) or "none"
        raise error(f"{name_or_path}: no such file, and not a shipped {noun} (shipped: {shipped})")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text: {e}") from None
    try:
        return tomllib.loads(text), path
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: invalid TOML: {e}") from None
