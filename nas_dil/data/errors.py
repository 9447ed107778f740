"""The one exception the data package raises for bad data or a bad data config."""

from __future__ import annotations

from nas_dil.errors import UserError


class DataError(UserError, ValueError):
    """Bad input data: the message is one line naming the file/folder and the problem.

    A UserError, so the CLI prints it as one line (exit 2) rather than a traceback.
    """

    def __init__(self, message: str) -> None:
        # keep messages on one line even when they wrap an OS/PIL error text
        super().__init__(" ".join(str(message).split()))
