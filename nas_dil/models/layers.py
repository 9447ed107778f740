"""The layers the nets are built of: conv-norm-act, the dilated stack (smoothing, per-axis
rates, residual paths, degridding tail), the context module and the classifier head. Shared by
`nas_dil.models.net` (the stem net) and `nas_dil.models.backbones` (torchvision trunks).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from math import gcd

import torch
import torch.nn.functional as F
from torch import nn

from nas_dil.schedule import Schedule, ScheduleError

__all__ = ["ContextModule", "ConvNormAct", "DilatedStack", "Head", "SharedSmoothing"]


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
        d_h, d_w = (dilation, dilation) if isinstance(dilation, int) else dilation
        d = (d_h, d_w)
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


def residual_gain(n_layers: int) -> float:
    """The scale a residual stack of ``n_layers`` gives each branch at init: 1 up to 3 layers
    (the plain default), then (3/n)² (6 layers 0.25, 9 layers 0.11): measured to keep the
    seed spread of 4-9-layer stacks ≤ 0.01 where γ = 1 left 9-layer ones at ±0.12 and a single
    0.2 for all depths slowed 3-layer gridded stacks (docs/benchmarks.md §17)."""
    return min(1.0, (3 / max(1, n_layers)) ** 2)


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
        self._scale_residual_branches(residual_gain(n))

    @torch.no_grad()
    def _scale_residual_branches(self, gain: float) -> None:
        """Each residual branch starts scaled by ``gain`` (its norm's γ, or its conv without a
        norm; ReLU is positively homogeneous, so either scales f(x)). Why: a deep stack of
        unscaled branches adds n unit-variance terms to x at init, and at the quickstart's
        budget 9-layer stacks then lose a class in some seeds (docs/synthetic_data.md)."""
        if gain == 1.0:
            return
        for layer, res in zip(self.layers, self.residual_layers, strict=True):
            if not res:
                continue
            norm, conv = layer._modules.get("norm"), layer._modules["conv"]
            target = norm if norm is not None else conv
            for name in (("weight",) if norm is not None else ("weight", "bias")):
                p = getattr(target, name, None)
                if isinstance(p, torch.Tensor):
                    if norm is not None:
                        p.fill_(gain)
                    else:
                        p.mul_(gain)

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
