"""The torch net: ``build_model(schedule, **arch)`` and friends.

``ArchConfig`` is torch-free and imported eagerly; everything else loads torch on first use,
so search spaces can validate architectures without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_dil._lazy import lazy_getattr
from nas_dil.models.config import ACTS, BACKBONES, OUTPUT_STRIDES, TARGETS, ArchConfig, ArchError

if TYPE_CHECKING:
    from nas_dil.models.backbones import (
        Backbone,
        BackboneSegNet,
        apply_schedule,
        layer_table,
        register_backbone,
    )
    from nas_dil.models.net import (
        ContextModule,
        ConvNormAct,
        DilatedSegNet,
        DilatedStack,
        Head,
        build_model,
        count_params,
        describe_model,
        model_config,
        model_from_config,
    )
    from nas_dil.models.presets import (
        PRESETS,
        context_module,
        context_module_vgg16,
        deeplab_multigrid,
        hdc_sawtooth,
        yu_koltun_front_end,
    )

_NET = ("ContextModule", "ConvNormAct", "DilatedSegNet", "DilatedStack", "Head", "build_model",
        "count_params", "describe_model", "model_config", "model_from_config")
_PRESETS = ("PRESETS", "context_module", "context_module_vgg16", "deeplab_multigrid",
            "hdc_sawtooth", "yu_koltun_front_end")
_BACKBONES = ("Backbone", "BackboneSegNet", "apply_schedule", "layer_table", "register_backbone")
_LAZY = {**dict.fromkeys(_NET, "nas_dil.models.net"),
         **dict.fromkeys(_BACKBONES, "nas_dil.models.backbones"),
         **dict.fromkeys(_PRESETS, "nas_dil.models.presets")}

__all__ = [
    "ACTS",
    "BACKBONES",
    "OUTPUT_STRIDES",
    "PRESETS",
    "TARGETS",
    "ArchConfig",
    "ArchError",
    "Backbone",
    "BackboneSegNet",
    "ContextModule",
    "ConvNormAct",
    "DilatedSegNet",
    "DilatedStack",
    "Head",
    "apply_schedule",
    "build_model",
    "context_module",
    "context_module_vgg16",
    "count_params",
    "deeplab_multigrid",
    "describe_model",
    "hdc_sawtooth",
    "layer_table",
    "model_config",
    "model_from_config",
    "register_backbone",
    "yu_koltun_front_end",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
