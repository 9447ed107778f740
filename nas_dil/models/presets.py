"""Named designs from the literature as tiny functions over ``build_model``.

Each sets the fields that define the design; any ``ArchConfig`` field passed by keyword
overrides them. Widths stay CPU-small by default (stem_width 16, width 32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nas_dil.models.net import DilatedSegNet, build_model
from nas_dil.schedule.netcost import DEFAULT_CONTEXT_RATES

__all__ = [
    "PRESETS",
    "context_module",
    "deeplab_multigrid",
    "hdc_sawtooth",
    "yu_koltun_front_end",
]


def _build(schedule: Any, defaults: dict[str, Any], arch: dict[str, Any]) -> DilatedSegNet:
    return build_model(schedule, **{**defaults, **arch})


def yu_koltun_front_end(schedule: Any = (4,), **arch: Any) -> DilatedSegNet:
    """Yu & Koltun's front end: five stages, the last two dilated 2 and 4, output stride 8.

    The stack plays fc6's part (the paper's fc6 is a 7×7 conv at dilation 4; here 3×3 at 4).
    """
    return _build(schedule, {"output_stride": 8, "backbone_stride": 32}, arch)


def context_module(schedule: Any = (4,), **arch: Any) -> DilatedSegNet:
    """The front end plus the identity-initialised context module, rates 1,1,2,4,8,16,1."""
    defaults = {"output_stride": 8, "backbone_stride": 32, "context": True,
                "context_rates": DEFAULT_CONTEXT_RATES}
    return _build(schedule, defaults, arch)


def deeplab_multigrid(base_rate: int = 2, **arch: Any) -> DilatedSegNet:
    """DeepLab v3's multi-grid last block: rates (1, 2, 4) × base_rate at output stride 16."""
    return _build([m * base_rate for m in (1, 2, 4)], {"output_stride": 16}, arch)


def hdc_sawtooth(**arch: Any) -> DilatedSegNet:
    """HDC (Wang et al. 2018): two sawtooth groups 1, 2, 5, gridding-free, at output stride 8."""
    return _build((1, 2, 5, 1, 2, 5), {"output_stride": 8}, arch)


PRESETS: dict[str, Callable[..., DilatedSegNet]] = {
    "yu_koltun_front_end": yu_koltun_front_end,
    "context_module": context_module,
    "deeplab_multigrid": deeplab_multigrid,
    "hdc_sawtooth": hdc_sawtooth,
}
