"""Objectives and the ranges the search normalises them by."""

from __future__ import annotations

from nas_dil.models import ArchConfig
from nas_dil.models.analytic import analytic_attrs
from nas_dil.search.objectives import Objective, objective_ranges
from nas_dil.spaces import load_space

OBJ = [Objective("miou", "maximize"), Objective("rf", "maximize"),
       Objective("gflops", "minimize")]


def test_ranges_exact_on_a_small_space() -> None:
    space = load_space("hdc")
    # 64 px: the usable RF varies (at 32 px every hdc candidate's is the whole crop)
    r = objective_ranges(OBJ, space, {"stem_width": 8}, 64, 5, seed=0)
    assert r["miou"].best == 1.0 and r["miou"].worst == 0.0
    assert r["rf"].exact and r["rf"].best > r["rf"].worst
    assert r["gflops"].best < r["gflops"].worst
    # the extremes of the per-candidate analytic values over the enumerated space
    rf = [analytic_attrs(c.schedule, ArchConfig(stem_width=8, num_classes=5,
                                                output_stride=c.output_stride, width=c.width),
                         64)["rf"] for c in space.enumerate()]
    assert (r["rf"].best, r["rf"].worst) == (max(rf), min(rf))
    assert isinstance(r["rf"].best, float)  # stored as floats in the study's metadata
    assert r["rf"].best == 64  # never more than the crop


def test_usable_rf_is_constant_when_every_candidate_fills_the_crop() -> None:
    r = objective_ranges(OBJ, load_space("hdc"), {"stem_width": 8}, 32, 5, seed=0)
    assert r["rf"].best == r["rf"].worst == 32.0
