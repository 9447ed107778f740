"""Objectives and the analytic metrics of a candidate, Pareto fronts and hypervolume.

Directions live in the study config; everything computed here works on *losses*
(``sign · value`` with sign +1 to minimise, -1 to maximise), so "smaller is better" holds in
every coordinate.

Hypervolume: each objective is normalised to [0, 1] between its best and worst value —
mIoU between 1 and 0, an analytic objective between the extremes it takes over the search
space (exact when the space has at most `ENUMERATE_LIMIT` candidates, else over
`RANGE_SAMPLES` seeded samples plus the baselines) — and the reference point is 1.1 in every
normalised coordinate, so the largest possible hypervolume is 1.1^d and an extreme point of
the front still counts. Values outside an estimated range are clipped into it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas_dil.models.config import ArchConfig
from nas_dil.schedule import coverage, hdc_report, net_cost
from nas_dil.search.pareto import hypervolume_costs, pareto_mask
from nas_dil.search.records import METRICS, Metric, Objective
from nas_dil.spaces import Candidate, Space, sample_candidates

__all__ = [
    "CONSTRAINT_METRICS",
    "ENUMERATE_LIMIT",
    "METRICS",
    "RANGE_SAMPLES",
    "REFERENCE",
    "Metric",
    "Objective",
    "ObjectiveRange",
    "analytic_attrs",
    "hypervolume",
    "objective_ranges",
    "pareto_mask",
]

ENUMERATE_LIMIT = 2_000  # spaces up to this size are enumerated for the objective ranges
RANGE_SAMPLES = 400  # otherwise this many seeded samples estimate them
REFERENCE = 1.1  # hypervolume reference point, in every normalised coordinate


CONSTRAINT_METRICS = ("rf", "rf_stack", "gflops", "params")  # analytic: checked at ask time


def analytic_attrs(cand: Candidate, arch: ArchConfig, image_size: int) -> dict[str, Any]:
    """Everything known before training, as the trial's user attrs (plain JSON)."""
    s = cand.schedule
    cost = net_cost(image_size, image_size, s.rates, kernel=s.kernels, **arch.cost_kwargs())
    cov = coverage(s)
    hdc = hdc_report(list(s.rates), cand.kernel)
    return {
        "rf": cost.rf_image,
        "rf_stack": cov.rf,
        "holes": cov.holes,
        "coverage": cov.coverage,
        "gridding_free": cov.gridding_free,
        "hdc_rule1": hdc.rule1.passed,  # rule 1 on the whole schedule (as analyze says)
        "hdc_rule1_groups": hdc.rule1_groups.passed,  # rule 1 within every sawtooth group
        "hdc_rule2": hdc.rule2.passed,
        "hdc_rule3": hdc.rule3.passed,
        "hdc": hdc.passed,
        "m": list(hdc.m),
        "macs": cost.macs,
        "flops": cost.flops,
        "gflops": cost.flops / 1e9,
        "params": cost.params,
    }


@dataclass(frozen=True)
class ObjectiveRange:
    best: float
    worst: float
    exact: bool  # True: over the whole space (or by definition, for mIoU)

    def normalise(self, value: float) -> float:
        """0 at the best value, 1 at the worst, clipped into [0, 1]."""
        span = self.worst - self.best
        if span == 0:
            return 0.0
        return float(np.clip((value - self.best) / span, 0.0, 1.0))


def objective_ranges(objectives: Sequence[Objective], space: Space, arch: Mapping[str, Any],
                     image_size: int, num_classes: int, seed: int,
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
    try:
        count: int | None = space.count()
    except Exception:  # too large to count exactly
        count = None
    exact = count is not None and count <= ENUMERATE_LIMIT
    cands = list(space.enumerate()) if exact else sample_candidates(space, RANGE_SAMPLES, seed)
    cands += list(extra)
    values: dict[str, list[float]] = {o.name: [] for o in analytic}
    seen: set[tuple[Any, ...]] = set()
    for c in cands:
        k = (c.rates, c.kernel, c.output_stride, c.width)
        if k in seen:
            continue
        seen.add(k)
        a = ArchConfig(**arch, output_stride=c.output_stride, width=c.width,
                       num_classes=num_classes)
        attrs = analytic_attrs(c, a, image_size)
        for o in analytic:
            values[o.name].append(float(attrs[o.name]))
    for o in analytic:
        v = values[o.name]
        lo, hi = min(v), max(v)
        best, worst = (hi, lo) if o.direction == "maximize" else (lo, hi)
        out[o.name] = ObjectiveRange(best, worst, exact)
    return out


def hypervolume(points: np.ndarray, objectives: Sequence[Objective],
                ranges: Mapping[str, ObjectiveRange]) -> float:
    """Hypervolume of ``points`` (raw objective values, one row per trial), normalised."""
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return 0.0
    norm = np.array([[ranges[o.name].normalise(v) for o, v in zip(objectives, row, strict=True)]
                     for row in pts])
    norm = norm[pareto_mask(norm)]
    return hypervolume_costs(norm, np.full(norm.shape[1], REFERENCE))
