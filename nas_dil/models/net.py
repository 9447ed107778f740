"""The segmentation net: stem to the output stride, dilated stack, classifier (+ context), up.

One class, ``DilatedSegNet``, built from a ``Schedule`` and an ``ArchConfig``. Its shape plan
is ``nas_dil.schedule.netcost.stem_plan`` and its analytic cost is ``net_cost``; the tests
hold the two to ``FlopCounterMode`` and the parameter count.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from math import gcd
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas_dil.models.config import ArchConfig, ArchError
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


def _norm(norm: str, c: int, gn_groups: int) -> nn.Module:
    if norm == "bn":
        return nn.BatchNorm2d(c)
    return nn.GroupNorm(gcd(gn_groups, c), c)  # gcd: any width works with any group count


class SharedSmoothing(nn.Module):
    """Wang & Ji's smoothing before a dilated conv with rates (r_h, r_w): one
    (2r_h-1)×(2r_w-1) filter shared by every channel (a depthwise conv with one kernel), 'same'
    padding. Identity-initialised (centre 1), so training starts from the plain dilated conv.
    """

    def __init__(self, channels: int, rate_h: int, rate_w: int) -> None:
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.zeros(1, 1, 2 * rate_h - 1, 2 * rate_w - 1))
        with torch.no_grad():
            self.weight[0, 0, rate_h - 1, rate_w - 1] = 1.0
        self.padding = (rate_h - 1, rate_w - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.expand(self.channels, 1, *self.weight.shape[-2:])
        return F.conv2d(x, w, padding=self.padding, groups=self.channels)


class ConvNormAct(nn.Sequential):
    """K×K conv with 'same' padding for stride 1, then norm (or a conv bias) and activation.

    ``dilation`` may be (r_h, r_w); ``smooth`` puts a `SharedSmoothing` first."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
                 dilation: int | tuple[int, int] = 1, norm: str = "bn", act: str = "relu",
                 gn_groups: int = 8, smooth: bool = False) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        d = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        if smooth:
            layers["smooth"] = SharedSmoothing(c_in, d[0], d[1])
        layers["conv"] = nn.Conv2d(c_in, c_out, kernel, stride=stride, dilation=d,
                                   padding=(d[0] * (kernel - 1) // 2, d[1] * (kernel - 1) // 2),
                                   bias=norm == "none")
        if norm != "none":
            layers["norm"] = _norm(norm, c_out, gn_groups)
        if act == "relu":
            layers["act"] = nn.ReLU(inplace=True)  # in place: acts on the conv/norm output only
        super().__init__(layers)


class DilatedStack(nn.Module):
    """The searched part: one ConvNormAct width→width per rate, resolution kept.

    Per-axis rates, smoothing and the degridding tail come from the Schedule; ``residual``
    makes every layer but the tail compute x + f(x).
    """

    def __init__(self, schedule: Schedule, width: int, norm: str = "bn", act: str = "relu",
                 residual: bool = False, gn_groups: int = 8) -> None:
        super().__init__()
        if not schedule.stride_free:
            raise ScheduleError(
                f"strides={list(schedule.strides)}: the dilated stack keeps resolution"
            )
        self.residual = residual
        rates_w = schedule.rates_w or schedule.rates
        self.layers = nn.ModuleList(
            ConvNormAct(width, width, k, 1, (r, rw), norm, act, gn_groups, schedule.smoothed(i))
            for i, (r, rw, k) in enumerate(zip(schedule.rates, rates_w, schedule.kernels,
                                                strict=True))
        )
        n = len(schedule)
        self.residual_layers = tuple(residual and i < n - schedule.tail for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, res in zip(self.layers, self.residual_layers, strict=True):
            x = x + layer(x) if res else layer(x)
        return x


class ContextModule(nn.Sequential):
    """Yu & Koltun's context module: 3×3 C→C convs at ``rates`` (each + act), then 1×1 C→C.

    Identity-initialised, so at init it passes its (non-negative, with ReLU) input through
    unchanged and training starts from the classifier's own prediction.
    """

    def __init__(self, channels: int, rates: Sequence[int], act: str = "relu") -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, r in enumerate(rates):
            layers[f"conv{i}"] = nn.Conv2d(channels, channels, 3, dilation=r, padding=r)
            if act == "relu":
                layers[f"act{i}"] = nn.ReLU(inplace=True)
        layers["out"] = nn.Conv2d(channels, channels, 1)
        super().__init__(layers)
        self.reset_identity()

    @torch.no_grad()
    def reset_identity(self) -> None:
        eye = torch.arange(next(self.parameters()).shape[0])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                c = m.kernel_size[0] // 2
                m.weight[eye, eye, c, c] = 1.0  # centre tap of channel c → c
                if m.bias is not None:
                    m.bias.zero_()


class Head(nn.Module):
    """1×1 classifier width→num_classes, then the optional context module."""

    def __init__(self, width: int, num_classes: int, context: bool = False,
                 context_rates: Sequence[int] = (), act: str = "relu") -> None:
        super().__init__()
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.context = ContextModule(num_classes, context_rates, act) if context else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.classifier(x)
        return x if self.context is None else self.context(x)


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
