"""Find shipped data files (search spaces, studies, benchmark tables) by name, installed or
from a checkout."""

from __future__ import annotations

import subprocess
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from nas_dil.errors import UserError

__all__ = ["load_toml", "resolve", "shipped_names", "source_commit"]

# kind -> (package it ships as, file suffix); each is a folder at the top of the repository
_KINDS = {"search_spaces": ("nas_dil.search_spaces", ".toml"),
          "studies": ("nas_dil.studies", ".toml"),
          "benchmarks": ("nas_dil.benchmarks", ".csv")}
_REPO = Path(__file__).resolve().parents[1]


def _folder(kind: str) -> Path | None:
    try:
        path = Path(str(resources.files(_KINDS[kind][0])))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    repo = _REPO / kind  # running from a checkout without installing
    return repo if repo.is_dir() else None


def shipped_names(kind: str) -> list[str]:
    folder = _folder(kind)
    return sorted(p.stem for p in folder.glob(f"*{_KINDS[kind][1]}")) if folder else []


def resolve(kind: str, name_or_path: str | Path) -> Path | None:
    """A path that exists as given wins; else a shipped name (``hdc`` or ``hdc.toml``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    suffix = _KINDS[kind][1]
    if path.parent == Path(".") and path.suffix in ("", suffix):
        folder = _folder(kind)
        if folder is not None:
            candidate = folder / f"{path.stem}{suffix}"
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


def source_commit() -> str | None:
    """The git commit of the nas-dil source when it runs from a git checkout (an installed
    wheel: None); a read-only git call that never fails (no git: None)."""
    if not (_REPO / ".git").exists():  # a folder, or a file in a git worktree
        return None
    try:
        r = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True,
                           text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = r.stdout.strip()
    return commit if r.returncode == 0 and len(commit) == 40 else None
