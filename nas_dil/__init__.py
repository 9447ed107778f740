"""nas-dil: search per-layer dilation schedules for segmentation nets.

Importing the package is cheap and torch-free; torch-backed parts load on first use.
"""

from __future__ import annotations

from nas_dil._lazy import lazy_getattr
from nas_dil.schedule import Schedule, ScheduleError, analyze

__version__ = "0.1.0"

# name -> module that defines it; imported lazily so `import nas_dil` never pulls in torch
_LAZY = {
    "apply_schedule": "nas_dil.models.backbones",  # needs torchvision (nas-dil[vision])
    "build_model": "nas_dil.models",
    "load_space": "nas_dil.spaces",
    "load_exported": "nas_dil.export",
    "trials_dataframe": "nas_dil.report",
    # the Python API (docs/python_api.md)
    "FrontCandidate": "nas_dil.api",
    "Results": "nas_dil.api",
    "Study": "nas_dil.api",
    "open_results": "nas_dil.api",
    "run_study": "nas_dil.api",
}

__all__ = ["Schedule", "ScheduleError", "__version__", "analyze", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
