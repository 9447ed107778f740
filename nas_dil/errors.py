"""The one base class for errors caused by what a user gave us (never by a bug).

The CLI turns these into one line and exit code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["UserError", "first_line", "writable_folder"]


class UserError(Exception):
    """Bad input: a schedule, a space or study file, a data folder, a storage URL…"""

    # (field, problem) when one config field is at fault (``nas_dil._check.check_fields``):
    # a file reader re-raises it as "<file>: <table>.<field>: <problem>"
    field: tuple[str, str] | None = None


def first_line(e: BaseException | str, limit: int = 300) -> str:
    """The first line of an error's text (its type name when it has none), cut to ``limit``:
    what a one-line message quotes from a library's error."""
    text = str(e).strip()
    name = type(e).__name__ if isinstance(e, BaseException) else "error"
    return (text.splitlines() or [name])[0][:limit]


def writable_folder(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a folder files can be written in (it may not exist yet: then the nearest
    existing folder above it must take new files), else one `UserError` line. Probes with a
    temporary file that is removed at once; creates nothing else."""
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {path}: exists and is not a folder")
    base = p
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UserError(f"{what} {path}: {base} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write in {base} ({e.strerror or e})") from None
    return p
