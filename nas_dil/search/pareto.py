"""Non-dominated filtering (numpy only: the Ray worker imports it without optuna or torch)."""

from __future__ import annotations

import numpy as np

__all__ = ["pareto_mask"]


def pareto_mask(losses: np.ndarray) -> np.ndarray:
    """Rows no other row dominates (<= everywhere, < somewhere); equal rows all stay."""
    pts = np.asarray(losses, dtype=float)
    if pts.size == 0:
        return np.zeros(len(pts), dtype=bool)
    le = (pts[:, None, :] <= pts[None, :, :]).all(axis=2)  # le[j, i]: j <= i everywhere
    lt = (pts[:, None, :] < pts[None, :, :]).any(axis=2)
    return np.asarray(~(le & lt).any(axis=0), dtype=bool)
