"""Named designs from the literature as tiny functions over ``build_model``.

Each sets the fields that define the design; any ``ArchConfig`` field passed by keyword
overrides them. Widths stay CPU-small by default (stem_width 16, width 32). ``ARCH`` holds
each preset's fields as plain data, so a study's ``[arch]`` can name the same design.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nas_dil.models.net import DilatedSegNet, build_model
from nas_dil.schedule.netcost import DEFAULT_CONTEXT_RATES

__all__ = [
    "ARCH",
    "PRESETS",
    "context_module",
    "context_module_vgg16",
    "deeplab_multigrid",
    "hdc_sawtooth",
    "yu_koltun_front_end",
]


# Yu & Koltun's context module on the real VGG-16 front end (their Table 3 net): torchvision's
# VGG-16 with pool4 and pool5 removed (output stride 8), conv5 at dilation 2 (the layer-table
# rule: a removed stride becomes the dilation of what follows); the stack's one 3×3 layer at
# rate 4 plays fc6 (theirs is 7×7 at 4); classifier, then the context module at 1,1,2,4,8,16,1.
# They trained the context module on the frozen front end's features: freezing is a [trial]
# setting, not an architecture field. weights: "imagenet" for their starting point.
YU_KOLTUN_VGG16: dict[str, Any] = {"backbone": "vgg16", "output_stride": 8, "target": "head",
                                   "context": True,
                                   "context_rates": list(DEFAULT_CONTEXT_RATES)}

# the fields each preset sets (its schedule aside): what a study's [arch] writes for it
ARCH: dict[str, dict[str, Any]] = {
    "yu_koltun_front_end": {"output_stride": 8, "backbone_stride": 32},
    "context_module": {"output_stride": 8, "backbone_stride": 32, "context": True,
                       "context_rates": list(DEFAULT_CONTEXT_RATES)},
    "context_module_vgg16": YU_KOLTUN_VGG16,
    "deeplab_multigrid": {"output_stride": 16},
    "hdc_sawtooth": {"output_stride": 8},
}


def _build(schedule: Any, defaults: dict[str, Any], arch: dict[str, Any]) -> DilatedSegNet:
    return build_model(schedule, **{**defaults, **arch})


def yu_koltun_front_end(schedule: Any = (4,), **arch: Any) -> DilatedSegNet:
    """Yu & Koltun's front end: five stages, the last two dilated 2 and 4, output stride 8.

    The stack plays fc6's part (the paper's fc6 is a 7×7 conv at dilation 4; here 3×3 at 4).
    """
    return _build(schedule, ARCH["yu_koltun_front_end"], arch)


def context_module(schedule: Any = (4,), **arch: Any) -> DilatedSegNet:
    """The front end plus the identity-initialised context module, rates 1,1,2,4,8,16,1."""
    return _build(schedule, ARCH["context_module"], arch)


def context_module_vgg16(schedule: Any = (4,), **arch: Any) -> DilatedSegNet:
    """Yu & Koltun's context module on a VGG-16 front end (``YU_KOLTUN_VGG16``; torchvision
    needed). ``weights="imagenet"`` (or a state_dict path) for a pretrained front end."""
    return _build(schedule, ARCH["context_module_vgg16"], arch)


def deeplab_multigrid(base_rate: int = 2, **arch: Any) -> DilatedSegNet:
    """DeepLab v3's multi-grid last block: rates (1, 2, 4) × base_rate at output stride 16."""
    return _build([m * base_rate for m in (1, 2, 4)], ARCH["deeplab_multigrid"], arch)


def hdc_sawtooth(**arch: Any) -> DilatedSegNet:
    """HDC (Wang et al. 2018): two sawtooth groups 1, 2, 5, gridding-free, at output stride 8."""
    return _build((1, 2, 5, 1, 2, 5), ARCH["hdc_sawtooth"], arch)


PRESETS: dict[str, Callable[..., DilatedSegNet]] = {
    "yu_koltun_front_end": yu_koltun_front_end,
    "context_module": context_module,
    "context_module_vgg16": context_module_vgg16,
    "deeplab_multigrid": deeplab_multigrid,
    "hdc_sawtooth": hdc_sawtooth,
}
