"""The one base class for errors caused by what a user gave us (never by a bug).

The CLI turns these into one line and exit code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input: a schedule, a space or study file, a data folder, a storage URL…"""
