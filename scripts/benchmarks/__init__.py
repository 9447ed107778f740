"""nas-dil benchmarks, one module per benchmark; `scripts/bench.py` runs them.

Each module's docstring says what it measures and against which baseline (measured in the same
run: these machines are noisy, absolute times alone mean little); it defines
``run(quick: bool) -> dict`` (the figures, JSON-able) and ``show(result) -> None`` (a few
printed lines). A new module here is a new benchmark (`names` finds it).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__all__ = ["load", "names"]


def names() -> list[str]:
    """Every benchmark: the modules of this package whose names do not start with "_"."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")
