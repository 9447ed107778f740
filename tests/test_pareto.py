"""`nas_dil.pareto`: dominance, the exact hypervolume and its improvement, normalisation, the
reference point and the knee — hand-computed cases and brute-force properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nas_dil.pareto as pareto
from nas_dil.pareto import (
    REF_MARGIN,
    REFERENCE,
    dominates,
    hypervolume,
    hypervolume_improvement,
    hypervolume_series,
    knee_index,
    nondominated,
    normalise,
    normalised_hypervolume,
    pareto_mask,
    reference_point,
    to_losses,
)

MIN3 = ["minimize"] * 3


def test_one_reference_constant() -> None:
    assert REFERENCE == 1.1 and REF_MARGIN == 0.1  # the search's stored figures depend on it


# -- dominance --------------------------------------------------------------------------------

def test_nondominated_losses() -> None:
    pts = np.array([[0, 0], [1, 1], [0, 1], [-1, 2], [-1, 2]])
    assert nondominated(pts).tolist() == [True, False, False, True, True]
    assert nondominated(np.zeros((0, 2))).tolist() == []


def test_pareto_mask_directions_and_duplicates() -> None:
    # maximise a, minimise b
    pts = [(0.5, 2.0), (0.7, 4.0), (0.3, 1.0), (0.4, 3.0), (0.5, 2.0)]
    mask = pareto_mask(pts, ["maximize", "minimize"])
    # (0.4, 3) is dominated by (0.5, 2); the duplicate (0.5, 2) is kept twice
    assert mask.tolist() == [True, True, True, False, True]
    assert pareto_mask([], ["minimize"]).tolist() == []


def test_dominates_broadcasts() -> None:
    assert dominates([0, 1], [1, 1]) and not dominates([1, 1], [1, 1])
    assert not dominates([0, 2], [1, 1])
    front = np.array([[0, 2], [2, 0], [1, 1]])
    assert dominates(front, [1, 2]).tolist() == [True, False, True]


def test_bad_directions_and_shapes() -> None:
    with pytest.raises(ValueError, match="maximize"):
        pareto_mask([(1, 2)], ["max", "min"])
    with pytest.raises(ValueError, match="shape"):
        to_losses([(1, 2, 3)], ["minimize", "minimize"])


# -- hypervolume ------------------------------------------------------------------------------

def test_hypervolume_2d_by_hand() -> None:
    losses = to_losses([(0.5, 2.0), (0.7, 4.0), (0.3, 1.0), (0.4, 3.0)],
                       ["maximize", "minimize"])
    ref = (0.0, 5.0)
    # sweep by hand, in losses (-a, b) against (0, 5):
    # (0.7, 4): 0.7 × 1; (0.5, 2) adds 0.5 × (4 − 2); (0.3, 1) adds 0.3 × (2 − 1)
    assert hypervolume(losses, ref) == pytest.approx(0.7 + 0.5 * 2 + 0.3 * 1)
    # a point not strictly better than the reference in every objective adds nothing
    assert hypervolume([(-0.5, 5.0)], ref) == 0.0
    assert hypervolume([], ref) == 0.0


def test_hypervolume_3d_unit_boxes() -> None:
    pts = [(0, 0, 1), (0, 1, 0), (1, 0, 0)]
    # inclusion–exclusion: 3 boxes of 4, pairwise overlaps of 2, the triple overlap 1
    assert hypervolume(pts, (2, 2, 2)) == pytest.approx(3 * 4 - 3 * 2 + 1)


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
    assert hypervolume(pts, (5, 5, 5)) == pytest.approx(_grid_volume(pts, 5))


def test_hypervolume_series_skips_excluded_and_dominated() -> None:
    pts = [(2, 2), (1, 1), (0, 3), (3, 3)]
    series = hypervolume_series(pts, (4, 4), include=[True, False, True, True])
    # (1, 1) excluded (infeasible); (3, 3) dominated by (2, 2)
    assert series == pytest.approx([4.0, 4.0, 4.0 + 2 * 1, 6.0])


# -- normalisation and the normalised hypervolume --------------------------------------------

def test_normalise_either_orientation_clipped_or_not() -> None:
    best, worst = np.array([1.0, 100.0, 0.0]), np.array([0.0, 300.0, 0.0])  # last: constant
    v = np.array([[0.5, 200.0, 3.0], [1.5, 50.0, 0.0]])
    assert normalise(v, best, worst).tolist() == [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]
    raw = normalise(v, best, worst, clip=False)
    assert raw.tolist() == [[0.5, 0.5, 3.0], [-0.5, -0.25, 0.0]]


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


def test_normalised_hypervolume_with_reference_1_1() -> None:
    # mIoU↑ in [0, 1], RF↑ over [100, 300], GFLOPs↓ over [0.001, 0.011]
    best, worst = [1.0, 300, 0.001], [0.0, 100, 0.011]
    pts = np.array([[0.5, 300, 0.011], [0.25, 200, 0.006], [0.2, 100, 0.011]])
    norm = np.array([[0.5, 0.0, 1.0], [0.75, 0.5, 0.5], [0.8, 1.0, 1.0]])
    assert normalised_hypervolume(pts, best, worst) == pytest.approx(_box_hv(norm))
    # the ideal point fills the whole box; values past the range are clipped into it
    assert normalised_hypervolume([[1.0, 300, 0.001]], best, worst) == pytest.approx(
        REFERENCE**3)
    assert normalised_hypervolume([[1.0, 400, 0.0]], best, worst) == pytest.approx(REFERENCE**3)
    assert normalised_hypervolume(np.zeros((0, 3)), best, worst) == 0.0


def test_reference_point_rule() -> None:
    dirs = ["maximize", "maximize", "minimize"]
    losses = to_losses([(0.6, 100, 2.0), (0.5, 70, 3.0), (0.65, 90, 1.0)], dirs)
    # worst value pushed 10 % of the range further: 0.5 − 0.015, 70 − 3, 3 + 0.2
    assert reference_point(losses) == pytest.approx([-0.485, -67.0, 3.2])
    # a constant objective: 10 % of its value (or 1 for 0)
    assert reference_point([(2.0,), (2.0,)]) == pytest.approx([2.2])
    assert reference_point([(0.0,)]) == pytest.approx([1.0])
    with pytest.raises(ValueError, match="at least one point"):
        reference_point(np.zeros((0, 2)))


# -- hypervolume improvement ------------------------------------------------------------------

def _brute_hvi(front: np.ndarray, p: np.ndarray, ref: np.ndarray) -> float:
    return hypervolume(np.vstack([front, p]), ref) - hypervolume(front, ref)


@pytest.mark.parametrize(("front", "point", "expected"), [
    ([], [0.0, 0.0], 1.0),  # the whole box up to ref (1, 1)
    ([[0.5, 0.5]], [0.0, 0.0], 0.75),  # 1 − the front's 0.25
    ([[0.5, 0.5]], [0.5, 0.5], 0.0),  # equal to a front point
    ([[0.5, 0.5]], [0.6, 0.2], 0.4 * 0.3),  # only the strip below the front point
    ([[0.2, 0.8], [0.8, 0.2]], [0.5, 0.5], 0.3 * 0.3),
    ([[0.5, 0.5, 0.5]], [0.0, 0.0, 0.75], 0.25 - 0.125 * 0.5),  # 3-D: box 1·1·0.25 − overlap
    ([[0.5]], [0.2], 0.3),  # 1-D: the gap to the best front value
    ([], [1.0, 0.0], 0.0),  # on the reference point: nothing
])
def test_hypervolume_improvement_hand_values(front: list[list[float]], point: list[float],
                                             expected: float) -> None:
    k = len(point)
    h = hypervolume_improvement(np.array(front, dtype=float).reshape(-1, k),
                                np.array([point], dtype=float), np.ones(k))
    assert h[0] == pytest.approx(expected)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("fallback", [False, True])
def test_hypervolume_improvement_matches_brute_force(k: int, fallback: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if fallback:  # the point-by-point path of large decompositions
        monkeypatch.setattr(pareto, "MAX_CELLS", 0)
    rng = np.random.default_rng(k)
    ref = np.full(k, REFERENCE)
    for _ in range(25):
        front = rng.random((int(rng.integers(0, 10)), k))
        pts = rng.random((15, k)) * 1.4 - 0.2  # some beyond the front's range, some past ref
        if len(front) >= 3:
            pts[:3] = front[:3]  # duplicates of front points add nothing
        got = hypervolume_improvement(front, pts, ref)
        want = [_brute_hvi(front, p, ref) for p in pts]
        np.testing.assert_allclose(got, want, atol=1e-12)


# -- the knee ---------------------------------------------------------------------------------

def test_knee_on_a_hand_made_front() -> None:
    # maximise mIoU, minimise GFLOPs. Normalised over the front (0 = best):
    # mIoU 0.9→0, 0.85→0.0714, 0.5→0.5714, 0.2→1; GFLOPs 10→1, 3→0.2632, 1→0.0526, 0.5→0.
    # distance to (0, 0): 1.0, 0.2726, 0.5740, 1.0 → the knee is (0.85, 3).
    dirs = ["maximize", "minimize"]
    front = to_losses([(0.9, 10.0), (0.85, 3.0), (0.5, 1.0), (0.2, 0.5)], dirs)
    norm = normalise(front, front.min(axis=0), front.max(axis=0))
    assert norm[:, 0] == pytest.approx([0, 0.05 / 0.7, 0.4 / 0.7, 1])
    assert norm[:, 1] == pytest.approx([1, 2.5 / 9.5, 0.5 / 9.5, 0])
    assert knee_index(front) == 1
    # order does not matter; a single point is its own knee
    assert knee_index(front[::-1]) == 2
    assert knee_index([(-0.3, 1.0)]) == 0
    with pytest.raises(ValueError, match="empty"):
        knee_index(np.zeros((0, 2)))


def test_knee_three_objectives_and_constant_objective() -> None:
    # the hand-made study's front (mIoU↑, RF↑, GFLOPs↓): distances 0.707, 1.414, 1.118
    front = [(0.60, 100, 2.0), (0.55, 80, 1.0), (0.65, 90, 3.0)]
    assert knee_index(to_losses(front, ["maximize", "maximize", "minimize"])) == 0
    # a constant objective counts as best everywhere and does not move the knee
    front2 = [(0.9, 10.0, 5), (0.85, 3.0, 5), (0.5, 1.0, 5), (0.2, 0.5, 5)]
    assert knee_index(to_losses(front2, ["maximize", "minimize", "minimize"])) == 1
    # ties go to the first listed
    assert knee_index(to_losses([(1.0, 0.0), (0.0, 1.0)], ["maximize", "maximize"])) == 0
