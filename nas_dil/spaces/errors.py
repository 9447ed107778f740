"""The one exception the spaces package raises: a bad space file, option or candidate."""

from __future__ import annotations

from nas_dil.errors import UserError

__all__ = ["SpaceError"]


class SpaceError(UserError, ValueError):
    """One line: ``"<file>: <dotted.key>: <problem>"`` (or ``"<file>: <problem>"``)."""

    def __init__(self, message: str) -> None:
        # keep messages on one line even when they wrap a tomllib or numpy error text
        super().__init__(" ".join(str(message).split()))


def space_error(source: object, key: str | None, problem: str) -> SpaceError:
    """Build the house-style message: the file, then the dotted key, then the problem."""
    return SpaceError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
