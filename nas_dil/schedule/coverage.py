"""Exact coverage of a dilated stack: which input pixels reach one output unit, and how often.

Per axis, the offsets that reach a unit form the Minkowski sum of the layers' tap sets; the
number of paths from each offset is the 1-D convolution of the layers' tap indicators. For
square kernels the 2-D count map of a plain stack is the outer product of the two axes' 1-D
counts, so a 2-D hole exists exactly where either axis has a zero. A zero inside the RF box is
a hole: the unit never sees that pixel (the gridding effect).

Variants (``Schedule`` fields; docs/theory.md):
- a smoothed layer's per-axis vector is its dilated taps convolved with a (2r-1)-wide box;
- a residual layer (``residual=True``: every layer but the ``tail``; or one flag per layer,
  as the whole net needs, `netcost.net_count_map`) computes x + f(x): its
  per-axis vector is δ + taps and its 2-D map δ + taps_h ⊗ taps_w, which is NOT an outer
  product, so `count_map_2d` composes residual stacks in 2-D. For odd kernels the centre tap
  already sits at offset 0, so supports and holes do not depend on ``residual``;
- per-axis rates: each axis has its own 1-D vectors (``Schedule.axis``).

Bounded work for any rate (``MAX_RF`` caps the RF at 2**40): up to ``DENSE_MAX`` offsets an
axis is composed densely (O(RF·K) per layer); wider axes are composed on their distinct
offsets (sparse), refused with one line once a step would hold more than ``MAX_OFFSETS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import log2

import numpy as np

from nas_dil.schedule.rf import jumps, receptive_field
from nas_dil.schedule.types import Schedule, ScheduleError

__all__ = [
    "DENSE_MAX",
    "MAP_MAX",
    "MAX_OFFSETS",
    "Coverage",
    "count_map_2d",
    "counts_1d",
    "coverage",
    "layer_taps",
    "sparse_counts_1d",
    "support_1d",
]

DENSE_MAX = 1 << 20  # widest RF (per axis) composed as a dense vector: 8 MB of int64
MAX_OFFSETS = 1 << 22  # most (offset, tap) pairs one sparse step may hold: ~100 MB peak
MAP_MAX = 4097  # widest RF a 2-D count map is built for (RF² cells of 8 bytes: 134 MB)


def layer_taps(rate: int, kernel: int) -> np.ndarray:
    """Indicator of one layer's taps: ones every ``rate`` pixels over (K-1)·r + 1 pixels."""
    taps = np.zeros((kernel - 1) * rate + 1, dtype=np.int64)
    taps[::rate] = 1
    return taps


Residual = bool | Sequence[bool]


def _res_flags(s: Schedule, residual: Residual) -> list[bool]:
    """Which layers compute x + f(x): ``True`` means every layer but the tail."""
    n = len(s)
    if isinstance(residual, bool | np.bool_):
        return [bool(residual) and i < n - s.tail for i in range(n)]
    flags = [bool(f) for f in residual]
    if len(flags) != n:
        raise ValueError(f"residual has {len(flags)} flags for {n} layers")
    return [f and i < n - s.tail for i, f in enumerate(flags)]


# -- one axis: each layer as sparse (offset, count) pairs, centred on 0 ----------------------

def _layer_vectors(s: Schedule, residual: Residual) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, the offsets (stack-input px, centred, sorted) and path counts of one axis."""
    out = []
    res = _res_flags(s, residual)
    for i, (r, k, j) in enumerate(zip(s.rates, s.kernels, jumps(s).tolist(), strict=True)):
        e = r * j
        offs = (np.arange(k, dtype=np.int64) - (k - 1) // 2) * e
        cnt = np.ones(k, dtype=np.int64)
        if s.smoothed(i) and r > 1:  # box of 2r-1 input pixels (J apart) before the taps
            box = (np.arange(2 * r - 1, dtype=np.int64) - (r - 1)) * j
            offs, cnt = _sum_sets(offs, cnt, box, np.ones(box.size, dtype=np.int64))
        if res[i]:  # x + f(x): one more path at offset 0
            cnt = cnt.copy()
            cnt[np.searchsorted(offs, 0)] += 1  # odd kernels: 0 is always a tap
        out.append((offs, cnt))
    return out


def _sum_sets(a: np.ndarray, ca: np.ndarray, b: np.ndarray,
              cb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minkowski sum of two sparse vectors with path counts multiplied (a 1-D convolution)."""
    if a.size * b.size > MAX_OFFSETS:
        raise ScheduleError(
            f"coverage needs {a.size * b.size} (offset, tap) pairs in one step (limit "
            f"{MAX_OFFSETS}): the receptive field is too wide and too dense to analyse exactly")
    offs = (a[:, None] + b[None, :]).ravel()
    cnt = (ca[:, None] * cb[None, :]).ravel()
    order = np.argsort(offs, kind="stable")
    offs, cnt = offs[order], cnt[order]
    starts = np.flatnonzero(np.concatenate(([True], offs[1:] != offs[:-1])))
    return offs[starts], np.add.reduceat(cnt, starts)


def _count_dtype(s: Schedule, residual: Residual, power: int = 1) -> type:
    # the largest path count is at most Π (paths a layer offers); keep it (or its square)
    # below 2**62, else float64
    if not (residual is True or (residual is not False and any(residual)) or s.smooth):
        return np.int64 if power * sum(log2(k) for k in s.kernels) < 62 else np.float64
    bits = 0.0
    res = _res_flags(s, residual)
    for i, (r, k) in enumerate(zip(s.rates, s.kernels, strict=True)):
        per = k * (2 * r - 1 if s.smoothed(i) else 1) + (1 if res[i] else 0)
        bits += log2(per)
    return np.int64 if power * bits < 62 else np.float64


def _dense(s: Schedule, residual: Residual, dtype: type) -> np.ndarray:
    """Per-axis path counts over -R … +R (length RF), composed layer by layer: one shifted
    add per tap (O(RF·K)); a smoothing box as a moving sum; the identity path as one more add.
    ``dtype`` bool gives the support (adds of bools are ORs)."""
    out: np.ndarray = np.ones(1, dtype=dtype)
    res = _res_flags(s, residual) if residual is not False else [False] * len(s)
    jump = 1
    for i, (r, k, st) in enumerate(zip(s.rates, s.kernels, s.strides, strict=True)):
        src = out
        if s.smoothed(i):  # the (2r-1)-wide box first, J apart
            out = _box(out, 2 * r - 1, jump, dtype)
        e = r * jump
        n = out.size
        nxt: np.ndarray = np.zeros(n + (k - 1) * e, dtype=dtype)
        for j in range(k):
            nxt[j * e:j * e + n] += out
        if res[i]:  # x + f(x): the input itself, centred
            c = (nxt.size - src.size) // 2
            nxt[c:c + src.size] += src
        out = nxt
        jump *= st
    return out


def _box(x: np.ndarray, width: int, step: int, dtype: type) -> np.ndarray:
    """x convolved with ``width`` ones ``step`` apart (a moving sum when step is 1)."""
    n = x.size
    out: np.ndarray = np.zeros(n + (width - 1) * step, dtype=dtype)
    if step != 1:
        for t in range(width):
            out[t * step:t * step + n] += x
        return out
    acc = np.int64 if dtype is bool else dtype
    cs: np.ndarray = np.concatenate((np.zeros(1, dtype=acc), np.cumsum(x, dtype=acc)))
    idx = np.arange(out.size)
    seg = cs[np.minimum(idx + 1, n)] - cs[np.maximum(idx + 1 - width, 0)]
    return seg > 0 if dtype is bool else seg.astype(dtype, copy=False)


def _sparse(s: Schedule, residual: Residual, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    offs = np.zeros(1, dtype=np.int64)
    cnt: np.ndarray = np.ones(1, dtype=dtype)
    for lo, lc in _layer_vectors(s, residual):
        offs, cnt = _sum_sets(offs, cnt, lo, lc.astype(dtype))
    return offs, cnt


def _rf(s: Schedule) -> int:
    """``receptive_field`` in Python integers (cheaper for the few layers of a stack)."""
    rf, jump = 1, 1
    for i, (r, k, st) in enumerate(zip(s.rates, s.kernels, s.strides, strict=True)):
        rf += ((k - 1) * r + (2 * (r - 1) if s.smooth and s.smoothed(i) else 0)) * jump
        jump *= st
    return rf


def _check_dense(s: Schedule) -> int:
    rf = _rf(s)
    if rf > DENSE_MAX:
        raise ScheduleError(
            f"RF {rf} px per axis: wider than the {DENSE_MAX} px a dense count vector is built "
            "for (coverage() and sparse_counts_1d() still answer)")
    return rf


def counts_1d(s: Schedule, residual: Residual = False) -> np.ndarray:
    """Path counts per offset along the height, -R … +R (length RF). int64; float64 if the
    counts could overflow. ``residual``: every layer but the tail computes x + f(x) (True),
    or one flag per layer."""
    _check_dense(s)
    return _dense(s, residual, _count_dtype(s, residual))


def sparse_counts_1d(s: Schedule, residual: Residual = False) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, counts) of the offsets that reach the unit along the height, centred on 0
    and sorted; for any RF up to ``MAX_RF`` whose distinct offsets stay few."""
    dtype = _count_dtype(s, residual)
    if receptive_field(s) <= DENSE_MAX:
        c = _dense(s, residual, dtype)
        offs = np.flatnonzero(c)
        return offs - c.size // 2, c[offs]
    return _sparse(s, residual, dtype)


def support_1d(s: Schedule) -> np.ndarray:
    """Boolean support per offset along the height (exact at any depth: no overflow)."""
    _check_dense(s)
    return _dense(s, False, bool)


def count_map_2d(s: Schedule, residual: Residual = False) -> np.ndarray:
    """RF_h×RF_w path-count map; float64 where int64 could overflow.

    Plain stacks: the outer product of the two axes' counts. Residual stacks compose each
    layer's δ + taps_h ⊗ taps_w in 2-D (not separable)."""
    rf_h, rf_w = receptive_field(s), receptive_field(s.axis("w"))
    if max(rf_h, rf_w) > MAP_MAX:
        raise ScheduleError(f"RF {rf_h}×{rf_w} px: a 2-D count map is built up to "
                            f"{MAP_MAX}×{MAP_MAX}")
    sh, sw = s.axis("h"), s.axis("w")
    res = _res_flags(s, residual)
    if not any(res):
        ch, cw = counts_1d(sh), counts_1d(sw)
        if _count_dtype(sh, False, 2) is np.float64 or _count_dtype(sw, False, 2) is np.float64:
            ch, cw = ch.astype(np.float64), cw.astype(np.float64)
        return np.outer(ch, cw)
    dtype = np.int64 if (_count_dtype(sh, res, 2) is np.int64
                         and _count_dtype(sw, res, 2) is np.int64) else np.float64
    m: np.ndarray = np.ones((1, 1), dtype=dtype)
    for i, ((oh, chh), (ow, cww)) in enumerate(zip(
            _layer_vectors(sh, False), _layer_vectors(sw, False), strict=True)):
        lo_h, lo_w = int(oh[0]), int(ow[0])
        rows: np.ndarray = np.zeros((m.shape[0] + int(oh[-1]) - lo_h, m.shape[1]), dtype=dtype)
        for o, c in zip(oh.tolist(), chh.tolist(), strict=True):
            rows[o - lo_h:o - lo_h + m.shape[0]] += m * dtype(c)
        nxt: np.ndarray = np.zeros((rows.shape[0], m.shape[1] + int(ow[-1]) - lo_w), dtype=dtype)
        for o, c in zip(ow.tolist(), cww.tolist(), strict=True):
            nxt[:, o - lo_w:o - lo_w + m.shape[1]] += rows * dtype(c)
        if res[i]:  # the identity path: m itself, at offset (0, 0)
            nxt[-lo_h:-lo_h + m.shape[0], -lo_w:-lo_w + m.shape[1]] += m
        m = nxt
    return m


def _largest_run(zero: np.ndarray) -> int:
    if not zero.any():
        return 0
    padded = np.concatenate(([0], zero.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def _seen_and_gap(s: Schedule) -> tuple[int, int, int]:
    """(RF, offsets seen, largest gap) along the height of ``s``."""
    rf = _rf(s)
    if rf <= DENSE_MAX:
        sup = _dense(s, False, bool)
        return rf, int(np.count_nonzero(sup)), _largest_run(~sup)
    offs, _ = _sparse(s, False, bool)
    gap = int(np.diff(offs).max()) - 1 if offs.size > 1 else 0
    return rf, int(offs.size), gap


@dataclass(frozen=True)
class Coverage:
    rf: int  # along the height, stack-input pixels
    seen_1d: int  # offsets along the height that reach the unit
    holes_1d: int  # offsets along the height inside the RF that never reach it
    holes: int  # 2-D holes inside the RF_h×RF_w box
    coverage: float  # seen fraction of the RF box, in [0, 1]
    largest_gap: int  # longest run of unseen offsets along either axis
    gridding_free: bool  # no holes at all
    rf_w: int = 0  # the width's RF, seen offsets and holes (= the height's when square)
    seen_w: int = 0
    holes_w: int = 0


def coverage(s: Schedule) -> Coverage:
    rf, seen, gap = _seen_and_gap(s)
    rf_w, seen_w, gap_w = (rf, seen, gap) if s.square else _seen_and_gap(s.axis("w"))
    holes_1d, holes_w = rf - seen, rf_w - seen_w
    return Coverage(
        rf=rf,
        seen_1d=seen,
        holes_1d=holes_1d,
        holes=rf * rf_w - seen * seen_w,
        coverage=(seen * seen_w) / (rf * rf_w),
        largest_gap=max(gap, gap_w),
        gridding_free=holes_1d == 0 and holes_w == 0,
        rf_w=rf_w,
        seen_w=seen_w,
        holes_w=holes_w,
    )
