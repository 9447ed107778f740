"""`analyze(schedule)`: everything the theory says about one schedule, as a JSON-able dict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas_dil.schedule.coverage import counts_1d, coverage, sparse_counts_1d
from nas_dil.schedule.crop import crop_report
from nas_dil.schedule.hdc import hdc_report
from nas_dil.schedule.rf import effective_rates, receptive_field, rf_per_layer
from nas_dil.schedule.types import Schedule, ScheduleError

__all__ = ["COUNTS_LIST_MAX", "analyze"]

COUNTS_LIST_MAX = 1 << 16  # widest RF whose dense 1-D counts are listed; wider: sparse pairs


def _counts(s: Schedule, residual: bool) -> dict[str, Any]:
    """Dense counts up to COUNTS_LIST_MAX offsets, else the distinct offsets (when few)."""
    if receptive_field(s) <= COUNTS_LIST_MAX:
        return {"counts_1d": [int(c) for c in counts_1d(s, residual).tolist()]}
    offs, cnt = sparse_counts_1d(s, residual)
    if offs.size > COUNTS_LIST_MAX:
        return {"counts_1d": None, "counts_1d_sparse": None}
    return {"counts_1d": None,
            "counts_1d_sparse": {"offsets": offs.tolist(), "counts": [int(c) for c in cnt]}}


def analyze(schedule: Schedule | str | Sequence[int], kernel: int = 3, *,
            residual: bool = False, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Analyse a schedule: RF per layer, HDC M-trace and rules, exact coverage and holes.

    ``schedule`` may be a Schedule, ``"1,2,5"`` or a list of rates; ``kernel`` applies to
    every layer unless the Schedule already carries per-layer kernels. ``residual``: the
    path counts of x + f(x) layers (support and holes do not change). ``size`` (h, w): the
    stack's input size, for dead taps and the usable RF (`crop.py`), under ``"crop"``.
    Bounded for any rate ``Schedule`` accepts: counts are listed densely up to
    ``COUNTS_LIST_MAX`` offsets, then as sparse (offset, count) pairs.
    """
    if isinstance(kernel, bool) or not isinstance(kernel, int):
        raise ScheduleError(f"kernel={kernel!r}: must be an odd integer >= 1")
    s = Schedule.coerce(schedule, kernel=kernel)
    eff = effective_rates(s).tolist()
    rep = hdc_report(eff, kernel=s.kernels[0])
    cov = coverage(s)
    counts = _counts(s, residual)
    out: dict[str, Any] = {
        "schedule": list(s.rates),
        "kernel": s.uniform_kernel if s.uniform_kernel is not None else list(s.kernels),
        "kernels": list(s.kernels),
        "strides": list(s.strides),
        "effective_rates": eff,
        "rf": cov.rf,
        "rf_per_layer": rf_per_layer(s).tolist(),
        "m": list(rep.m),
        "hdc_rule1": rep.rule1.passed,
        "hdc_rule1_reason": rep.rule1.reason,
        "hdc_rule1_groups": rep.rule1_groups.passed,
        "hdc_rule1_groups_reason": rep.rule1_groups.reason,
        "hdc_rule2": rep.rule2.passed,
        "hdc_rule2_reason": rep.rule2.reason,
        "hdc_rule3": rep.rule3.passed,
        "hdc_rule3_reason": rep.rule3.reason,
        "hdc": rep.passed,
        "groups": [list(g) for g in rep.groups],
        "group_m": [list(g) for g in rep.group_m],
        "group_gcd": list(rep.group_gcd),
        "coverage": cov.coverage,
        "holes": cov.holes,
        "holes_1d": cov.holes_1d,
        "largest_gap": cov.largest_gap,
        "gridding_free": cov.gridding_free,
        "residual": residual,
        **counts,
    }
    if not s.square:
        out.update({"rates_w": list(s.rates_w), "rf_w": cov.rf_w, "holes_w": cov.holes_w})
    if s.smooth:
        out["smooth"] = list(s.smooth)
    if s.tail:
        out["tail"] = s.tail
    if size is not None:
        out["crop"] = crop_report(s, *size).to_dict()
    return out
