"""Export the best schedule of a search: `export_trial(study, pick, out)` writes schedule.json
(+ weights, + ONNX); `load_exported(out)` rebuilds the exact net. Names load on first use.

The knee rule (``--pick knee``): each objective normalised to [0, 1] over the Pareto front
(1 = best), the point closest to the utopia point (1, …, 1); see ``nas_dil.pareto``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_dil._lazy import lazy_getattr

if TYPE_CHECKING:
    from nas_dil.export.bundle import (
        ExportError,
        ExportResult,
        export_trial,
        load_exported,
        read_export,
        write_bundle,
    )
    from nas_dil.export.pick import Pick, PickError, parse_pick, select_trial

_LAZY = {
    "ExportError": "nas_dil.export.bundle",
    "ExportResult": "nas_dil.export.bundle",
    "export_trial": "nas_dil.export.bundle",
    "load_exported": "nas_dil.export.bundle",
    "read_export": "nas_dil.export.bundle",
    "write_bundle": "nas_dil.export.bundle",
    "Pick": "nas_dil.export.pick",
    "PickError": "nas_dil.export.pick",
    "parse_pick": "nas_dil.export.pick",
    "select_trial": "nas_dil.export.pick",
}

__all__ = [
    "ExportError",
    "ExportResult",
    "Pick",
    "PickError",
    "export_trial",
    "load_exported",
    "parse_pick",
    "read_export",
    "select_trial",
    "write_bundle",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
