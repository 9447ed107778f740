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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas_dil.models.analytic import analytic_batch
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
    "dead_tap_share",
    "objective_ranges",
    "range_candidates",
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


def dead_tap_share(space: Space, arch: Mapping[str, Any], image_size: int | Sequence[int],
                   num_classes: int, seed: int) -> tuple[float, bool]:
    """(share of the space whose stack has dead taps at the crop, exact): the candidates of
    `range_candidates`."""
    cands, exact = range_candidates(space, seed)
    cols = analytic_batch(list(dict.fromkeys(cands)), {**arch, "num_classes": num_classes},
                          image_size)
    return (float((cols["dead_taps"] > 0).mean()) if len(cols["dead_taps"]) else 0.0), exact


def objective_ranges(objectives: Sequence[Objective], space: Space, arch: Mapping[str, Any],
                     image_size: int | Sequence[int], num_classes: int, seed: int,
                     extra: Iterable[Candidate] = ()) -> dict[str, ObjectiveRange]:
    """Best and worst value of every objective (see the module docstring)."""
    out: dict[str, ObjectiveRange] = {}
    analytic = [o for o in objectives if not o.measured]
    for o in objectives:
        if o.measured:  # mIoU: [0, 1] by definition
            best, worst = (1.0, 0.0) if o.direction == "maximize" else (0.0, 1.0)
            out[o.name] = ObjectiveRange(best, worst, True)
    if not analytic:
        return out
    cands, exact = range_candidates(space, seed)
    cands += list(extra)
    cols = analytic_batch(list(dict.fromkeys(cands)), {**arch, "num_classes": num_classes},
                          image_size)
    for o in analytic:
        v = cols[o.name]
        lo, hi = float(v.min()), float(v.max())
        best, worst = (hi, lo) if o.direction == "maximize" else (lo, hi)
        out[o.name] = ObjectiveRange(best, worst, exact)
    return out
