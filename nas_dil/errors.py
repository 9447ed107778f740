"""The one base class for errors caused by what a user gave us (never by a bug).

The CLI turns these into one line and exit code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

__all__ = ["UserError", "first_line"]


class UserError(Exception):
    """Bad input: a schedule, a space or study file, a data folder, a storage URL…"""


def first_line(e: BaseException | str, limit: int = 300) -> str:
    """The first line of an error's text (its type name when it has none), cut to ``limit``:
    what a one-line message quotes from a library's error."""
    text = str(e).strip()
    name = type(e).__name__ if isinstance(e, BaseException) else "error"
    return (text.splitlines() or [name])[0][:limit]
