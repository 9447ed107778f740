"""Exact coverage of a dilated stack: which input pixels reach one output unit, and how often.

Per axis, the offsets that reach a unit form the Minkowski sum of the layers' tap sets; the
number of paths from each offset is the 1-D convolution of the layers' tap indicators. For
square kernels the 2-D count map is the outer product of the 1-D counts with themselves, so a
2-D hole exists exactly where either axis has a zero. A zero inside the RF box is a hole: the
unit never sees that pixel (the gridding effect).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import log2

import numpy as np

from nas_dil.schedule.rf import effective_rates
from nas_dil.schedule.types import Schedule

__all__ = ["Coverage", "count_map_2d", "counts_1d", "coverage", "layer_taps", "support_1d"]


def layer_taps(rate: int, kernel: int) -> np.ndarray:
    """Indicator of one layer's taps: ones every ``rate`` pixels over (K-1)·r + 1 pixels."""
    taps = np.zeros((kernel - 1) * rate + 1, dtype=np.int64)
    taps[::rate] = 1
    return taps


def _fits_int64(s: Schedule, power: int = 1) -> bool:
    # the largest path count is at most Π K_i; keep it (or its square) below 2**62
    return power * sum(log2(k) for k in s.kernels) < 62


def counts_1d(s: Schedule) -> np.ndarray:
    """Path counts per offset, -R … +R (length RF). int64; float64 if Π K_i would overflow."""
    dtype = np.int64 if _fits_int64(s) else np.float64
    out = np.ones(1, dtype=dtype)
    for r, k in zip(effective_rates(s).tolist(), s.kernels, strict=True):
        out = np.convolve(out, layer_taps(r, k).astype(dtype))
    return out


def support_1d(s: Schedule) -> np.ndarray:
    """Boolean support per offset (exact at any depth: no counts, no overflow)."""
    out = np.ones(1, dtype=bool)
    for r, k in zip(effective_rates(s).tolist(), s.kernels, strict=True):
        out = np.convolve(out.astype(np.int64), layer_taps(r, k)) > 0
    return out


def count_map_2d(s: Schedule) -> np.ndarray:
    """RF×RF path-count map (outer product); float64 where int64 could overflow."""
    c = counts_1d(s)
    if not _fits_int64(s, power=2):
        c = c.astype(np.float64)
    return np.outer(c, c)


def _largest_run(zero: np.ndarray) -> int:
    if not zero.any():
        return 0
    padded = np.concatenate(([0], zero.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


@dataclass(frozen=True)
class Coverage:
    rf: int  # per axis, stack-input pixels
    seen_1d: int  # offsets per axis that reach the unit
    holes_1d: int  # offsets per axis inside the RF that never reach it
    holes: int  # 2-D holes inside the RF×RF box
    coverage: float  # seen fraction of the RF×RF box, in [0, 1]
    largest_gap: int  # longest run of unseen offsets along one axis
    gridding_free: bool  # no holes at all


def coverage(s: Schedule) -> Coverage:
    sup = support_1d(s)
    rf = int(sup.size)
    seen = int(sup.sum())
    holes_1d = rf - seen
    return Coverage(
        rf=rf,
        seen_1d=seen,
        holes_1d=holes_1d,
        holes=rf * rf - seen * seen,
        coverage=(seen * seen) / (rf * rf),
        largest_gap=_largest_run(~sup),
        gridding_free=holes_1d == 0,
    )
