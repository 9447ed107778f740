"""Non-dominated filtering and exact hypervolume of costs to minimise (numpy only: the Ray
worker imports it without optuna or torch; the report builds on it)."""

from __future__ import annotations

import numpy as np

__all__ = ["hypervolume_costs", "pareto_mask"]


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
