"""Backbones registered from Python (``register_backbone``): the names and what they hold.

Torch-free: the entry keeps the user's build function, the layer table extracted from the
module it builds (``backbones.register_backbone`` traces it once) and the blocks the rates
set. The registry lives in the process that registered the backbone (see docs/backbones.md:
a study on it runs its trials where that registration has run too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas_dil.schedule.layertable import LayerTable

__all__ = ["UserBackbone", "add", "get", "registered", "remove", "set_table_source",
           "table_source"]


@dataclass(frozen=True)
class UserBackbone:
    """A user's backbone: ``build()`` returns a fresh ``nn.Module`` (image → features)."""

    name: str
    build: Callable[[], Any]  # () -> nn.Module, the trunk as built (no dilation yet)
    table: LayerTable  # its layer table at its own output stride
    rate_blocks: tuple[str, ...]  # module paths, one rate each: the K>1 convs under each


_REGISTRY: dict[str, UserBackbone] = {}


def registered() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def add(entry: UserBackbone) -> None:
    _REGISTRY[entry.name] = entry


def get(name: str) -> UserBackbone | None:
    return _REGISTRY.get(name)


def remove(name: str) -> None:
    """Forget a registration (tests; a notebook re-registering under another name)."""
    _REGISTRY.pop(name, None)


_SOURCE: list[Callable[[str], LayerTable]] = []


def set_table_source(extract: Callable[[str], LayerTable]) -> None:
    """How a timm model without a stored table is tabulated (``backbones`` sets it on import:
    the extraction needs torch and timm, which this torch-free side cannot import)."""
    _SOURCE[:] = [extract]


def table_source() -> Callable[[str], LayerTable] | None:
    return _SOURCE[0] if _SOURCE else None
