"""Analytic cost and receptive field of the WHOLE segmentation net: stem, dilated stack, head.

Pure numpy; ``nas_dil.models`` builds the torch net from the same plan (``stem_plan``), and its
tests check this module against ``FlopCounterMode`` and the parameter count.

The net, per axis sizes follow ``conv_out_size``:
- stem: log2(backbone_stride) stages, each conv3×3 (+ norm) + act. Stage i has
  min(stem_width·2^i, width) channels, the last stage exactly ``width``. Stages up to the
  output stride have stride 2 (padding 1); later stages have stride 1 and dilation 2, 4, 8 …
  (compounding, "derive, don't list").
- stack: per rate r a K×K conv width→width, dilation r, padding r·(K-1)/2 (+ norm) + act;
  a residual add changes no cost under the convention below. A smoothed layer (Wang & Ji)
  first runs one (2r_h-1)×(2r_w-1) filter shared by all channels (a depthwise conv whose
  weights are one shared kernel: h·w·width·(2r_h-1)(2r_w-1) MACs, (2r_h-1)(2r_w-1) params);
  per-axis rates (``Schedule.rates_w``) and a degridding tail are ordinary K×K layers.
- head: 1×1 classifier width→num_classes (bias); with ``context``, Yu & Koltun's module:
  3×3 convs C→C (bias) with dilations ``context_rates``, then a 1×1 C→C conv (bias).
- bilinear up-sampling to the input size (no MACs, no parameters).

Convention (that of ``cost.py``): ``macs`` counts multiply-accumulates of the convolutions for
ONE image; ``flops`` = 2·macs, which is what ``torch.utils.flop_counter.FlopCounterMode``
reports (it ignores biases, norms, activations, adds and interpolation). ``params`` counts
trainable parameters: conv weights, conv biases (only when norm="none", and always in the
head), norm affine weight and bias (2 per channel for both "bn" and "gn"); BatchNorm running
statistics are buffers, not parameters.

Receptive fields are per axis. ``rf_image`` is the RF, in image pixels, of one output unit at
the output stride (the logits before up-sampling): stem, stack and context module all count;
the up-sampling spreads each logit over neighbouring pixels but adds no context, so it is
left out. ``image_schedule`` gives the whole chain as one strided ``Schedule``, so the exact
image-pixel support (holes included) is ``support_1d(image_schedule(...))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas_dil.schedule.cost import Cost, conv_cost, conv_out_size
from nas_dil.schedule.coverage import count_map_2d
from nas_dil.schedule.rf import receptive_field, rf_in_image, rf_per_layer
from nas_dil.schedule.types import Schedule

__all__ = [
    "DEFAULT_CONTEXT_RATES",
    "NORMS",
    "BatchNetCost",
    "LayerCost",
    "NetCost",
    "StemStage",
    "batch_net_cost",
    "batch_smooth_cost",
    "image_schedule",
    "net_cost",
    "net_count_map",
    "smooth_box_area",
    "stem_plan",
]

NORMS = ("bn", "gn", "none")
DEFAULT_CONTEXT_RATES = (1, 1, 2, 4, 8, 16, 1)  # Yu & Koltun, Table 1 (then a 1×1 output)
MAX_STRIDE = 64  # deeper stems leave nothing to segment at any realistic input size


@dataclass(frozen=True)
class StemStage:
    c_out: int  # output channels
    stride: int  # 2 while below the output stride, then 1
    dilation: int  # 1, then 2, 4, … once the output stride is reached


def _log2_exact(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what}={value!r}: must be a power of 2 >= 1")
    n = int(value).bit_length() - 1
    if 1 << n != value:
        raise ValueError(f"{what}={value}: must be a power of 2")
    return n


def _positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what}={value!r}: must be an integer >= 1")
    return int(value)


def stem_plan(
    output_stride: int, backbone_stride: int | None = None, stem_width: int = 16, width: int = 32
) -> tuple[StemStage, ...]:
    """The stem's stages: channels, stride and dilation of each conv3×3.

    ``backbone_stride`` (default: ``output_stride``) sets the number of stages; stages past
    the output stride trade their stride 2 for a doubling dilation, as timm does.
    """
    n_down = _log2_exact(output_stride, "output_stride")
    if n_down == 0:  # the stack is width→width, so at least one stem stage must set the width
        raise ValueError(f"output_stride={output_stride}: must be >= 2")
    bs = output_stride if backbone_stride is None else backbone_stride
    n_stages = _log2_exact(bs, "backbone_stride")
    if bs < output_stride or bs > MAX_STRIDE:
        raise ValueError(
            f"backbone_stride={bs}: must be in [output_stride={output_stride}, {MAX_STRIDE}]"
        )
    stem_width = _positive(stem_width, "stem_width")
    width = _positive(width, "width")
    stages = []
    for i in range(n_stages):
        c = width if i == n_stages - 1 else min(stem_width << i, width)
        if i < n_down:
            stages.append(StemStage(c, 2, 1))
        else:
            stages.append(StemStage(c, 1, 1 << (i - n_down + 1)))
    return tuple(stages)


def _stack_schedule(rates: Sequence[int] | Schedule, kernel: int | Sequence[int]) -> Schedule:
    if isinstance(rates, Schedule):  # carries its own kernels and degridding variants
        return rates
    ks = (kernel,) if isinstance(kernel, int | np.integer) else tuple(kernel)
    return Schedule(tuple(int(r) for r in rates), tuple(int(k) for k in ks))


def image_schedule(
    rates: Sequence[int] | Schedule,
    kernel: int | Sequence[int] = 3,
    output_stride: int = 8,
    backbone_stride: int | None = None,
    context: bool = False,
    context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES,
) -> Schedule:
    """Every conv of the net, in order, as one strided Schedule in image pixels.

    One layer per conv: stem stages, stack, the 1×1 classifier, then (with ``context``) the
    context convs and their 1×1 output conv. Its RF is ``rf_image``; its ``support_1d`` is
    the exact set of image offsets one output unit sees. ``rates`` may be a Schedule: its
    per-axis rates and smoothing carry over (``.axis("w")`` gives the width's chain).
    """
    stem = stem_plan(output_stride, backbone_stride)
    stack = _stack_schedule(rates, kernel)
    r = [st.dilation for st in stem] + list(stack.rates) + [1]
    rw = [st.dilation for st in stem] + list(stack.rates_w or stack.rates) + [1]
    k = [3] * len(stem) + list(stack.kernels) + [1]
    s = [st.stride for st in stem] + [1] * len(stack) + [1]
    sm = [False] * len(stem) + [stack.smoothed(i) for i in range(len(stack))] + [False]
    if context:
        ctx = tuple(context_rates)
        r += [*ctx, 1]
        rw += [*ctx, 1]
        k += [3] * len(ctx) + [1]
        s += [1] * (len(ctx) + 1)
        sm += [False] * (len(ctx) + 1)
    return Schedule(tuple(r), tuple(k), tuple(s), tuple(rw), tuple(sm))


@dataclass(frozen=True)
class LayerCost:
    name: str  # "stem.0", "stack.2", "classifier", "context.3", "context.out", "upsample"
    c_in: int
    c_out: int
    kernel: int
    stride: int
    dilation: int
    h_out: int
    w_out: int
    macs: int
    params: int
    rf: int  # RF after this layer, image pixels along the height


@dataclass(frozen=True)
class NetCost(Cost):
    """Whole-net cost for one image (``macs``, ``params``, ``flops``) plus RFs and layers."""

    rf_stem: int  # RF of one stem output unit, image pixels
    rf_stack: int  # RF of the dilated stack alone, in its own input pixels
    rf_features: int  # stem + stack, image pixels (``rf_in_image``)
    rf_image: int  # whole net up to the logits at output stride, image pixels
    out_h: int  # size of the logits before up-sampling
    out_w: int
    layers: tuple[LayerCost, ...]


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: must be one of {', '.join(NORMS)}")


def net_cost(
    h: int,
    w: int,
    rates: Sequence[int] | Schedule,
    *,
    kernel: int | Sequence[int] = 3,
    in_channels: int = 3,
    num_classes: int = 21,
    output_stride: int = 8,
    backbone_stride: int | None = None,
    stem_width: int = 16,
    width: int = 32,
    norm: str = "bn",
    residual: bool = False,
    context: bool = False,
    context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES,
) -> NetCost:
    """MACs, FLOPs (2·MACs), params and RFs of the whole net on one h×w image.

    ``kernel`` is the stack's kernel size, one int or one per rate; ``rates`` may be a
    Schedule (its kernels, per-axis rates, smoothing and tail count; ``kernel`` is then
    ignored). ``residual`` is accepted so an architecture's fields pass straight through; it
    changes no count (adds are free here). RFs are along the height.
    """
    del residual  # documented no-op: residual adds are not MACs
    _check_norm(norm)
    h, w = _positive(h, "h"), _positive(w, "w")
    h0, w0 = h, w
    in_channels = _positive(in_channels, "in_channels")
    num_classes = _positive(num_classes, "num_classes")
    has_norm = norm != "none"
    stem = stem_plan(output_stride, backbone_stride, stem_width, width)
    stack = _stack_schedule(rates, kernel)
    if not stack.stride_free:
        raise ValueError(f"strides={list(stack.strides)}: the dilated stack keeps resolution")
    ctx = tuple(context_rates) if context else ()
    if context and not ctx:
        raise ValueError("context_rates=[]: the context module needs at least one layer")
    full = image_schedule(stack, stack.kernels, output_stride, backbone_stride,
                          context, context_rates)
    # one row per conv: a smoothed layer's pre-filter shares its layer's RF
    rf_per = rf_per_layer(full).tolist()
    n_stem = len(stem)
    rf_after: list[int] = []
    for i, v in enumerate(rf_per):
        j = i - n_stem
        if 0 <= j < len(stack) and stack.smoothed(j):
            rf_after.append(v)
        rf_after.append(v)

    layers: list[LayerCost] = []

    def add(name: str, c_in: int, c_out: int, k: int, stride: int, dil: int, cost: Cost) -> None:
        layers.append(LayerCost(name, c_in, c_out, k, stride, dil, h, w, cost.macs, cost.params,
                                int(rf_after[len(layers)])))

    c = in_channels
    for i, st in enumerate(stem):
        h = conv_out_size(h, 3, st.stride, st.dilation)
        w = conv_out_size(w, 3, st.stride, st.dilation)
        add(f"stem.{i}", c, st.c_out, 3, st.stride, st.dilation,
            conv_cost(h, w, c, st.c_out, 3, bias=not has_norm, norm=has_norm))
        c = st.c_out
    rates_w = stack.rates_w or stack.rates
    for i, (r, k) in enumerate(zip(stack.rates, stack.kernels, strict=True)):
        if stack.smoothed(i):  # one shared (2r_h-1)×(2r_w-1) filter, applied per channel
            box = (2 * r - 1) * (2 * rates_w[i] - 1)
            add(f"stack.{i}.smooth", width, width, 2 * r - 1, 1, 1,
                Cost(h * w * width * box, box))
        add(f"stack.{i}", width, width, k, 1, r,
            conv_cost(h, w, width, width, k, bias=not has_norm, norm=has_norm))
    n_c = num_classes
    add("classifier", width, n_c, 1, 1, 1, conv_cost(h, w, width, n_c, 1, bias=True))
    for i, r in enumerate(ctx):
        add(f"context.{i}", n_c, n_c, 3, 1, r, conv_cost(h, w, n_c, n_c, 3, bias=True))
    if ctx:
        add("context.out", n_c, n_c, 1, 1, 1, conv_cost(h, w, n_c, n_c, 1, bias=True))
    out_h, out_w = h, w
    total = Cost(sum(lay.macs for lay in layers), sum(lay.params for lay in layers))
    # the up-sampling row: back to the input size, free, adds no context
    layers.append(LayerCost("upsample", n_c, n_c, 1, 1, 1, h0, w0, 0, 0, int(rf_after[-1])))

    rf_stem = receptive_field(Schedule(tuple(st.dilation for st in stem), (3,),
                                       tuple(st.stride for st in stem)))
    rf_stack = receptive_field(stack)
    return NetCost(
        macs=total.macs,
        params=total.params,
        rf_stem=rf_stem,
        rf_stack=rf_stack,
        rf_features=rf_in_image(rf_stack, output_stride, rf_stem),
        rf_image=int(rf_after[-1]),
        out_h=out_h,
        out_w=out_w,
        layers=tuple(layers),
    )


@dataclass(frozen=True)
class BatchNetCost:
    macs: np.ndarray  # int64, broadcast shape of the inputs
    params: np.ndarray  # int64

    @property
    def flops(self) -> np.ndarray:
        return 2 * self.macs


def _int_array(value: object, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 1:
        raise ValueError(f"{what} must be >= 1; found {int(arr.min())}")
    return arr


def _log2_array(arr: np.ndarray, what: str) -> np.ndarray:
    n = np.zeros(arr.shape, dtype=np.int64)
    v = arr.copy()
    while (v > 1).any():
        n += v > 1
        v = np.where(v > 1, v >> 1, v)
    if ((np.int64(1) << n) != arr).any():
        bad = arr[(np.int64(1) << n) != arr]
        raise ValueError(f"{what} must be powers of 2; found {int(bad.flat[0])}")
    return n


def batch_net_cost(
    h: int | np.ndarray,
    w: int | np.ndarray,
    output_stride: int | np.ndarray,
    width: int | np.ndarray,
    depth: int | np.ndarray,
    kernel: int | np.ndarray = 3,
    *,
    stem_width: int | np.ndarray = 16,
    in_channels: int = 3,
    num_classes: int = 21,
    backbone_stride: int | np.ndarray | None = None,
    norm: str = "bn",
    context: bool | np.ndarray = False,
    context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES,
) -> BatchNetCost:
    """``net_cost``'s MACs and params for many candidates at once (uniform stack kernel).

    Whole-net cost does not depend on the rates, only on the stack's depth; every array
    argument broadcasts against the others. Equal to ``net_cost`` element by element.
    """
    _check_norm(norm)
    args = np.broadcast_arrays(
        _int_array(h, "h"), _int_array(w, "w"), _int_array(output_stride, "output_stride"),
        _int_array(width, "width"), _int_array(depth, "depth"), _int_array(kernel, "kernel"),
        _int_array(stem_width, "stem_width"),
        _int_array(output_stride if backbone_stride is None else backbone_stride,
                   "backbone_stride"),
        np.asarray(context, dtype=bool),
    )
    hh, ww, os_, width_, depth_, k, sw, bs, ctx = (np.array(a) for a in args)
    if (k % 2 == 0).any():
        raise ValueError(f"kernel must be odd; found {int(k[k % 2 == 0].flat[0])}")
    n_down = _log2_array(os_, "output_stride")
    n_stages = _log2_array(bs, "backbone_stride")
    if (n_down < 1).any() or (bs < os_).any() or (bs > MAX_STRIDE).any():
        raise ValueError(f"need 2 <= output_stride <= backbone_stride <= {MAX_STRIDE}")
    c_in, n_c = _positive(in_channels, "in_channels"), _positive(num_classes, "num_classes")
    per_channel = 2 if norm != "none" else 1  # norm affine (weight, bias) or conv bias

    macs = np.zeros(hh.shape, dtype=np.int64)
    params = np.zeros(hh.shape, dtype=np.int64)
    c = np.full(hh.shape, c_in, dtype=np.int64)
    for i in range(int(n_stages.max(initial=0))):
        active = i < n_stages
        c_out = np.where(i == n_stages - 1, width_, np.minimum(sw << i, width_))
        down = active & (i < n_down)
        hh = np.where(down, (hh - 1) // 2 + 1, hh)  # conv3×3, stride 2, padding 1
        ww = np.where(down, (ww - 1) // 2 + 1, ww)
        macs += np.where(active, hh * ww * c_out * c * 9, 0)
        params += np.where(active, c_out * c * 9 + per_channel * c_out, 0)
        c = np.where(active, c_out, c)
    hw = hh * ww
    macs += depth_ * hw * width_ * width_ * k * k
    params += depth_ * (width_ * width_ * k * k + per_channel * width_)
    macs += hw * width_ * n_c
    params += width_ * n_c + n_c
    n_ctx = len(tuple(context_rates))
    macs += np.where(ctx, hw * n_c * n_c * (9 * n_ctx + 1), 0)
    params += np.where(ctx, n_ctx * (9 * n_c * n_c + n_c) + n_c * n_c + n_c, 0)
    return BatchNetCost(macs=macs, params=params)


def smooth_box_area(s: Schedule) -> int:
    """Σ (2r_h-1)(2r_w-1) over the smoothed layers of ``s``: the shared pre-filters' weights."""
    rw = s.rates_w or s.rates
    return sum((2 * s.rates[i] - 1) * (2 * rw[i] - 1) for i in range(len(s)) if s.smoothed(i))


def batch_smooth_cost(
    h: int | np.ndarray,
    w: int | np.ndarray,
    output_stride: int | np.ndarray,
    width: int | np.ndarray,
    box_area: int | np.ndarray,
) -> BatchNetCost:
    """What smoothing adds to `batch_net_cost` (which counts K×K layers only): MACs
    h_s·w_s·width·box_area at the stack's size and ``box_area`` params, with ``box_area``
    from `smooth_box_area`. A tail is just more layers: pass ``depth = n_layers`` there."""
    args = np.broadcast_arrays(_int_array(h, "h"), _int_array(w, "w"),
                               _int_array(output_stride, "output_stride"),
                               _int_array(width, "width"), np.asarray(box_area, dtype=np.int64))
    hh, ww, os_, width_, area = (np.array(a) for a in args)
    n_down = _log2_array(os_, "output_stride")
    for i in range(int(n_down.max(initial=0))):
        hh = np.where(i < n_down, (hh - 1) // 2 + 1, hh)  # the stem's stride-2 convs
        ww = np.where(i < n_down, (ww - 1) // 2 + 1, ww)
    return BatchNetCost(macs=hh * ww * width_ * area, params=area.copy())


def net_count_map(
    rates: Sequence[int] | Schedule,
    kernel: int | Sequence[int] = 3,
    *,
    output_stride: int = 8,
    backbone_stride: int | None = None,
    context: bool = False,
    context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES,
    residual: bool = False,
    **_ignored: object,
) -> np.ndarray:
    """Path counts from each image pixel to one logit at the output stride (RF_img² map).

    The whole net's convs (`image_schedule`), with x + f(x) on the stack's layers when
    ``residual`` (never on the stem, the head or a tail). Extra keywords (an
    ``ArchConfig.cost_kwargs()``'s width, norm, …) change no count and are ignored.
    """
    stack = _stack_schedule(rates, kernel)
    full = image_schedule(stack, stack.kernels, output_stride, backbone_stride, context,
                          context_rates)
    n_stem = len(stem_plan(output_stride, backbone_stride))
    flags = [False] * len(full)
    for i in range(len(stack) - stack.tail):
        flags[n_stem + i] = residual
    return count_map_2d(full, flags)
