"""The effective RF at the training crop (after Luo, Li, Urtasun & Zemel, NeurIPS 2016). Pure numpy.

For a linear stack with uniform weights the gradient of one output unit with respect to the
input is the path-count map (docs/theory.md, `coverage.count_map_2d`); it concentrates near
the centre (a Gaussian whose radius grows like √depth) while the theoretical RF grows like
depth. Here the map is the whole net's (stem, stack, head: `crop.net_ops`, image px) with the
taps that are dead at the training crop removed (`crop.live_taps`: a tap that reads only
padding from every output position carries no gradient). Per axis the counts are exact
integers (float64: exact below 2^53 paths); the 2-D map is their outer product (square
kernels, a 2-D tap is live iff both of its axes' taps are).

``erf``: the side, in image px, of the smallest square window centred on the unit (Chebyshev
radius ρ: side 2ρ + 1) that holds `ERF_MASS` (95 %) of the map's mass. It is not capped at the
crop: unlike the usable RF it keeps separating schedules after every one of them covers the
crop. `erf_of_counts` is the rule, `net_erf` one stem net (any schedule: smoothing, per-axis
rates, residual stack), `batch_erf` many plain stacks at once, `table_erf` a net given as a
layer table (torchvision backbones).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas_dil.schedule.crop import ConvOp, _sizes, live_taps, net_ops
from nas_dil.schedule.layertable import IMAGE, LayerTable, _is_global, _lengths, _out_len
from nas_dil.schedule.netcost import DEFAULT_CONTEXT_RATES, stem_plan
from nas_dil.schedule.types import Schedule

__all__ = ["ERF_MASS", "Counts", "batch_erf", "erf_of_counts", "net_counts", "net_erf",
           "table_erf"]

ERF_MASS = 0.95  # share of the count map's mass inside the ERF window (Luo et al.)
_TOL = 1e-12  # relative slack for the float comparison (the counts themselves are exact)

Counts = tuple[int, np.ndarray]  # (offset of element 0, path counts), one axis, image px


def _taps(offsets: Sequence[int] | np.ndarray, identity: bool = False) -> Counts:
    """The counts of one layer: a path through each live tap (and x itself: residual)."""
    o = np.asarray(list(offsets) + ([0] if identity else []), dtype=np.int64)
    lo = int(o.min())
    v = np.zeros(int(o.max()) - lo + 1, dtype=np.float64)
    np.add.at(v, o - lo, 1.0)
    return lo, v


def _compose(a: Counts, b: Counts) -> Counts:
    """Paths through a then b (a 1-D convolution; offsets add)."""
    return a[0] + b[0], np.convolve(a[1], b[1])


def _live_offsets(op: ConvOp, size_in: int, jump: int) -> np.ndarray:
    """Image-px offsets of an op's live taps (jump: image px per input pixel of the op)."""
    live = live_taps(size_in, op.kernel, op.stride, op.dilation)
    o = np.arange(op.kernel, dtype=np.int64) * op.dilation - op.dilation * (op.kernel - 1) // 2
    return o[live] * jump


def net_counts(ops: Sequence[ConvOp], size: int, residual: Sequence[str] = ()) -> Counts:
    """Path counts (one axis, image px) from each offset to one output unit of the chain
    ``ops`` on a ``size``-px input, through live taps only. ``residual``: names of convs that
    compute x + f(x) (a smoothed layer's pre-filter ``<name>.smooth`` sits inside f)."""
    sizes = _sizes(ops, size)
    out: Counts = (0, np.ones(1))
    jump = 1
    pending: Counts | None = None  # a smoothed residual layer's pre-filter, until its conv
    for i, op in enumerate(ops):
        k = _taps(_live_offsets(op, sizes[i], jump))
        if op.name.endswith(".smooth") and op.name[: -len(".smooth")] in residual:
            pending = k
        elif op.name in residual:
            f = k if pending is None else _compose(pending, k)
            lo, v = f[0], f[1].copy()
            v[-lo] += 1.0  # the identity path (offset 0: the centre tap is always live)
            out, pending = _compose(out, (lo, v)), None
        else:
            out = _compose(out, k)
        jump *= op.stride
    return out


def erf_of_counts(counts_h: Counts, counts_w: Counts, mass: float = ERF_MASS) -> int:
    """Side of the smallest square window centred on offset 0 holding ``mass`` of the outer
    product of the two axes' counts (image px, 2ρ + 1)."""
    return int(_erf_rows(counts_h[1][None], -counts_h[0], counts_w[1][None], -counts_w[0],
                         mass)[0])


def _erf_rows(ch: np.ndarray, c_h: int, cw: np.ndarray, c_w: int,
              mass: float = ERF_MASS) -> np.ndarray:
    """`erf_of_counts` of (B, h) and (B, w) count rows whose offset 0 sits at index c_h /
    c_w: (B,) ints."""
    b = ch.shape[0]
    radius = max(c_h, ch.shape[1] - 1 - c_h, c_w, cw.shape[1] - 1 - c_w) + 1
    rho = np.arange(radius, dtype=np.int64)

    def window(c: np.ndarray, centre: int) -> np.ndarray:
        n = c.shape[1]
        cum = np.concatenate([np.zeros((b, 1)), np.cumsum(c, axis=1)], axis=1)
        hi = np.minimum(centre + rho, n - 1) + 1
        lo = np.clip(centre - rho, 0, n)
        return cum[:, hi] - cum[:, lo]

    inside = window(ch, c_h) * window(cw, c_w)  # (B, radius): mass within ρ
    total = ch.sum(axis=1) * cw.sum(axis=1)
    ok = inside >= mass * total[:, None] * (1 - _TOL)
    return (2 * ok.argmax(axis=1) + 1).astype(np.int64)  # ok[:, -1] holds: all the mass


def net_erf(stack: Schedule, h: int, w: int, *, output_stride: int = 8,
            backbone_stride: int | None = None, context: bool = False,
            context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES, residual: bool = False,
            **_ignored: object) -> int:
    """The ERF (image px) of nas-dil's stem net with ``stack`` on an h×w crop (`net_ops`:
    stem, stack, classifier, context module); ``residual``: the stack's layers but a DRN tail
    compute x + f(x). Extra keywords (an ``ArchConfig.cost_kwargs()``'s width, …) are
    ignored: they change no path."""
    res = [f"stack.{i}" for i in range(len(stack) - stack.tail)] if residual else []
    ch, cw = (net_counts(net_ops(stack, axis, output_stride, backbone_stride, context,
                                 tuple(context_rates)), size, res)
              for axis, size in (("h", h), ("w", w)))
    return erf_of_counts(ch, cw)


def _batch_axis(rates: np.ndarray, kernel: int, size: int, pre: Sequence[ConvOp],
                post: Sequence[ConvOp], residual: bool) -> tuple[np.ndarray, int]:
    """`net_counts` of a (B, layers) batch of plain stride-1 stacks between the common
    ``pre`` (stem) and ``post`` (head) ops: (B, L) counts and the index of offset 0.

    The stack and head run in feature px (their offsets are multiples of the stem's jump);
    the stem's counts are convolved in once, after upsampling to image px."""
    s = _sizes(pre, size)[-1]  # the stack's side (stride 1: kept, as the head keeps it)
    jump = int(np.prod([op.stride for op in pre])) if pre else 1
    fixed: Counts = (0, np.ones(1))
    for op in post:
        fixed = _compose(fixed, _taps(_live_offsets(op, s, 1)))
    half = (kernel - 1) // 2
    r = rates
    live = np.minimum(half, (s - 1) // r)  # (B, n): taps j·r live iff |j|·r < s
    reach = int(((live * r).sum(axis=1)).max(initial=0))  # farthest stack offset, feature px
    lo_f, vf = fixed
    c = reach - lo_f  # index of offset 0
    width = 2 * reach + vf.size
    cur = np.zeros((r.shape[0], width), dtype=np.float64)
    cur[:, reach: reach + vf.size] = vf  # the head, then the stack's layers
    ar = np.arange(width, dtype=np.int64)
    for i in range(r.shape[1]):
        padded = np.zeros((r.shape[0], 3 * width), dtype=np.float64)
        padded[:, width:2 * width] = cur
        new = cur.copy() if residual else np.zeros_like(cur)
        for j in range(-half, half + 1):
            if j == 0:
                new += cur  # the centre tap (always live)
                continue
            shift = np.where(abs(j) <= live[:, i], j * r[:, i], 3 * width)  # dead: no path
            idx = np.clip(ar[None, :] - shift[:, None] + width, 0, 3 * width - 1)
            new += np.take_along_axis(padded, idx, axis=1)
        cur = new
    lo_s, vs = net_counts(list(pre), size)  # the stem, image px
    up = np.zeros((r.shape[0], (width - 1) * jump + 1))
    up[:, ::jump] = cur
    out = np.zeros((r.shape[0], up.shape[1] + vs.size - 1))
    for k in np.flatnonzero(vs):
        out[:, k: k + up.shape[1]] += vs[k] * up
    return out, c * jump - lo_s


def batch_erf(rates: np.ndarray, kernel: int, output_stride: int, h: int, w: int, *,
              backbone_stride: int | None = None, context: bool = False,
              context_rates: Sequence[int] = DEFAULT_CONTEXT_RATES,
              residual: bool = False) -> np.ndarray:
    """`net_erf` of many plain stacks (rows of ``rates``: square K×K layers, stride 1, no
    smoothing or tail) of one kernel and output stride: (B,) ints, equal row by row."""
    r = np.asarray(rates, dtype=np.int64)
    if r.ndim != 2 or (r.size and r.min() < 1):
        raise ValueError(f"rates must be a (batch, layers) array of ints >= 1, got {r.shape}")
    if r.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    full = net_ops(Schedule((1,), (kernel,)), "h", output_stride, backbone_stride, context,
                   tuple(context_rates))
    k = len(stem_plan(output_stride, backbone_stride))
    pre, post = full[:k], full[k + 1:]
    ch, c_h = _batch_axis(r, kernel, h, pre, post, residual)
    cw, c_w = (ch, c_h) if w == h else _batch_axis(r, kernel, w, pre, post, residual)
    return _erf_rows(ch, c_h, cw, c_w)


def _table_counts(t: LayerTable, n: int) -> Counts:
    """`net_counts` of a layer table (a DAG) on an input of length ``n``: an add passes each
    path to every input; a broadcast (global) value carries no local path, as in
    ``layertable.table_support``; taps (of convs and pools) that read only padding from
    every output position carry none either (``layertable.dead_taps``)."""
    sizes = _lengths(t, n)
    g = _is_global(t)
    # per row: counts over its output positions relative to the unit, with the scale of one
    # of its output positions in image px
    need: dict[int, Counts] = {len(t) - 1: (0, np.ones(1))}
    image: Counts | None = None
    for i in range(len(t) - 1, -1, -1):
        cur = need.pop(i, None)
        if cur is None:
            continue
        op = t.ops[i]
        for j in op.inputs:
            if j != IMAGE and g[j]:
                continue
            n_in = n if j == IMAGE else sizes[j]
            p = cur
            if op.kind in ("conv", "maxpool", "avgpool"):
                first = np.arange(op.kernel, dtype=np.int64) * op.dilation - op.padding
                last = first + (_out_len(n_in, op) - 1) * op.stride
                live = ~((last < 0) | (first >= n_in))
                lo, v = cur
                up = np.zeros((v.size - 1) * op.stride + 1)  # output grid -> input grid
                up[:: op.stride] = v
                p = _compose((lo * op.stride, up), _taps(first[live]))
            if j == IMAGE:
                image = p if image is None else _add(image, p)
            else:
                need[j] = _add(need[j], p) if j in need else p
    assert image is not None  # the last row reads the image through some path
    return image


def _add(a: Counts, b: Counts) -> Counts:
    lo = min(a[0], b[0])
    hi = max(a[0] + a[1].size, b[0] + b[1].size)
    v = np.zeros(hi - lo)
    v[a[0] - lo: a[0] - lo + a[1].size] += a[1]
    v[b[0] - lo: b[0] - lo + b[1].size] += b[1]
    return lo, v


def table_erf(t: LayerTable, h: int, w: int) -> int:
    """The ERF (input px) of a net given as a layer table on an h×w input."""
    ch = _table_counts(t, h)
    return erf_of_counts(ch, ch if w == h else _table_counts(t, w))

