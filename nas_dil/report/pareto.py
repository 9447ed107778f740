"""Pareto front, hypervolume and the knee point. Pure numpy, any number of objectives.

Every function takes objective values as an (n, d) array in the study's own orientation plus
the d directions ("maximize" / "minimize"); internally values are turned into costs to minimise
(maximised objectives are negated).

**Pareto front**: the points no other point dominates (as good in every objective and strictly
better in one). Equal points do not dominate each other, so duplicates are all kept.

**Hypervolume**: the volume dominated by the front and bounded by a reference point,
computed exactly by slicing along the last objective (recursive; a sweep in 2-D). The default
reference point (``reference_point``): per objective, the worst value over the points given,
pushed a further 10 % of that objective's range beyond it (when the range is 0: by 10 % of the
value itself, or by 1 if the value is 0), so every point, extremes included, adds volume.
``normalized`` (in ``nas_dil.report.data``) divides by the box from the ideal point (the best
value of each objective) to the reference point, giving a number in [0, 1].

**Knee** (``knee_index``): normalise each objective to [0, 1] over the front (1 = the best value
on the front, 0 = the worst; an objective that is constant on the front counts as 1), then take
the point closest, in Euclidean distance, to the utopia point (1, …, 1). Ties go to the point
listed first. Why this rule and not "farthest from the line through the extremes": it is defined
for any number of objectives and any front (one point, two points, fronts whose extremes
coincide, where the plane through the extremes does not exist), it does not depend on units, and
on the convex 2-D fronts a search produces it picks the same bend of the curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas_dil.search.pareto import hypervolume_costs
from nas_dil.search.pareto import pareto_mask as _nondominated

__all__ = [
    "REF_MARGIN",
    "dominates",
    "hypervolume",
    "hypervolume_series",
    "knee_index",
    "normalize_front",
    "pareto_mask",
    "reference_point",
    "to_costs",
]

Values = Sequence[Sequence[float]] | np.ndarray  # (n, d) objective values, study orientation
REF_MARGIN = 0.1  # the reference point lies this share of each objective's range past the worst


def _signs(directions: Sequence[str]) -> np.ndarray:
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad:
        raise ValueError(f"directions must be 'maximize' or 'minimize', got {bad}")
    return np.array([1.0 if d == "minimize" else -1.0 for d in directions])


def _values(values: Values, directions: Sequence[str]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, len(directions))
    if arr.ndim != 2 or arr.shape[1] != len(directions):
        raise ValueError(f"values of shape {arr.shape} for {len(directions)} directions")
    return arr


def to_costs(values: Values, directions: Sequence[str]) -> np.ndarray:
    """Values as costs to minimise: maximised objectives negated."""
    return _values(values, directions) * _signs(directions)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Cost vector ``a`` dominates ``b``: no worse anywhere, strictly better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(values: Values, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values``."""
    return _nondominated(to_costs(values, directions))


def reference_point(values: Values, directions: Sequence[str],
                    margin: float = REF_MARGIN) -> np.ndarray:
    """The default reference point (study orientation) for ``values`` (see module docstring)."""
    costs = to_costs(values, directions)
    if len(costs) == 0:
        raise ValueError("a reference point needs at least one point")
    worst, best = costs.max(axis=0), costs.min(axis=0)
    span = worst - best
    flat = np.where(worst != 0, margin * np.abs(worst), 1.0)  # a constant objective
    pad = np.where(span > 0, margin * span, flat)
    return (worst + pad) * _signs(directions)


def hypervolume(values: Values, directions: Sequence[str],
                ref: Sequence[float] | np.ndarray) -> float:
    """Exact hypervolume of ``values`` (study orientation) against ``ref`` (same orientation).

    Points not strictly better than ``ref`` in every objective add nothing.
    """
    signs = _signs(directions)
    costs = to_costs(values, directions)
    r = np.asarray(ref, dtype=np.float64) * signs
    if len(costs) == 0:
        return 0.0
    costs = costs[np.all(costs < r, axis=1)]
    costs = costs[_nondominated(costs)]
    return hypervolume_costs(costs, r)


def hypervolume_series(values: Values,
                       directions: Sequence[str], ref: Sequence[float] | np.ndarray,
                       include: Sequence[bool] | None = None) -> list[float]:
    """Hypervolume of the first k points for every k (points in trial order).

    ``include[k]`` false (an infeasible or unfinished trial) keeps the previous value.
    """
    vals = _values(values, directions)
    inc = np.ones(len(vals), dtype=bool) if include is None else np.asarray(include, dtype=bool)
    out: list[float] = []
    front = np.zeros((0, vals.shape[1]))
    costs = to_costs(vals, directions) if len(vals) else vals
    current = 0.0
    for k in range(len(vals)):
        if inc[k] and not any(dominates(f, costs[k]) or np.array_equal(f, costs[k])
                              for f in front):
            front = np.vstack([front, costs[k]])
            front = front[_nondominated(front)]
            current = hypervolume(front * _signs(directions), directions, ref)
        out.append(current)
    return out


def normalize_front(values: Values,
                    directions: Sequence[str]) -> np.ndarray:
    """Each objective mapped to [0, 1] over the given points: 1 best, 0 worst (constant: 1)."""
    costs = to_costs(values, directions)
    lo, hi = costs.min(axis=0), costs.max(axis=0)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(span > 0, (hi - costs) / np.where(span > 0, span, 1.0), 1.0)
    return norm


def knee_index(values: Values, directions: Sequence[str]) -> int:
    """Index of the knee among ``values`` (a front): closest to utopia after normalising."""
    vals = _values(values, directions)
    if len(vals) == 0:
        raise ValueError("the knee of an empty front")
    dist = np.sqrt(((1.0 - normalize_front(vals, directions)) ** 2).sum(axis=1))
    return int(np.argmin(dist))  # argmin returns the first of equal distances
