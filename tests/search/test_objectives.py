"""Objectives and the ranges the search normalises them by."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nas_dil.models import ArchConfig
from nas_dil.models.analytic import analytic_attrs, analytic_batch
from nas_dil.search.objectives import (
    RANGE_SAMPLES,
    Objective,
    SpaceScores,
    objective_ranges,
    range_candidates,
    score_space,
)
from nas_dil.spaces import Candidate, Space, load_space

OBJ = [Objective("miou", "maximize"), Objective("rf", "maximize"),
       Objective("gflops", "minimize")]


def ranges(space: Space, crop: int, extra: list[Candidate] | None = None) -> Any:
    scores = score_space(space, 0, extra or [],
                         lambda cs: analytic_batch(cs, {"stem_width": 8, "num_classes": 5}, crop))
    return objective_ranges(OBJ, scores)


def test_ranges_exact_on_a_small_space() -> None:
    space = load_space("hdc")
    # 64 px: the usable RF varies (at 32 px every hdc candidate's is the whole crop)
    r = ranges(space, 64)
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
    r = ranges(load_space("hdc"), 32)
    assert r["rf"].best == r["rf"].worst == 32.0


def test_one_scoring_orders_the_space_first_then_new_extras() -> None:
    """`score_space` scores each candidate once: the space's own (distinct) rows first, then
    the extras not among them; the ranges take every row, the dead-tap share the space's."""
    space = load_space("hdc")
    own = list(space.enumerate())
    outside = Candidate((1, 1, 1), 3, own[0].output_stride, own[0].width)
    seen: list[int] = []

    def score(cs: list[Candidate]) -> Any:
        seen.append(len(cs))
        return analytic_batch(cs, {"stem_width": 8, "num_classes": 5}, 64)

    s = score_space(space, 0, [own[0], outside], score)
    assert seen == [len(own) + 1] and s.n_space == len(own) and s.exact
    assert len(s.space_col("rf")) == len(own) and len(s.cols["rf"]) == len(own) + 1
    assert s.cols["rf"][-1] == analytic_batch([outside], {"stem_width": 8, "num_classes": 5},
                                              64)["rf"][0]


@pytest.mark.parametrize(("dead", "share"), [([0, 0, 0, 0], 0.0), ([0, 3, 1, 0], 0.5),
                                             ([2, 2, 2, 9], 1.0), ([], 0.0)])
def test_dead_share_counts_the_space_rows_only(dead: list[int], share: float) -> None:
    cols = {"dead_taps": np.array([*dead, 7])}  # the last row: an extra (a baseline)
    assert SpaceScores(cols, len(dead), True).dead_share() == share


def test_a_large_space_is_sampled() -> None:
    cands, exact = range_candidates(load_space("free"), 0)
    assert not exact and len(cands) == RANGE_SAMPLES
