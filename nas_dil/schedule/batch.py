"""Vectorised scoring of many schedules at once (same depth, same kernel size).

Used by the search spaces (count, enumerate, filter) and the benchmarks. Exactness matches the
scalar functions; the tests compare them.

Work is layer-major: the (batch, layers) rates are transposed once into (layers, batch)
columns of the narrowest dtype that holds them, so every step runs over long contiguous rows.

Holes: coverage does not depend on layer order (Minkowski sums commute), so each row's rates
are sorted (a sorting network on the columns) and the rows reduced to distinct multisets,
ordered by support width, then lexicographically (one packed int64 sort). Each multiset's
support is composed layer by layer on bit-packed words (offsets 0 … (K-1)·Σr, 64 per
uint64, stored word-major so a per-multiset shift is a few broadcast ops over a block of
8192 multisets). Neighbours share sorted prefixes, so while distinct prefixes are few each is
composed once (a trie); the last layers run on every multiset in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BatchHDC",
    "BatchScores",
    "batch_hdc",
    "batch_holes_1d",
    "batch_m",
    "batch_rf",
    "score_batch",
]

# multisets per block of the bitset composition (measured best of 4k-16k on 2 cores), and
# the most uint64 words per block array (1 MB: stays in cache, and bounds memory for wide rates)
_CHUNK = 8192
_BLOCK_WORDS = 8192 * 16
# the n² compare-swaps of whole columns beat np.sort per row up to ~128 layers (measured);
# past this bound np.sort's n·log n is the safer choice
_SORT_NETWORK_MAX_LAYERS = 64


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


def _layer_major(r: np.ndarray) -> np.ndarray:
    """(layers, batch) copy of validated rates, uint8/uint16 when they fit (less to move)."""
    top = int(r.max()) if r.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int64
    # narrowing first makes the transposing copy move 1-2 bytes per rate, not 8
    return np.ascontiguousarray(r.astype(dtype, copy=False).T)


def _rf(cols: np.ndarray, kernel: int) -> np.ndarray:
    return 1 + (kernel - 1) * cols.sum(axis=0, dtype=np.int64)


def _m(cols: np.ndarray) -> np.ndarray:
    """M recursion on layer-major columns, returned (batch, layers) like `batch_m`."""
    # M_i <= max(M_{i+1}, 2 r_i) <= 2·max r, and |M - 2r| too: a signed type twice as wide
    # as the columns never wraps (int64 columns: the same int64 operations as before)
    work = {np.dtype(np.uint8): np.int16, np.dtype(np.uint16): np.int32}.get(cols.dtype, np.int64)
    m = np.empty(cols.shape, dtype=np.int64)
    nxt = cols[-1].astype(work)
    m[-1] = nxt
    tmp = np.empty(cols.shape[1], dtype=work)
    for i in range(cols.shape[0] - 2, -1, -1):
        ri = cols[i].astype(work)
        np.add(ri, ri, out=tmp)
        np.subtract(nxt, tmp, out=tmp)
        np.abs(tmp, out=tmp)  # max(a-2r, 2r-a) = |a-2r|
        np.maximum(tmp, ri, out=nxt)
        m[i] = nxt
    return m.T


def batch_rf(rates: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Total RF per schedule (stride-1 stacks): 1 + (K-1)·Σ r."""
    return _rf(_layer_major(_as_rates(rates)), kernel)


def batch_m(rates: np.ndarray) -> np.ndarray:
    """M_1 … M_n per row (the HDC recursion), shape (batch, layers)."""
    return _m(_layer_major(_as_rates(rates)))


def _sort_columns(cols: np.ndarray) -> np.ndarray:
    """Sort each row's rates (each column of the layer-major array) ascending."""
    n = cols.shape[0]
    if n > _SORT_NETWORK_MAX_LAYERS:
        return np.ascontiguousarray(np.sort(cols.T, axis=1).T)
    out = cols.copy()
    lo = np.empty(cols.shape[1], dtype=cols.dtype)
    # odd-even transposition network: n rounds of independent compare-swaps of whole rows
    for rnd in range(n):
        for i in range(rnd % 2, n - 1, 2):
            np.minimum(out[i], out[i + 1], out=lo)
            np.maximum(out[i], out[i + 1], out=out[i + 1])
            out[i] = lo
    return out


def _unique_multisets(srt: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sorted rows (layer-major) and each row's index in them.

    Distinct rows come ordered by ``group`` (a function of the multiset, >= 0), then
    lexicographically: neighbours share prefixes and, grouped by width, bitset sizes.
    """
    n, b = srt.shape
    base = int(srt.max()) + 1
    span = (int(group.max()) + 1) * base**n
    if span >= 2**62:  # no int64 key per multiset: let numpy compare whole rows
        uniq, inverse = np.unique(srt.T, axis=0, return_inverse=True)
        return np.ascontiguousarray(uniq.T), inverse.ravel()
    key = group.astype(np.int64)
    for col in srt:
        key *= base
        key += col
    idx_bits = max(1, (b - 1).bit_length())
    if span <= 2 ** (63 - idx_bits):
        # key and row index packed in one int64: a plain sort is much faster than argsort
        packed = np.sort((key << idx_bits) | np.arange(b, dtype=np.int64))
        order = packed & ((1 << idx_bits) - 1)
        skey = packed >> idx_bits
    else:
        order = np.argsort(key, kind="stable")
        skey = key[order]
    new = np.empty(b, dtype=bool)
    new[0] = True
    np.not_equal(skey[1:], skey[:-1], out=new[1:])
    inverse = np.empty(b, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    first = order[new]
    return np.stack([np.take(col, first) for col in srt]), inverse


def _shift_or(y: np.ndarray, s: np.ndarray, z: np.ndarray, spill: np.ndarray) -> None:
    """y |= y shifted towards higher offsets by s[col] bits; y is (words, cols) uint64.

    z and spill are scratch arrays of y's shape.
    """
    q = s >> 6
    b = (s & 63).view(np.uint64)  # s >= 0, so the int64 bits are the uint64 value
    np.left_shift(y, b, out=z)
    # spill-over into the next word (>> 64 gives 0 in numpy)
    np.right_shift(y[:-1], np.uint64(64) - b, out=spill[:-1])
    z[1:] |= spill[:-1]
    far = np.flatnonzero(q)
    if far.size:  # shifts of 64+ bits also move whole words; rare for a space's rates
        qs = q[far]
        qmax = int(qs.max())
        sub = np.concatenate([np.zeros((qmax, far.size), dtype=np.uint64), z[:, far]])
        rows = np.arange(y.shape[0])[:, None] - qs[None, :] + qmax
        z[:, far] = np.take_along_axis(sub, rows, axis=0)
    y |= z


def _compose_layer(bits: np.ndarray, rates: np.ndarray, kernel: int,
                   z: np.ndarray, spill: np.ndarray) -> None:
    """bits |= bits shifted by r, 2r, …, (K-1)·r, per column (in place)."""
    # doubling: taps [0, L) ∪ ([0, L) + step·r) = [0, L + step) for step <= L
    taps = 1
    while taps < kernel:
        step = min(taps, kernel - taps)
        _shift_or(bits, step * rates, z, spill)
        taps += step


def _support_popcount(cols: np.ndarray, kernel: int, share_prefixes: bool) -> np.ndarray:
    """Offsets per axis that reach the unit, for each column of layer-major rates (exact).

    Offsets are shifted to 0 … (K-1)·Σr so every tap shift is upwards. With
    ``share_prefixes``, runs of neighbours with equal leading rates are composed once (any
    column order stays exact; `_unique_multisets`' order makes such runs long).
    """
    n, total = cols.shape
    k1 = kernel - 1
    seen = np.empty(total, dtype=np.int64)
    widest = k1 * int(cols.sum(axis=0, dtype=np.int64).max()) // 64 + 1
    chunk = max(1, min(_CHUNK, _BLOCK_WORDS // widest))
    for a in range(0, total, chunk):
        c = cols[:, a:a + chunk].astype(np.int64)
        m = c.shape[1]
        words = k1 * int(c.sum(axis=0).max()) // 64 + 1  # the widest column's support
        scratch = np.empty((2, words * m), dtype=np.uint64)
        bits = np.ones((1, 1), dtype=np.uint64)  # the root: offset 0 only
        extent = np.zeros(1, dtype=np.int64)  # highest reachable offset per node
        node = np.zeros(m, dtype=np.int64)  # each column's node at the last composed layer
        new = np.zeros(m, dtype=bool)
        new[0] = True
        j = 0
        # shared phase: one node per distinct prefix, while prefixes are much fewer than
        # columns (copying a parent's words to its children is a gather: several ORs' time)
        while share_prefixes and j < n:
            new[1:] |= c[j, 1:] != c[j, :-1]
            starts = np.flatnonzero(new)
            if 2 * starts.size > m:
                break
            parent = node[starts]
            rates = c[j, starts]
            ext = extent[parent] + k1 * rates
            w = int(ext.max()) // 64 + 1
            size = w * starts.size
            nxt = np.empty(size, dtype=np.uint64).reshape(w, starts.size)
            np.take(bits, parent, axis=1, out=nxt[: bits.shape[0]])
            nxt[bits.shape[0]:] = 0
            _compose_layer(nxt, rates, kernel, scratch[0][:size].reshape(nxt.shape),
                           scratch[1][:size].reshape(nxt.shape))
            bits, extent = nxt, ext
            node = np.cumsum(new) - 1
            j += 1
        # per-column phase: one gather, then every layer in place on the leading words
        full = np.empty((words, m), dtype=np.uint64)
        np.take(bits, node, axis=1, out=full[: bits.shape[0]])
        full[bits.shape[0]:] = 0
        ext = extent[node]
        z, spill = scratch[0].reshape(words, m), scratch[1].reshape(words, m)
        w = bits.shape[0]
        for jj in range(j, n):
            ext += k1 * c[jj]
            w = int(ext.max()) // 64 + 1
            _compose_layer(full[:w], c[jj], kernel, z[:w], spill[:w])
        # per-column sums of at most 64·w fit uint32 and reduce faster than int64
        seen[a:a + m] = np.bitwise_count(full[:w]).sum(axis=0, dtype=np.uint32)
    return seen


def _seen_1d(cols: np.ndarray, kernel: int, rf: np.ndarray, dedupe: bool) -> np.ndarray:
    """Offsets per axis that reach the unit, per row."""
    if cols.shape[1] == 0:
        return np.zeros(0, dtype=np.int64)
    if not dedupe:
        return _support_popcount(cols, kernel, share_prefixes=False)
    # grouped by support words ((RF-1)//64): a block of multisets then has similar widths
    uniq, inverse = _unique_multisets(_sort_columns(cols), (rf - 1) // 64)
    return _support_popcount(uniq, kernel, share_prefixes=True)[inverse]


def batch_holes_1d(rates: np.ndarray, kernel: int = 3, dedupe: bool = True) -> np.ndarray:
    """Holes per axis inside the RF for each row (0 ⇔ gridding-free)."""
    _check_kernel(kernel)
    cols = _layer_major(_as_rates(rates))
    rf = _rf(cols, kernel)
    return rf - _seen_1d(cols, kernel, rf, dedupe)


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
    cols = _layer_major(r)
    rf = _rf(cols, kernel)
    m = _m(cols)
    rule1 = m[:, 1] <= kernel if r.shape[1] > 1 else np.ones(r.shape[0], dtype=bool)
    seen = _seen_1d(cols, kernel, rf, dedupe=True)
    holes_1d = rf - seen
    rf2, seen2 = rf * rf, seen * seen
    return BatchScores(
        rf=rf,
        m=m,
        hdc_rule1=rule1,
        holes_1d=holes_1d,
        holes=rf2 - seen2,
        coverage=seen2 / rf2,
        gridding_free=holes_1d == 0,
    )


@dataclass(frozen=True)
class BatchHDC:
    """`hdc_report`'s verdicts for every row (stride-1 stacks), as (B,) bool arrays."""

    rule1: np.ndarray  # whole schedule: M_2 <= K
    rule1_groups: np.ndarray  # within every sawtooth group
    rule2: np.ndarray  # no group's rates share a factor > 1
    rule3: np.ndarray  # rates split into rising groups of length >= 2
    passed: np.ndarray  # rules 1 (per group), 2 and 3: `HDCReport.passed`


def batch_hdc(rates: np.ndarray, kernel: int = 3) -> BatchHDC:
    """The HDC rules (`nas_dil.schedule.hdc`) for every row of a (batch, layers) rate array.

    Groups are the maximal strictly rising runs of a row; each rule is evaluated layer by
    layer on whole columns (a group's gcd forwards, its M recursion backwards).
    """
    _check_kernel(kernel)
    r = _as_rates(rates)
    b, n = r.shape
    cols = r.T  # (layers, batch)
    start = np.ones((n, b), dtype=bool)  # layer i opens a group
    start[1:] = cols[1:] <= cols[:-1]
    end = np.ones((n, b), dtype=bool)  # layer i closes one
    end[:-1] = start[1:]
    rule3 = ~(start & end).any(axis=0) if n > 1 else np.zeros(b, dtype=bool)
    g = cols[0]  # running gcd within the group
    rule2 = ~(end[0] & (g > 1))
    for i in range(1, n):
        g = np.where(start[i], cols[i], np.gcd(g, cols[i]))
        rule2 &= ~(end[i] & (g > 1))
    # M recursion within each group, from its last layer back; M_2 of a group opened at
    # layer i is mg[i + 1]
    mg = np.empty((n, b), dtype=np.int64)
    mg[-1] = cols[-1]
    for i in range(n - 2, -1, -1):
        mg[i] = np.where(end[i], cols[i], np.maximum(np.abs(mg[i + 1] - 2 * cols[i]), cols[i]))
    second = start[:-1] & ~start[1:]  # a group opened at i has a second layer i+1
    rule1_groups = ~(second & (mg[1:] > kernel)).any(axis=0)
    rule1 = _m(_layer_major(r))[:, 1] <= kernel if n > 1 else np.ones(b, dtype=bool)
    return BatchHDC(rule1=rule1, rule1_groups=rule1_groups, rule2=rule2, rule3=rule3,
                    passed=rule1_groups & rule2 & rule3)
