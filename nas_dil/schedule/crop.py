"""What the input can supply: dead taps, live RF and usable RF at a given input size.

Per axis, every conv reads its input at ``stride·p - pad + k·d`` for output position p and tap
k (pad = d·(K-1)/2, as every conv of the net is padded). A tap is **live** at an input size
when some output position reads a real pixel through it, and **dead** when it reads only zero
padding from every output position: it gets no gradient and keeps its initial value. For a
stride-1 'same' conv on a map of side s, the tap at offset o = j·d is live iff |o| < s, so a
rate r >= s leaves a 1×1 conv. A 2-D tap (j_h, j_w) is live iff both axes' taps are.

Three receptive fields, per axis, in input pixels of the chain (image pixels for the net):
- ``rf_nominal``: 1 + Σ (K-1)·d·J (every tap, the textbook RF; `rf.py`);
- ``rf_live``: the same sum over live taps only, 1 + Σ (o_max - o_min)·J;
- ``rf_usable``: the widest span of input pixels one output unit combines at this input size
  (its exact support, zero padding included), the largest over all output units. It never
  exceeds the input side nor ``rf_live``. For a linear net with positive weights it is the
  extent of the gradient of that unit with respect to the input (tests/models).

Exact and cheap: per axis, the support of every output unit is a boolean (units × pixels)
matrix, composed backwards through the chain one tap at a time. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas_dil.schedule.cost import conv_out_size
from nas_dil.schedule.netcost import DEFAULT_CONTEXT_RATES, stem_plan
from nas_dil.schedule.types import Schedule, ScheduleError

__all__ = [
    "MAX_CROP",
    "BatchCrop",
    "ConvOp",
    "CropReport",
    "TapReport",
    "batch_crop",
    "chain_support",
    "crop_fields",
    "crop_report",
    "live_taps",
    "max_live_rate",
    "net_crop_report",
    "net_ops",
    "stack_ops",
]

MAX_CROP = 8192  # widest input side analysed (per axis): support matrices are side² bits


@dataclass(frozen=True)
class ConvOp:
    """One conv along one axis (its padding is always dilation·(kernel-1)/2)."""

    name: str  # "stem.0", "stack.2", "stack.2.smooth", "classifier", "context.3", …
    kernel: int  # taps along this axis
    stride: int
    dilation: int  # along this axis


def live_taps(size_in: int, kernel: int, stride: int = 1, dilation: int = 1) -> np.ndarray:
    """(K,) bool: which taps read a real pixel from some output position (input side
    ``size_in``)."""
    pad = dilation * (kernel - 1) // 2
    s_out = conv_out_size(size_in, kernel, stride, dilation)
    if s_out < 1:
        return np.zeros(kernel, dtype=bool)
    o = np.arange(kernel, dtype=np.int64) * dilation - pad
    p0 = np.where(o >= 0, 0, -(o // stride))  # first position whose read is >= 0 (ceil)
    return (p0 <= s_out - 1) & (stride * p0 + o < size_in)


def max_live_rate(kernel: int, side: int) -> int | None:
    """The largest rate whose every tap is live on a map of ``side`` px (stride-1 'same'
    conv): (side-1) // ((K-1)/2). None for K = 1 (no off-centre tap). A smoothed layer's
    pre-filter (|o| <= r-1) is then live too."""
    half = (kernel - 1) // 2
    return None if half == 0 else (side - 1) // half


def stack_ops(s: Schedule, axis: str = "h") -> list[ConvOp]:
    """The stack's convs along one axis: a smoothed layer is its pre-filter, then the conv."""
    a = s.axis(axis)
    ops = []
    for i, (r, k, st) in enumerate(zip(a.rates, a.kernels, a.strides, strict=True)):
        if s.smoothed(i):  # the (2r-1)×… pre-filter of the 2-D layer; width 1 on an r=1 axis
            ops.append(ConvOp(f"stack.{i}.smooth", 2 * r - 1, 1, 1))
        ops.append(ConvOp(f"stack.{i}", k, st, r))
    return ops


def net_ops(stack: Schedule, axis: str = "h", output_stride: int = 8,
            backbone_stride: int | None = None, context: bool = False,
            context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES) -> list[ConvOp]:
    """Every conv of the net along one axis, in order (as ``netcost.image_schedule``)."""
    ops = [ConvOp(f"stem.{i}", 3, st.stride, st.dilation)
           for i, st in enumerate(stem_plan(output_stride, backbone_stride))]
    ops += stack_ops(stack, axis)
    ops.append(ConvOp("classifier", 1, 1, 1))
    if context:
        ops += [ConvOp(f"context.{i}", 3, 1, int(r)) for i, r in enumerate(context_rates)]
        ops.append(ConvOp("context.out", 1, 1, 1))
    return ops


def _sizes(ops: Sequence[ConvOp], size: int) -> list[int]:
    """Input side of each op, then the final output side."""
    out = [size]
    for op in ops:
        out.append(conv_out_size(out[-1], op.kernel, op.stride, op.dilation))
        if out[-1] < 1:
            raise ScheduleError(f"input side {size}: {op.name} leaves no pixel")
    return out


def _check_size(size: int, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or not (
            1 <= size <= MAX_CROP):
        raise ScheduleError(f"{what}={size!r}: input side must be an integer in [1, {MAX_CROP}]")
    return int(size)


def chain_support(ops: Sequence[ConvOp], size: int) -> np.ndarray:
    """(units, size) bool: row u is the set of input pixels output unit u sees (one axis)."""
    sizes = _sizes(ops, size)
    r = np.eye(sizes[-1], dtype=bool)
    for op, s_in, s_out in zip(reversed(ops), reversed(sizes[:-1]), reversed(sizes[1:]),
                               strict=True):
        nxt = np.zeros((r.shape[0], s_in), dtype=bool)
        pad = op.dilation * (op.kernel - 1) // 2
        p = np.arange(s_out)
        for k in range(op.kernel):
            x = op.stride * p - pad + k * op.dilation
            ok = (x >= 0) & (x < s_in)
            if ok.any():
                nxt[:, x[ok]] |= r[:, ok]  # x is distinct for one tap: no write conflicts
        r = nxt
    return r


def _extent(rows: np.ndarray) -> int:
    """Largest (last - first + 1) over the non-empty rows."""
    any_ = rows.any(axis=1)
    if not any_.any():
        return 0
    first = rows.argmax(axis=1)
    last = rows.shape[1] - 1 - rows[:, ::-1].argmax(axis=1)
    return int((last - first + 1)[any_].max())


@dataclass(frozen=True)
class TapReport:
    """One conv's taps at the input size (2-D: the height's op and the width's op)."""

    name: str
    kernel: tuple[int, int]  # taps along (h, w)
    dilation: tuple[int, int]
    stride: int
    size_in: tuple[int, int]  # the conv's input map
    dead_h: tuple[int, ...]  # offsets (this conv's input px) of dead taps along the height
    dead_w: tuple[int, ...]
    dead: int  # 2-D taps that read only padding: K_h·K_w - live_h·live_w

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kernel": list(self.kernel), "dilation": list(self.dilation),
                "stride": self.stride, "size_in": list(self.size_in),
                "dead_h": list(self.dead_h), "dead_w": list(self.dead_w), "dead": self.dead}


@dataclass(frozen=True)
class CropReport:
    size: tuple[int, int]  # input (h, w)
    out: tuple[int, int]  # output map of the chain
    rf_nominal: tuple[int, int]  # every tap (h, w), input px
    rf_live: tuple[int, int]  # live taps only
    rf_usable: tuple[int, int]  # widest span one output unit combines at this size
    dead_taps: int  # 2-D dead taps over every conv of the chain
    layers: tuple[TapReport, ...]  # every conv, dead or not

    @property
    def dead_layers(self) -> tuple[TapReport, ...]:
        return tuple(t for t in self.layers if t.dead)

    def dead_taps_of(self, prefix: str) -> int:
        """Dead 2-D taps of the convs whose name starts with ``prefix`` ("stack.")."""
        return sum(t.dead for t in self.layers if t.name.startswith(prefix))

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "out": list(self.out),
                "rf_nominal": list(self.rf_nominal), "rf_live": list(self.rf_live),
                "rf_usable": list(self.rf_usable), "dead_taps": self.dead_taps,
                "dead_layers": [t.to_dict() for t in self.dead_layers]}


def _axis(ops: Sequence[ConvOp], size: int) -> tuple[list[int], list[np.ndarray], int, int, int,
                                                     int]:
    sizes = _sizes(ops, size)
    lives, nominal, live_rf, jump = [], 1, 1, 1
    for op, s_in in zip(ops, sizes, strict=False):
        lv = live_taps(s_in, op.kernel, op.stride, op.dilation)
        lives.append(lv)
        nominal += (op.kernel - 1) * op.dilation * jump
        idx = np.flatnonzero(lv)
        live_rf += (int(idx[-1] - idx[0]) * op.dilation * jump) if idx.size else 0
        jump *= op.stride
    usable = _extent(chain_support(ops, size))
    return sizes, lives, nominal, live_rf, usable, sizes[-1]


def _report(ops_h: Sequence[ConvOp], ops_w: Sequence[ConvOp], h: int, w: int) -> CropReport:
    h, w = _check_size(h, "h"), _check_size(w, "w")
    sh, lh, nom_h, live_h, use_h, out_h = _axis(ops_h, h)
    sw, lw, nom_w, live_w, use_w, out_w = _axis(ops_w, w)
    layers = []
    for oh, ow, s_h, s_w, a, b in zip(ops_h, ops_w, sh, sw, lh, lw, strict=False):
        off_h = np.arange(oh.kernel) * oh.dilation - oh.dilation * (oh.kernel - 1) // 2
        off_w = np.arange(ow.kernel) * ow.dilation - ow.dilation * (ow.kernel - 1) // 2
        layers.append(TapReport(
            oh.name, (oh.kernel, ow.kernel), (oh.dilation, ow.dilation), oh.stride, (s_h, s_w),
            tuple(off_h[~a].tolist()), tuple(off_w[~b].tolist()),
            oh.kernel * ow.kernel - int(a.sum()) * int(b.sum())))
    return CropReport((h, w), (out_h, out_w), (nom_h, nom_w), (live_h, live_w), (use_h, use_w),
                      sum(t.dead for t in layers), tuple(layers))


def crop_report(s: Schedule, h: int, w: int | None = None) -> CropReport:
    """Dead taps and RFs of the stack alone on an h×w input (its own input pixels)."""
    return _report(stack_ops(s, "h"), stack_ops(s, "w"), h, h if w is None else w)


def net_crop_report(h: int, w: int, stack: Schedule, *, output_stride: int = 8,
                    backbone_stride: int | None = None, context: bool = False,
                    context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES,
                    **_ignored: Any) -> CropReport:
    """Dead taps and RFs of the whole net (stem, stack, head) on an h×w image, image pixels.

    Extra keywords (an ``ArchConfig.cost_kwargs()``'s width, norm, …) are accepted and
    ignored: taps and RFs do not depend on them.
    """
    rates = tuple(context_rates)

    def ops(axis: str) -> list[ConvOp]:
        return net_ops(stack, axis, output_stride=output_stride,
                       backbone_stride=backbone_stride, context=context, context_rates=rates)

    return _report(ops("h"), ops("w"), h, w)


def crop_fields(stack: Schedule, h: int, w: int, **arch: Any) -> dict[str, Any]:
    """The per-candidate fields a search needs at its training crop (plain JSON).

    ``arch``: output_stride, backbone_stride, context, context_rates (others ignored).
    ``dead_taps`` counts the stack's dead 2-D taps (what the candidate chose);
    ``dead_taps_net`` every conv's (stem and context module included). ``rf_usable`` and
    ``rf_nominal`` are the smaller of the two axes (image px; equal for square inputs).
    """
    rep = net_crop_report(h, w, stack, **arch)
    return {
        "rf_nominal": min(rep.rf_nominal),
        "rf_nominal_h": rep.rf_nominal[0], "rf_nominal_w": rep.rf_nominal[1],
        "rf_live_h": rep.rf_live[0], "rf_live_w": rep.rf_live[1],
        "rf_usable_h": rep.rf_usable[0], "rf_usable_w": rep.rf_usable[1],
        "rf_usable": min(rep.rf_usable), "crop": [h, w],
        "dead_taps": rep.dead_taps_of("stack."), "dead_taps_net": rep.dead_taps,
        "dead_layers": [t.to_dict() for t in rep.dead_layers],
    }


# -- many candidates at once -----------------------------------------------------------------

@dataclass(frozen=True)
class BatchCrop:
    dead_taps: np.ndarray  # (B,) dead 2-D taps of the stack
    dead_taps_net: np.ndarray  # (B,) of every conv of the net
    rf_nominal_h: np.ndarray  # (B,) image px
    rf_nominal_w: np.ndarray
    rf_live_h: np.ndarray
    rf_live_w: np.ndarray
    rf_usable_h: np.ndarray
    rf_usable_w: np.ndarray


def _batch_axis(r: np.ndarray, kernel: int, smooth: np.ndarray, size: int, pre: list[ConvOp],
                post: list[ConvOp], bits: bool = True) -> tuple[Any, ...]:
    """(live counts per stack conv (B, n_convs, ), nominal, live RF, usable) for one axis."""
    b, n = r.shape
    s_pre = _sizes(pre, size)
    s = s_pre[-1]  # the stack's side (stride 1: kept)
    jump = int(np.prod([op.stride for op in pre])) if pre else 1
    # fixed parts: stem before, head after
    const_nom, const_live, const_dead_1d = 1, 1, []
    jj = 1
    for op, s_in in zip(pre, s_pre, strict=False):
        lv = live_taps(s_in, op.kernel, op.stride, op.dilation)
        idx = np.flatnonzero(lv)
        const_nom += (op.kernel - 1) * op.dilation * jj
        const_live += int(idx[-1] - idx[0]) * op.dilation * jj
        const_dead_1d.append((op.kernel, int(lv.sum())))
        jj *= op.stride
    for op in post:
        lv = live_taps(s, op.kernel, op.stride, op.dilation)
        idx = np.flatnonzero(lv)
        const_nom += (op.kernel - 1) * op.dilation * jump
        const_live += int(idx[-1] - idx[0]) * op.dilation * jump
        const_dead_1d.append((op.kernel, int(lv.sum())))
    half = (kernel - 1) // 2
    # stack convs: taps j·r (|j| <= half) live iff |j|·r < s; pre-filter taps |i| < min(r, s)
    live_conv = 1 + 2 * np.minimum(half, (s - 1) // r)  # (B, n)
    nom = const_nom + ((kernel - 1) * r).sum(axis=1) * jump
    live = const_live + (2 * np.minimum(half, (s - 1) // r) * r).sum(axis=1) * jump
    convs = [live_conv]
    kernels = [np.full((b, n), kernel)]
    if smooth.any():  # per layer; an unsmoothed layer's "pre-filter" is a width-1 identity
        m = smooth[None, :]
        box = np.where(m, 2 * r - 1, 1)
        live_box = np.where(m, 2 * np.minimum(r - 1, s - 1) + 1, 1)
        nom = nom + np.where(m, 2 * (r - 1), 0).sum(axis=1) * jump
        live = live + np.where(m, 2 * np.minimum(r - 1, s - 1), 0).sum(axis=1) * jump
        convs.append(live_box)
        kernels.append(box)
    post_rows = chain_support(post, s) if post else np.eye(s, dtype=bool)
    stem = chain_support(pre, size) if pre else None
    first = stem.argmax(axis=1) if stem is not None else np.arange(s)
    last = (size - 1 - stem[:, ::-1].argmax(axis=1)) if stem is not None else np.arange(s)
    if bits and s <= 64 and (np.diff(first) >= 0).all() and (np.diff(last) >= 0).all():
        usable = _usable_bits(r, half, smooth, s, post_rows, first, last)
    else:
        usable = _usable_rows(r, half, smooth, s, post_rows, first, last)
    return convs, kernels, const_dead_1d, nom, live, usable


def _usable_rows(r: np.ndarray, half: int, smooth: np.ndarray, s: int, post_rows: np.ndarray,
                 first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Usable RF per row: (B, units, s) boolean supports, backwards through the stack, then
    each feature pixel's image span [first, last] (the stem's rows)."""
    b, n = r.shape
    rows = np.ascontiguousarray(np.broadcast_to(post_rows[None], (b, s, s)))
    ar = np.arange(s)
    for i in range(n - 1, -1, -1):
        rows = _shift_or(rows, [j * r[:, i] for j in range(-half, half + 1)], s, ar)
        if smooth[i]:
            ri = r[:, i]
            width = int(min(ri.max(), s))  # box offsets beyond the side land in padding
            offs = [np.where(np.abs(t) < ri, t, s) for t in range(-(width - 1), width)]
            rows = _shift_or(rows, offs, s, ar)
    big = np.iinfo(np.int64).max
    lo = np.where(rows, first[None, None, :], big).min(axis=2)
    hi = np.where(rows, last[None, None, :], -1).max(axis=2)
    return (hi - lo + 1).max(axis=1)


def _usable_bits(r: np.ndarray, half: int, smooth: np.ndarray, s: int, post_rows: np.ndarray,
                 first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """`_usable_rows` for maps of side <= 64: each unit's support is one uint64 (bit x:
    pixel x), so a tap is two shifts of (B, units) words instead of a (B, units, s) gather.
    Needs ``first``/``last`` non-decreasing (a unit's span is then set by its lowest and
    highest pixel), which the caller checks."""
    b, n = r.shape
    mask = np.uint64((1 << s) - 1)
    words = (post_rows.astype(np.uint64) << np.arange(s, dtype=np.uint64)).sum(axis=1,
                                                                               dtype=np.uint64)
    rows = np.ascontiguousarray(np.broadcast_to(words[None, :], (b, s)))

    def shifted(x: np.ndarray, o: np.ndarray) -> np.ndarray:
        a = np.abs(o)
        sh = np.minimum(a, 63).astype(np.uint64)[:, None]
        y = np.where((o >= 0)[:, None], (x << sh) & mask, x >> sh)
        return np.where((a < s)[:, None], y, np.uint64(0))  # |o| >= s: only padding

    for i in range(n - 1, -1, -1):
        new = np.zeros_like(rows)
        for j in range(-half, half + 1):
            new |= shifted(rows, j * r[:, i])
        rows = new
        if smooth[i]:
            ri = r[:, i]
            width = int(min(ri.max(), s))
            new = np.zeros_like(rows)
            for t in range(-(width - 1), width):
                new |= shifted(rows, np.where(np.abs(t) < ri, t, s))
            rows = new
    lo = np.log2(rows & (~rows + np.uint64(1))).astype(np.int64)  # lowest set bit (exact)
    hi = np.zeros(rows.shape, dtype=np.int64)
    v = rows.copy()
    for step in (32, 16, 8, 4, 2, 1):  # highest set bit by halving
        big = v >= np.uint64(1 << step)
        hi += np.where(big, step, 0)
        v = np.where(big, v >> np.uint64(step), v)
    return (last[hi] - first[lo] + 1).max(axis=1)


def _shift_or(rows: np.ndarray, offsets: list[np.ndarray], s: int, ar: np.ndarray) -> np.ndarray:
    """rows'[b, u, x] = OR over taps of rows[b, u, x - o_b] (inside [0, s))."""
    b = rows.shape[0]
    padded = np.zeros((b, rows.shape[1], 3 * s), dtype=bool)
    padded[:, :, s:2 * s] = rows
    out = np.zeros_like(rows)
    for o in offsets:
        idx = np.clip(ar[None, :] - o[:, None] + s, 0, 3 * s - 1)  # |o| >= s: lands in padding
        out |= np.take_along_axis(padded, np.broadcast_to(idx[:, None, :], rows.shape), axis=2)
    return out


def batch_crop(rates: np.ndarray, kernel: int, output_stride: int, h: int, w: int, *,
               rates_w: np.ndarray | None = None, smooth: bool | Sequence[bool] = False,
               backbone_stride: int | None = None, context: bool = False,
               context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES,
               chunk: int = 2048, bits: bool = True) -> BatchCrop:
    """`crop_fields`' numbers for many candidates of one kernel, output stride and depth
    (rows of ``rates``, stride-1 stacks); equal to `net_crop_report` row by row. ``smooth``:
    one flag for every layer or one per layer (a tail's layers are unsmoothed; residual
    paths change no tap and no support, so the tail needs nothing else)."""
    r_h = np.asarray(rates, dtype=np.int64)
    r_w = r_h if rates_w is None else np.asarray(rates_w, dtype=np.int64)
    if r_h.ndim != 2 or r_h.shape != r_w.shape or (r_h.size and min(r_h.min(), r_w.min()) < 1):
        raise ValueError(f"rates must be (batch, layers) arrays of ints >= 1, got {r_h.shape}")
    h, w = _check_size(h, "h"), _check_size(w, "w")
    sm = np.broadcast_to(np.asarray(smooth, dtype=bool), (r_h.shape[1],))
    one = Schedule((1,), (kernel,))
    full = net_ops(one, "h", output_stride, backbone_stride, context, context_rates)
    k = len(stem_plan(output_stride, backbone_stride))
    pre, post = full[:k], full[k + 1:]
    parts: dict[str, list[np.ndarray]] = {f: [] for f in BatchCrop.__dataclass_fields__}
    for a in range(0, r_h.shape[0], chunk):
        res = []
        for r, size in ((r_h[a:a + chunk], h), (r_w[a:a + chunk], w)):
            res.append(_batch_axis(r, kernel, sm, size, pre, post, bits))
        (ch, kh, fh, nh, lh, uh), (cw, kw, fw, nw, lw, uw) = res
        stack_dead = sum(((kh_ * kw_ - a_ * b_).sum(axis=1)
                          for a_, b_, kh_, kw_ in zip(ch, cw, kh, kw, strict=True)),
                         start=np.zeros(nh.shape, dtype=np.int64))
        fixed = sum(k1 * k2 - l1 * l2 for (k1, l1), (k2, l2) in zip(fh, fw, strict=True))
        for name, v in (("dead_taps", stack_dead), ("dead_taps_net", stack_dead + fixed),
                        ("rf_nominal_h", nh), ("rf_nominal_w", nw), ("rf_live_h", lh),
                        ("rf_live_w", lw), ("rf_usable_h", uh), ("rf_usable_w", uw)):
            parts[name].append(np.asarray(v, dtype=np.int64))
    return BatchCrop(**{f: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64))
                        for f, v in parts.items()})
