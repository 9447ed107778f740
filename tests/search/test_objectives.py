"""Analytic metrics, Pareto fronts and the normalised hypervolume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nas_dil.models import ArchConfig
from nas_dil.schedule import coverage, hdc_report, net_cost
from nas_dil.search.objectives import (
    REFERENCE,
    Objective,
    ObjectiveRange,
    analytic_attrs,
    hypervolume,
    objective_ranges,
    pareto_mask,
)
from nas_dil.spaces import Candidate, load_space

OBJ = [Objective("miou", "maximize"), Objective("rf", "maximize"),
       Objective("gflops", "minimize")]


def test_analytic_attrs_match_the_schedule_code() -> None:
    cand = Candidate((1, 2, 9), 3, 8, 16)
    arch = ArchConfig(output_stride=8, width=16, num_classes=5)
    a = analytic_attrs(cand, arch, 32)
    cost = net_cost(32, 32, (1, 2, 9), kernel=3, **arch.cost_kwargs())
    cov = coverage(cand.schedule)
    hdc = hdc_report([1, 2, 9], 3)
    assert a["rf"] == cost.rf_image and a["flops"] == cost.flops and a["params"] == cost.params
    assert a["gflops"] == pytest.approx(cost.flops / 1e9)
    assert a["rf_stack"] == cov.rf == 25 and a["holes"] == cov.holes > 0
    assert a["gridding_free"] is False and a["m"] == [3, 5, 9]
    # hdc_rule1: the whole schedule (M_2 = 5 > K = 3), as analyze() and the export say;
    # hdc_rule1_groups: each sawtooth group on its own
    assert a["hdc_rule1"] is hdc.rule1.passed is False
    assert a["hdc_rule1_groups"] is hdc.rule1_groups.passed and a["hdc"] is hdc.passed


def test_pareto_mask() -> None:
    pts = np.array([[0, 0], [1, 1], [0, 1], [-1, 2], [-1, 2]])
    assert pareto_mask(pts).tolist() == [True, False, False, True, True]
    assert pareto_mask(np.zeros((0, 2))).tolist() == []


def _box_hv(norm: np.ndarray) -> float:
    """Hypervolume by inclusion on a grid of the distinct coordinates (small cases)."""
    axes = [np.unique(np.append(norm[:, d], REFERENCE)) for d in range(norm.shape[1])]
    vol = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lo = np.array([axes[d][i] for d, i in enumerate(cell)])
        hi = np.array([axes[d][i + 1] for d, i in enumerate(cell)])
        if (norm <= lo).all(axis=1).any():
            vol += float(np.prod(hi - lo))
    return vol


def test_hypervolume_normalised_with_reference_1_1() -> None:
    ranges = {"miou": ObjectiveRange(1.0, 0.0, True), "rf": ObjectiveRange(300, 100, True),
              "gflops": ObjectiveRange(0.001, 0.011, True)}
    pts = np.array([[0.5, 300, 0.011], [0.25, 200, 0.006], [0.2, 100, 0.011]])
    norm = np.array([[0.5, 0.0, 1.0], [0.75, 0.5, 0.5], [0.8, 1.0, 1.0]])
    assert hypervolume(pts, OBJ, ranges) == pytest.approx(_box_hv(norm))
    # the ideal point fills the whole box
    ideal = np.array([[1.0, 300, 0.001]])
    assert hypervolume(ideal, OBJ, ranges) == pytest.approx(REFERENCE**3)
    assert hypervolume(np.zeros((0, 3)), OBJ, ranges) == 0.0


def test_ranges_exact_on_a_small_space() -> None:
    space = load_space("hdc")
    r = objective_ranges(OBJ, space, {"stem_width": 8}, 32, 5, seed=0)
    assert r["miou"].best == 1.0 and r["miou"].worst == 0.0
    assert r["rf"].exact and r["rf"].best > r["rf"].worst
    assert r["gflops"].best < r["gflops"].worst
