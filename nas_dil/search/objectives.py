"""Objectives, their metrics, and the ranges the search normalises them by.

Directions live in the study config; losses, dominance and hypervolume are `nas_dil.pareto`,
the analytic metrics of a candidate `nas_dil.models.analytic`.

Hypervolume: each objective is normalised to [0, 1] between its best and worst value —
mIoU between 1 and 0, an analytic objective between the extremes it takes over the search
space (exact when the space has at most `ENUMERATE_LIMIT` candidates, else over
`RANGE_SAMPLES` seeded samples plus the baselines) — and the reference point is
`nas_dil.pareto.REFERENCE` (1.1) in every normalised coordinate, so the largest possible
hypervolume is 1.1^d and an extreme point of the front still counts. Values outside an
estimated range are clipped into it (`nas_dil.pareto.normalised_hypervolume`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nas_dil.search.records import METRICS, Metric, Objective
from nas_dil.spaces import Candidate, Space, sample_candidates

__all__ = [
    "CONSTRAINT_METRICS",
    "ENUMERATE_LIMIT",
    "METRICS",
    "RANGE_SAMPLES",
    "Metric",
    "Objective",
    "ObjectiveRange",
    "SpaceScores",
    "objective_ranges",
    "range_candidates",
    "score_space",
]

ENUMERATE_LIMIT = 2_000  # spaces up to this size are enumerated for the objective ranges
RANGE_SAMPLES = 400  # otherwise this many seeded samples estimate them
# analytic: checked at ask time
CONSTRAINT_METRICS = ("rf", "rf_nominal", "rf_stack", "gflops", "params")


@dataclass(frozen=True)
class ObjectiveRange:
    best: float
    worst: float
    exact: bool  # True: over the whole space (or by definition, for mIoU)


def range_candidates(space: Space, seed: int) -> tuple[list[Candidate], bool]:
    """The candidates objective ranges are taken over, and whether that is the whole space:
    all of it up to `ENUMERATE_LIMIT`, else `RANGE_SAMPLES` seeded samples."""
    try:
        count: int | None = space.count()
    except Exception:  # too large to count exactly
        count = None
    exact = count is not None and count <= ENUMERATE_LIMIT
    return (list(space.enumerate()) if exact
            else sample_candidates(space, RANGE_SAMPLES, seed)), exact


@dataclass(frozen=True)
class SpaceScores:
    """The analytic columns of the space's `range_candidates` (distinct, first) and then of
    the extra candidates not among them (the baselines): scored once for the objective
    ranges, the dead-tap share and the constraints' feasibility."""

    cols: Mapping[str, np.ndarray]  # analytic_batch columns, one row per candidate
    n_space: int  # the first rows: the space's own candidates
    exact: bool  # those are the whole space (else RANGE_SAMPLES seeded draws)

    def space_col(self, key: str) -> np.ndarray:
        """One column over the space's own candidates (the baselines left out)."""
        return np.asarray(self.cols[key][: self.n_space])

    def dead_share(self) -> float:
        """Share of the space's candidates whose stack has dead taps at the crop."""
        dead = self.space_col("dead_taps")
        return float((dead > 0).mean()) if len(dead) else 0.0


def score_space(space: Space, seed: int, extra: Iterable[Candidate],
                score: Callable[[list[Candidate]], Mapping[str, np.ndarray]]) -> SpaceScores:
    """`SpaceScores` of ``space`` (drawn with ``seed``) and ``extra``; ``score`` is
    ``analytic_batch`` around the study's nets."""
    cands, exact = range_candidates(space, seed)
    own = list(dict.fromkeys(cands))
    return SpaceScores(score(list(dict.fromkeys([*own, *extra]))), len(own), exact)


def objective_ranges(objectives: Sequence[Objective],
                     scores: SpaceScores) -> dict[str, ObjectiveRange]:
    """Best and worst value of every objective (see the module docstring)."""
    out: dict[str, ObjectiveRange] = {}
    for o in objectives:
        if o.measured:  # mIoU: [0, 1] by definition
            best, worst = (1.0, 0.0) if o.direction == "maximize" else (0.0, 1.0)
            out[o.name] = ObjectiveRange(best, worst, True)
            continue
        v = scores.cols[o.name]
        lo, hi = float(v.min()), float(v.max())
        best, worst = (hi, lo) if o.direction == "maximize" else (lo, hi)
        out[o.name] = ObjectiveRange(best, worst, scores.exact)
    return out
