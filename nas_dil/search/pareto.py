"""Non-dominated filtering and exact hypervolume of costs to minimise (numpy only: the Ray
worker imports it without optuna or torch; the report builds on it)."""

from __future__ import annotations

import numpy as np

__all__ = ["hypervolume_costs", "hypervolume_improvement", "pareto_mask"]

MAX_CELLS = 200_000  # grid cells above which the improvement is computed point by point


def pareto_mask(losses: np.ndarray) -> np.ndarray:
    """Rows no other row dominates (<= everywhere, < somewhere); equal rows all stay."""
    pts = np.asarray(losses, dtype=float)
    if pts.size == 0:
        return np.zeros(len(pts), dtype=bool)
    le = (pts[:, None, :] <= pts[None, :, :]).all(axis=2)  # le[j, i]: j <= i everywhere
    lt = (pts[:, None, :] < pts[None, :, :]).any(axis=2)
    return np.asarray(~(le & lt).any(axis=0), dtype=bool)


def hypervolume_costs(costs: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of cost points (minimised; all strictly below ``ref`` everywhere):
    a sweep in 2-D, slices along the last objective above that (recursive)."""
    n, d = costs.shape
    if n == 0:
        return 0.0
    if d == 1:
        return float(ref[0] - costs[:, 0].min())
    if d == 2:
        order = np.lexsort((costs[:, 1], costs[:, 0]))  # by x, then y
        vol, best_y = 0.0, ref[1]
        xs = costs[order, 0]
        ys = costs[order, 1]
        for i in range(n):
            best_y = min(best_y, ys[i])
            x_next = xs[i + 1] if i + 1 < n else ref[0]
            vol += (x_next - xs[i]) * (ref[1] - best_y)
        return float(vol)
    order = np.argsort(costs[:, -1], kind="stable")
    pts = costs[order]
    vol = 0.0
    for i in range(n):
        z_next = pts[i + 1, -1] if i + 1 < n else ref[-1]
        if z_next > pts[i, -1]:
            below = pts[: i + 1, :-1]
            below = below[pareto_mask(below)]
            vol += hypervolume_costs(below, ref[:-1]) * (z_next - pts[i, -1])
    return float(vol)


def _free_columns(front: np.ndarray, ref: np.ndarray,
                  low: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The region below ``ref`` that ``front`` leaves undominated, as disjoint boxes: on the
    grid of the front's coordinates (with ``low`` as its floor) over all objectives but the
    last, each grid cell is a column whose free part is one interval [low, top) of the last
    objective (dominance is monotone), ``top`` being the least last-objective value of the
    front points at or below the cell's lower corner. Returns (lower, upper, top); None when
    the grid would exceed MAX_CELLS."""
    k = front.shape[1]
    axes = []
    for j in range(k - 1):
        a = np.unique(np.concatenate([front[:, j], [low[j], ref[j]]]))
        axes.append(a[a <= ref[j]])
    if np.prod([len(a) - 1 for a in axes], dtype=float) > MAX_CELLS:
        return None
    lo = np.stack(np.meshgrid(*[a[:-1] for a in axes], indexing="ij"), -1).reshape(-1, k - 1)
    hi = np.stack(np.meshgrid(*[a[1:] for a in axes], indexing="ij"), -1).reshape(-1, k - 1)
    top = np.full(len(lo), ref[-1])
    for f in front:
        below = (f[:-1] <= lo).all(axis=1)
        top[below] = np.minimum(top[below], f[-1])
    keep = top > low[-1]
    return lo[keep], hi[keep], top[keep]


def hypervolume_improvement(front: np.ndarray, points: np.ndarray, ref: np.ndarray,
                            chunk: int = 256) -> np.ndarray:
    """Exact hypervolume each row of ``points`` would add to ``front`` on its own (costs to
    minimise, against ``ref``): HV(front ∪ {p}) − HV(front), for all points at once.

    The region ``front`` leaves undominated is cut into disjoint boxes (`_free_columns`); a
    point's improvement is the volume it dominates of those boxes, so one decomposition
    serves every point (vectorised). Decompositions over MAX_CELLS (many objectives and a
    large front) fall back to one exact hypervolume per point.
    """
    pts = np.asarray(points, dtype=float)
    k = pts.shape[-1]
    front = np.asarray(front, dtype=float).reshape(-1, k)
    ref = np.asarray(ref, dtype=float)
    out = np.zeros(len(pts))
    front = front[(front < ref).all(axis=1)]
    if len(front):
        front = front[pareto_mask(front)]
    # a point some front member weakly dominates, or not below ref everywhere, adds nothing
    live = (pts < ref).all(axis=1)
    if len(front):
        live &= ~(front[None, :, :] <= pts[:, None, :]).all(axis=2).any(axis=1)
    idx = np.flatnonzero(live)
    if len(idx) == 0:
        return out
    if len(front) == 0 or k == 1:
        out[idx] = np.prod(ref - pts[idx], axis=1)
        if len(front):  # one objective: the part above the best front value is covered
            out[idx] = front[:, 0].min() - pts[idx, 0]
        return out
    cols = _free_columns(front, ref, np.minimum(front.min(axis=0), pts[idx].min(axis=0)))
    if cols is None:
        base = hypervolume_costs(front, ref)
        for i in idx:
            both = np.vstack([front, pts[i]])
            out[i] = hypervolume_costs(both[pareto_mask(both)], ref) - base
        return out
    lo, hi, top = cols
    for s in range(0, len(idx), chunk):
        p = pts[idx[s:s + chunk]]
        width = np.maximum(hi[None] - np.maximum(lo[None], p[:, None, :-1]), 0.0).prod(axis=2)
        out[idx[s:s + chunk]] = (width * np.maximum(top[None] - p[:, -1:], 0.0)).sum(axis=1)
    return out
