"""Pareto front, hypervolume and knee: hand-computed cases and a brute-force property."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_dil.report.pareto import (
    hypervolume,
    hypervolume_series,
    knee_index,
    normalize_front,
    pareto_mask,
    reference_point,
)

MIN3 = ["minimize"] * 3


def test_pareto_mask_directions_and_duplicates() -> None:
    # maximise a, minimise b
    pts = [(0.5, 2.0), (0.7, 4.0), (0.3, 1.0), (0.4, 3.0), (0.5, 2.0)]
    mask = pareto_mask(pts, ["maximize", "minimize"])
    # (0.4, 3) is dominated by (0.5, 2); the duplicate (0.5, 2) is kept twice
    assert mask.tolist() == [True, True, True, False, True]
    assert pareto_mask([], ["minimize"]).tolist() == []


def test_hypervolume_2d_by_hand() -> None:
    dirs = ["maximize", "minimize"]
    pts = [(0.5, 2.0), (0.7, 4.0), (0.3, 1.0), (0.4, 3.0)]
    ref = (0.0, 5.0)
    # sweep by hand, in costs (-a, b) against (0, 5):
    # (0.7, 4): 0.7 × 1; (0.5, 2) adds 0.5 × (4 − 2); (0.3, 1) adds 0.3 × (2 − 1)
    assert hypervolume(pts, dirs, ref) == pytest.approx(0.7 + 0.5 * 2 + 0.3 * 1)
    # a point not strictly better than the reference in every objective adds nothing
    assert hypervolume([(0.5, 5.0)], dirs, ref) == 0.0
    assert hypervolume([], dirs, ref) == 0.0


def test_hypervolume_3d_unit_boxes() -> None:
    pts = [(0, 0, 1), (0, 1, 0), (1, 0, 0)]
    # inclusion–exclusion: 3 boxes of 4, pairwise overlaps of 2, the triple overlap 1
    assert hypervolume(pts, MIN3, (2, 2, 2)) == pytest.approx(3 * 4 - 3 * 2 + 1)


def _grid_volume(pts: np.ndarray, ref: int) -> int:
    """Unit cells [c, c+1)^d below ref that some point dominates (integer points)."""
    d = pts.shape[1]
    return sum(
        bool((pts <= np.array(c)).all(axis=1).any())
        for c in itertools.product(range(ref), repeat=d)
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 4)] * 3), min_size=1, max_size=7))
def test_hypervolume_equals_counting_cells(points: list[tuple[int, int, int]]) -> None:
    pts = np.array(points, dtype=float)
    assert hypervolume(pts, MIN3, (5, 5, 5)) == pytest.approx(_grid_volume(pts, 5))


def test_hypervolume_series_skips_excluded_and_dominated() -> None:
    dirs = ["minimize", "minimize"]
    pts = [(2, 2), (1, 1), (0, 3), (3, 3)]
    ref = (4, 4)
    series = hypervolume_series(pts, dirs, ref, include=[True, False, True, True])
    # (1, 1) excluded (infeasible); (3, 3) dominated by (2, 2)
    assert series == pytest.approx([4.0, 4.0, 4.0 + 2 * 1, 6.0])


def test_reference_point_rule() -> None:
    dirs = ["maximize", "maximize", "minimize"]
    vals = [(0.6, 100, 2.0), (0.5, 70, 3.0), (0.65, 90, 1.0)]
    ref = reference_point(vals, dirs)
    # worst value pushed 10 % of the range further: 0.5 − 0.015, 70 − 3, 3 + 0.2
    assert ref == pytest.approx([0.485, 67.0, 3.2])
    # a constant objective: 10 % of its value (or 1 for 0)
    assert reference_point([(2.0,), (2.0,)], ["minimize"]) == pytest.approx([2.2])
    assert reference_point([(0.0,)], ["maximize"]) == pytest.approx([-1.0])


def test_knee_on_a_hand_made_front() -> None:
    # maximise mIoU, minimise GFLOPs. Normalised over the front (1 = best):
    # mIoU 0.9→1, 0.85→0.9286, 0.5→0.4286, 0.2→0; GFLOPs 10→0, 3→0.7368, 1→0.9474, 0.5→1.
    # distance to (1, 1): 1.0, 0.2726, 0.5740, 1.0 → the knee is (0.85, 3).
    front = [(0.9, 10.0), (0.85, 3.0), (0.5, 1.0), (0.2, 0.5)]
    dirs = ["maximize", "minimize"]
    norm = normalize_front(front, dirs)
    assert norm[:, 0] == pytest.approx([1, 0.65 / 0.7, 0.3 / 0.7, 0])
    assert norm[:, 1] == pytest.approx([0, 7 / 9.5, 9 / 9.5, 1])
    assert knee_index(front, dirs) == 1
    # order does not matter; a single point is its own knee
    assert knee_index(front[::-1], dirs) == 2
    assert knee_index([(0.3, 1.0)], dirs) == 0


def test_knee_three_objectives_and_constant_objective() -> None:
    # the hand-made study's front (mIoU↑, RF↑, GFLOPs↓): distances 0.707, 1.414, 1.118
    front = [(0.60, 100, 2.0), (0.55, 80, 1.0), (0.65, 90, 3.0)]
    assert knee_index(front, ["maximize", "maximize", "minimize"]) == 0
    # a constant objective counts as best everywhere and does not move the knee
    front2 = [(0.9, 10.0, 5), (0.85, 3.0, 5), (0.5, 1.0, 5), (0.2, 0.5, 5)]
    assert knee_index(front2, ["maximize", "minimize", "minimize"]) == 1
    # ties go to the first listed
    assert knee_index([(1.0, 0.0), (0.0, 1.0)], ["maximize", "maximize"]) == 0


def test_bad_directions() -> None:
    with pytest.raises(ValueError, match="maximize"):
        pareto_mask([(1, 2)], ["max", "min"])
