"""The segmentation net: stem to the output stride, dilated stack, classifier (+ context), up.

One class, ``DilatedSegNet``, built from a ``Schedule`` and an ``ArchConfig``. Its shape plan
is ``nas_dil.schedule.netcost.stem_plan`` and its analytic cost is ``net_cost``; the tests
hold the two to ``FlopCounterMode`` and the parameter count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas_dil.models.config import ArchConfig, ArchError
from nas_dil.models.layers import ContextModule, ConvNormAct, DilatedStack, Head, SharedSmoothing
from nas_dil.schedule import (
    Schedule,
    ScheduleError,
    coverage,
    image_schedule,
    net_cost,
    net_crop_report,
    stem_plan,
)

__all__ = [
    "ContextModule",
    "ConvNormAct",
    "DilatedSegNet",
    "DilatedStack",
    "Head",
    "SharedSmoothing",
    "build_model",
    "count_params",
    "describe_model",
    "model_config",
    "model_from_config",
]


class DilatedSegNet(nn.Module):
    """Stem → dilated stack → head → bilinear up-sampling to the input size.

    ``forward_lowres`` returns the logits at the output stride (what ``rf_image`` describes).
    """

    def __init__(self, schedule: Schedule, arch: ArchConfig) -> None:
        super().__init__()
        self.schedule = schedule
        self.arch = arch
        a = arch
        stages = stem_plan(a.output_stride, a.backbone_stride, a.stem_width, a.width)
        c_ins = [a.in_channels] + [st.c_out for st in stages[:-1]]
        self.stem = nn.Sequential(*(
            ConvNormAct(c, st.c_out, 3, st.stride, st.dilation, a.norm, a.act, a.gn_groups)
            for c, st in zip(c_ins, stages, strict=True)
        ))
        self.stack = DilatedStack(schedule, a.width, a.norm, a.act, a.residual, a.gn_groups)
        self.head = Head(a.width, a.num_classes, a.context, a.context_rates, a.act)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stack(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.forward_lowres(x), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)

    def extra_repr(self) -> str:
        return f"schedule={self.schedule}, kernels={list(self.schedule.kernels)}"


def _arch(arch: ArchConfig | None, overrides: dict[str, Any]) -> ArchConfig:
    try:
        if arch is None:
            return ArchConfig.from_dict(overrides)
        return replace(arch, **overrides) if overrides else arch
    except TypeError as e:  # unknown keyword: one line naming the valid ones
        known = ", ".join(ArchConfig.__dataclass_fields__)
        raise ArchError(f"{e}; arch fields: {known}") from None


def build_model(schedule: Schedule | str | Sequence[int], *, kernel: int | None = None,
                arch: ArchConfig | None = None, **overrides: Any) -> DilatedSegNet:
    """``build_model("1,2,5", output_stride=8, width=32)`` → DilatedSegNet.

    ``kernel`` (default 3) sets the stack's kernel when ``schedule`` is a string or a list; a
    Schedule carries its own kernels. Architecture fields come from ``arch`` and/or keyword
    ``overrides`` (see ``ArchConfig``).
    """
    a = _arch(arch, overrides)
    if a.backbone != "stem":  # a torchvision trunk: rates may also set its blocks' kernels
        from nas_dil.models.backbones import BackboneSegNet  # needs torchvision

        return BackboneSegNet(schedule, a, kernel)  # type: ignore[return-value]
    if isinstance(schedule, Schedule):
        if kernel is not None and set(schedule.kernels) != {kernel}:
            raise ScheduleError(f"kernel={kernel} conflicts with kernels={list(schedule.kernels)}")
        s = schedule
    else:
        s = Schedule.coerce(schedule, kernel=3 if kernel is None else kernel)
    return DilatedSegNet(s, a)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_config(model: DilatedSegNet) -> dict[str, Any]:
    """What a trial stores to rebuild the net: plain JSON types only."""
    return {"schedule": model.schedule.to_dict(), "arch": model.arch.to_dict()}


def model_from_config(d: dict[str, Any]) -> DilatedSegNet:
    """Inverse of ``model_config`` (weights come separately, via ``load_state_dict``)."""
    missing = {"schedule", "arch"} - set(d)
    if missing:
        raise ArchError(f"model config: missing keys {sorted(missing)}; got {sorted(d)}")
    a = ArchConfig.from_dict(d["arch"])
    if a.backbone != "stem":
        from nas_dil.models.backbones import BackboneSegNet  # needs torchvision

        return BackboneSegNet(Schedule.from_dict(d["schedule"]), a)  # type: ignore[return-value]
    return DilatedSegNet(Schedule.from_dict(d["schedule"]), a)


def describe_model(model: DilatedSegNet, h: int, w: int) -> dict[str, Any]:
    """Layer table, params, MACs/FLOPs and RFs of ``model`` on one h×w image (analytic).

    JSON-able; rows follow ``nas_dil.schedule.LayerCost``. ``params`` is counted on the
    module itself; the analytic total equals it (tests). ``crop``: dead taps and the
    nominal / live / usable RF at h×w (``nas_dil.schedule.crop``).
    """
    if model.arch.backbone != "stem":
        from nas_dil.models.backbones import describe_backbone_model

        return describe_backbone_model(model, h, w)  # type: ignore[arg-type]
    s, a = model.schedule, model.arch
    nc = net_cost(h, w, s, **a.cost_kwargs())
    full = coverage(image_schedule(s, s.kernels, a.output_stride, a.backbone_stride,
                                   a.context, a.context_rates))
    stack = coverage(s)
    crop = net_crop_report(h, w, s, **a.cost_kwargs())
    return {
        "schedule": model_config(model)["schedule"],
        "arch": a.to_dict(),
        "input": [h, w],
        "output_lowres": [nc.out_h, nc.out_w],
        "layers": [
            {
                "name": lay.name, "c_in": lay.c_in, "c_out": lay.c_out, "kernel": lay.kernel,
                "stride": lay.stride, "dilation": lay.dilation, "out": [lay.h_out, lay.w_out],
                "macs": lay.macs, "params": lay.params, "rf": lay.rf,
            }
            for lay in nc.layers
        ],
        "params": count_params(model),
        "macs": nc.macs,
        "flops": nc.flops,
        "gflops": nc.gflops,
        "rf_stem": nc.rf_stem,
        "rf_stack": nc.rf_stack,
        "rf_features": nc.rf_features,
        "rf_image": nc.rf_image,
        "stack_holes_1d": stack.holes_1d,
        "image_holes_1d": full.holes_1d,  # image pixels per axis the output unit never sees
        "crop": crop.to_dict(),
        "dead_taps_stack": crop.dead_taps_of("stack."),
    }
