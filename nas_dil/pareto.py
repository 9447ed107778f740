"""Pareto fronts, exact hypervolume and its improvement, normalisation, the knee. Pure numpy
(the Ray worker, the search, hvi, early stopping, report and export all use this one module;
importing it imports neither optuna nor torch).

Conventions, written down once:

- **Losses.** Every function here but `pareto_mask` works on *losses*: ``sign · value`` with
  sign +1 for an objective to minimise and -1 for one to maximise (`to_losses`), so smaller is
  better in every coordinate. An (n, d) array holds one point per row.
- **Dominance.** ``a`` dominates ``b`` when it is no worse anywhere and strictly better
  somewhere. Equal points do not dominate each other, so duplicates all stay on a front
  (`nondominated`).
- **Reference point.** The hypervolume is bounded by a reference point that lies
  ``REF_MARGIN`` (10 %) of each objective's range past its worst value, so the extreme points
  of a front add volume too. In normalised coordinates (0 at the best value, 1 at the worst:
  `normalise`) that is ``REFERENCE`` = 1.1 in every coordinate (the search's progress line and
  the hvi sampler); over raw points it is `reference_point` (the report).
- **Hypervolume** (`hypervolume`): exact, by slicing along the last objective (recursive; a
  sweep in 2-D). Points not strictly better than the reference in every coordinate add nothing.
- **Knee** (`knee_index`): normalise each objective over the front, then take the point
  closest, in Euclidean distance, to the ideal point (all zeros). Ties go to the point listed
  first. Why this rule and not "farthest from the line through the extremes": it is defined
  for any number of objectives and any front (one point, two points, fronts whose extremes
  coincide, where the plane through the extremes does not exist), it does not depend on units,
  and on the convex 2-D fronts a search produces it picks the same bend of the curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "MAX_CELLS",
    "REFERENCE",
    "REF_MARGIN",
    "dominates",
    "hypervolume",
    "hypervolume_improvement",
    "hypervolume_series",
    "knee_index",
    "nondominated",
    "normalise",
    "normalised_hypervolume",
    "pareto_mask",
    "reference_point",
    "signs",
    "to_losses",
]

ArrayLike = Sequence[Sequence[float]] | Sequence[float] | np.ndarray
REF_MARGIN = 0.1  # the reference point lies this share of each objective's range past the worst
REFERENCE = 1.0 + REF_MARGIN  # that reference in normalised coordinates (0 best, 1 worst)
MAX_CELLS = 200_000  # grid cells above which the improvement is computed point by point


# -- orientation -----------------------------------------------------------------------------

def signs(directions: Sequence[str]) -> np.ndarray:
    """+1 per objective to minimise, -1 per objective to maximise: ``sign · value`` is a loss."""
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad:
        raise ValueError(f"directions must be 'maximize' or 'minimize', got {bad}")
    return np.array([1.0 if d == "minimize" else -1.0 for d in directions])


def _rows(values: ArrayLike, d: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, d)
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"values of shape {arr.shape} for {d} objectives")
    return arr


def to_losses(values: ArrayLike, directions: Sequence[str]) -> np.ndarray:
    """Objective values (rows, study orientation) as losses: maximised objectives negated."""
    return _rows(values, len(directions)) * signs(directions)


# -- dominance -------------------------------------------------------------------------------

def dominates(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Losses ``a`` dominate ``b`` (no worse anywhere, strictly better somewhere); broadcasts
    over leading axes (two vectors give a 0-d bool array, usable as a bool)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.asarray((a <= b).all(axis=-1) & (a < b).any(axis=-1))


def nondominated(losses: ArrayLike) -> np.ndarray:
    """Mask of the rows of ``losses`` no other row dominates; equal rows all stay."""
    pts = np.asarray(losses, dtype=float)
    if pts.size == 0:
        return np.zeros(len(pts), dtype=bool)
    le = (pts[:, None, :] <= pts[None, :, :]).all(axis=2)  # le[j, i]: j <= i everywhere
    lt = (pts[:, None, :] < pts[None, :, :]).any(axis=2)
    return np.asarray(~(le & lt).any(axis=0), dtype=bool)


def pareto_mask(values: ArrayLike, directions: Sequence[str]) -> np.ndarray:
    """Mask of the Pareto-optimal rows of objective ``values`` in the study's orientation."""
    return nondominated(to_losses(values, directions))


# -- normalisation and the reference point ---------------------------------------------------

def normalise(values: ArrayLike, best: ArrayLike, worst: ArrayLike, *,
              clip: bool = True) -> np.ndarray:
    """Each coordinate mapped linearly to 0 at ``best`` and 1 at ``worst`` (either orientation:
    for a maximised objective best > worst).

    ``clip``: values outside the range are clipped into [0, 1] and an objective with
    best == worst maps to 0. Without it values outside the range stay outside (an optimistic
    prediction past the best seen) and a constant objective is only shifted.
    """
    v = np.asarray(values, dtype=float)
    lo, hi = np.asarray(best, dtype=float), np.asarray(worst, dtype=float)
    span = hi - lo
    out = (v - lo) / np.where(span != 0, span, 1.0)
    if clip:
        out = np.where(span != 0, np.clip(out, 0.0, 1.0), 0.0)
    return out


def reference_point(losses: ArrayLike, margin: float = REF_MARGIN) -> np.ndarray:
    """The reference point of raw ``losses``: per objective, the worst value pushed ``margin``
    of the range further (when the range is 0: by ``margin`` of the value itself, or by 1 if
    the value is 0), so every point, extremes included, adds volume."""
    pts = np.asarray(losses, dtype=float)
    if len(pts) == 0:
        raise ValueError("a reference point needs at least one point")
    worst, best = pts.max(axis=0), pts.min(axis=0)
    span = worst - best
    flat = np.where(worst != 0, margin * np.abs(worst), 1.0)  # a constant objective
    return worst + np.where(span > 0, margin * span, flat)


# -- hypervolume -----------------------------------------------------------------------------

def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of non-dominated losses, all strictly below ``ref`` everywhere."""
    n, d = pts.shape
    if n == 0:
        return 0.0
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if d == 2:
        order = np.lexsort((pts[:, 1], pts[:, 0]))  # by x, then y
        vol, best_y = 0.0, ref[1]
        xs = pts[order, 0]
        ys = pts[order, 1]
        for i in range(n):
            best_y = min(best_y, ys[i])
            x_next = xs[i + 1] if i + 1 < n else ref[0]
            vol += (x_next - xs[i]) * (ref[1] - best_y)
        return float(vol)
    srt = pts[np.argsort(pts[:, -1], kind="stable")]
    vol = 0.0
    for i in range(n):
        z_next = srt[i + 1, -1] if i + 1 < n else ref[-1]
        if z_next > srt[i, -1]:
            below = srt[: i + 1, :-1]
            vol += _hv(below[nondominated(below)], ref[:-1]) * (z_next - srt[i, -1])
    return float(vol)


def hypervolume(losses: ArrayLike, ref: ArrayLike) -> float:
    """Exact hypervolume of ``losses`` (n, d) against ``ref`` (d,): the volume they dominate
    below it. Points not strictly below ``ref`` everywhere add nothing."""
    r = np.asarray(ref, dtype=float)
    pts = _rows(losses, len(r))
    pts = pts[(pts < r).all(axis=1)]
    return _hv(pts[nondominated(pts)], r)


def normalised_hypervolume(values: ArrayLike, best: ArrayLike, worst: ArrayLike,
                           reference: float = REFERENCE) -> float:
    """Hypervolume of objective ``values`` (rows, either orientation) after `normalise` with
    per-objective ``best`` and ``worst`` (clipped), against ``reference`` in every coordinate:
    at most reference^d."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return 0.0
    norm = normalise(v, best, worst)
    return hypervolume(norm, np.full(norm.shape[1], reference))


def hypervolume_series(losses: ArrayLike, ref: ArrayLike,
                       include: Sequence[bool] | None = None) -> list[float]:
    """Hypervolume of the first k points for every k (points in trial order).

    ``include[k]`` false (an infeasible or unfinished trial) keeps the previous value.
    """
    r = np.asarray(ref, dtype=float)
    pts = _rows(losses, len(r))
    inc = np.ones(len(pts), dtype=bool) if include is None else np.asarray(include, dtype=bool)
    out: list[float] = []
    front = np.zeros((0, len(r)))
    current = 0.0
    for k in range(len(pts)):
        p = pts[k]
        if inc[k] and not (dominates(front, p).any() or (front == p).all(axis=1).any()):
            front = np.vstack([front, p])
            front = front[nondominated(front)]
            current = hypervolume(front, r)
        out.append(current)
    return out


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


def hypervolume_improvement(front: ArrayLike, points: ArrayLike, ref: ArrayLike,
                            chunk: int = 256) -> np.ndarray:
    """Exact hypervolume each row of ``points`` would add to ``front`` on its own (losses,
    against ``ref``): HV(front ∪ {p}) − HV(front), for all points at once.

    The region ``front`` leaves undominated is cut into disjoint boxes (`_free_columns`); a
    point's improvement is the volume it dominates of those boxes, so one decomposition
    serves every point (vectorised). Decompositions over MAX_CELLS (many objectives and a
    large front) fall back to one exact hypervolume per point.
    """
    pts = np.asarray(points, dtype=float)
    k = pts.shape[-1]
    fr = np.asarray(front, dtype=float).reshape(-1, k)
    r = np.asarray(ref, dtype=float)
    out = np.zeros(len(pts))
    fr = fr[(fr < r).all(axis=1)]
    if len(fr):
        fr = fr[nondominated(fr)]
    # a point some front member weakly dominates, or not below ref everywhere, adds nothing
    live = (pts < r).all(axis=1)
    if len(fr):
        live &= ~(fr[None, :, :] <= pts[:, None, :]).all(axis=2).any(axis=1)
    idx = np.flatnonzero(live)
    if len(idx) == 0:
        return out
    if len(fr) == 0 or k == 1:
        out[idx] = np.prod(r - pts[idx], axis=1)
        if len(fr):  # one objective: the part above the best front value is covered
            out[idx] = fr[:, 0].min() - pts[idx, 0]
        return out
    cols = _free_columns(fr, r, np.minimum(fr.min(axis=0), pts[idx].min(axis=0)))
    if cols is None:
        base = _hv(fr, r)
        for i in idx:
            both = np.vstack([fr, pts[i]])
            out[i] = _hv(both[nondominated(both)], r) - base
        return out
    lo, hi, top = cols
    for s in range(0, len(idx), chunk):
        p = pts[idx[s:s + chunk]]
        width = np.maximum(hi[None] - np.maximum(lo[None], p[:, None, :-1]), 0.0).prod(axis=2)
        out[idx[s:s + chunk]] = (width * np.maximum(top[None] - p[:, -1:], 0.0)).sum(axis=1)
    return out


# -- the knee --------------------------------------------------------------------------------

def knee_index(losses: ArrayLike) -> int:
    """Index of the knee among ``losses`` (a front): each objective normalised over the front
    (0 = its best value there; a constant objective counts as 0), the point closest to 0."""
    pts = np.asarray(losses, dtype=float)
    if len(pts) == 0:
        raise ValueError("the knee of an empty front")
    norm = normalise(pts, pts.min(axis=0), pts.max(axis=0))
    return int(np.argmin(np.sqrt((norm**2).sum(axis=1))))  # argmin: the first of equals
