"""Find shipped data files (search spaces, studies) by name, installed or from a checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["resolve", "shipped_names"]

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
