"""Vectorised scoring of many schedules at once (same depth, same kernel size).

Used by the search spaces (count, enumerate, filter) and the benchmarks. Exactness matches the
scalar functions; the tests compare them.

Holes are computed on bit-packed supports (one uint64 word per 64 offsets) with per-row
shifts. Coverage does not depend on layer order (Minkowski sums commute), so rows are sorted
and deduplicated first: a search space's schedules are mostly permutations of far fewer
multisets, and each multiset is composed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BatchScores", "batch_holes_1d", "batch_m", "batch_rf", "score_batch"]


def _as_rates(rates: np.ndarray | list[list[int]]) -> np.ndarray:
    arr = np.asarray(rates, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"rates must be a (batch, layers) array, got shape {arr.shape}")
    if arr.size and arr.min() < 1:
        raise ValueError(f"rates must be >= 1; found {int(arr.min())}")
    return arr


def _check_kernel(kernel: int) -> None:
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"{kernel=}: must be odd and >= 1")


def batch_rf(rates: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Total RF per schedule (stride-1 stacks): 1 + (K-1)·Σ r."""
    return 1 + (kernel - 1) * _as_rates(rates).sum(axis=1)


def batch_m(rates: np.ndarray) -> np.ndarray:
    """M_1 … M_n per row (the HDC recursion), shape (batch, layers)."""
    # layer-major layout: each step reads and writes contiguous rows (3× faster than columns)
    r = np.ascontiguousarray(_as_rates(rates).T)
    m = np.empty_like(r)
    m[-1] = r[-1]
    for i in range(r.shape[0] - 2, -1, -1):
        nxt, ri = m[i + 1], r[i]
        np.maximum(np.abs(nxt - 2 * ri), ri, out=m[i])  # max(a-2r, 2r-a) = |a-2r|
    return m.T


def _shift(bits: np.ndarray, s: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Shift each row's bit string towards higher offsets by s[row] bits (s may be < 0)."""
    q, b = np.divmod(np.abs(s), 64)
    b = b.astype(np.uint64)[:, None]
    sign = np.where(s >= 0, 1, -1)[:, None]
    n_words = bits.shape[1]
    # word w of the result takes word w - q (and its neighbour for the spill-over bits)
    src = words[None, :] - sign * q[:, None]
    nb = src - sign
    lo = np.where((src >= 0) & (src < n_words),
                  np.take_along_axis(bits, np.clip(src, 0, n_words - 1), 1), np.uint64(0))
    hi = np.where((nb >= 0) & (nb < n_words),
                  np.take_along_axis(bits, np.clip(nb, 0, n_words - 1), 1), np.uint64(0))
    up = sign > 0
    main = np.where(up, lo << b, lo >> b)
    spill_shift = np.uint64(64) - b
    spill = np.where(b == 0, np.uint64(0),
                     np.where(up, hi >> (spill_shift & np.uint64(63)),
                              hi << (spill_shift & np.uint64(63))))
    return main | spill


def _support_popcount(rates: np.ndarray, kernel: int) -> np.ndarray:
    """Number of offsets per axis that reach the unit, for each row (exact)."""
    half = (kernel - 1) // 2
    extent = half * rates.sum(axis=1)  # R per row
    centre = int(extent.max())
    n_words = (2 * centre + 1 + 63) // 64
    bits = np.zeros((rates.shape[0], n_words), dtype=np.uint64)
    bits[:, centre // 64] = np.uint64(1) << np.uint64(centre % 64)
    words = np.arange(n_words)
    for j in range(rates.shape[1]):
        acc = bits.copy()
        for t in range(1, half + 1):
            acc |= _shift(bits, t * rates[:, j], words)
            acc |= _shift(bits, -t * rates[:, j], words)
        bits = acc
    return np.bitwise_count(bits).sum(axis=1).astype(np.int64)


def batch_holes_1d(rates: np.ndarray, kernel: int = 3, dedupe: bool = True) -> np.ndarray:
    """Holes per axis inside the RF for each row (0 ⇔ gridding-free)."""
    _check_kernel(kernel)
    r = _as_rates(rates)
    rf = batch_rf(r, kernel)
    if r.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if not dedupe:
        return rf - _support_popcount(r, kernel)
    srt = np.sort(r, axis=1)
    base = int(srt.max()) + 1
    if r.shape[1] * np.log2(base) < 62:  # one int64 key per multiset
        key = np.zeros(r.shape[0], dtype=np.int64)
        for col in np.ascontiguousarray(srt.T):
            key *= base
            key += col
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(srt, axis=0, return_index=True, return_inverse=True)
    seen = _support_popcount(srt[first], kernel)
    return rf - seen[inverse.ravel()]


@dataclass(frozen=True)
class BatchScores:
    rf: np.ndarray  # (B,) per-axis RF
    m: np.ndarray  # (B, n) M_1 … M_n
    hdc_rule1: np.ndarray  # (B,) bool, whole-schedule M_2 <= K
    holes_1d: np.ndarray  # (B,) unseen offsets per axis
    holes: np.ndarray  # (B,) 2-D holes inside the RF box
    coverage: np.ndarray  # (B,) seen fraction of the RF box
    gridding_free: np.ndarray  # (B,) bool


def score_batch(rates: np.ndarray, kernel: int = 3) -> BatchScores:
    """RF, M, rule 1, holes and coverage for every row of a (batch, layers) rate array."""
    _check_kernel(kernel)
    r = _as_rates(rates)
    rf = batch_rf(r, kernel)
    m = batch_m(r)
    rule1 = m[:, 1] <= kernel if r.shape[1] > 1 else np.ones(r.shape[0], dtype=bool)
    holes_1d = batch_holes_1d(r, kernel)
    seen = rf - holes_1d
    return BatchScores(
        rf=rf,
        m=m,
        hdc_rule1=rule1,
        holes_1d=holes_1d,
        holes=rf * rf - seen * seen,
        coverage=(seen * seen) / (rf * rf),
        gridding_free=holes_1d == 0,
    )
