"""The multi-objective early-stopping rule (nas_dil.search.early_stop), on its own."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_dil.search.early_stop import Completed, make_snapshot, optimistic_miou, stop_reason

# analytic losses: (-rf, gflops); curves of 4 evaluations
DONE = [
    Completed(0, (0.30, 0.40, 0.45, 0.50), (-100.0, 1.0)),  # front: best mIoU
    Completed(1, (0.20, 0.25, 0.28, 0.30), (-200.0, 1.0)),  # front: more RF
    Completed(2, (0.10, 0.20, 0.30, 0.35), (-50.0, 2.0)),  # dominated by 0
]


def snap(min_completed: int = 3, margin: float = 0.0, min_evals: int = 1):
    return make_snapshot(DONE, min_completed=min_completed, n_evals=4, margin=margin,
                         min_evals=min_evals, names=("rf", "gflops"))


def test_snapshot_front_and_gains() -> None:
    s = snap()
    assert s is not None
    assert [p.number for p in s.front] == [0, 1]
    # gains after eval 1, 2, 3: max(final - curve[e-1]) over completed trials
    assert s.gains == pytest.approx((0.25, 0.15, 0.05))


def test_no_snapshot_before_min_completed() -> None:
    assert snap(min_completed=4) is None
    assert stop_reason([0.0], (0.0, 0.0), None) is None


def test_stops_a_hopeless_trial_with_a_reason() -> None:
    s = snap()
    # same RF and FLOPs as trial 0, far behind: 0.1 + 0.25 < 0.5
    reason = stop_reason([0.1], (-100.0, 1.0), s)
    assert reason is not None
    assert "trial 0" in reason and "eval 1/4" in reason and "rf, gflops" in reason
    assert optimistic_miou([0.1], s) == pytest.approx(0.1 + 0.25)


def test_keeps_a_trial_that_could_still_catch_up() -> None:
    s = snap()
    assert stop_reason([0.3], (-100.0, 1.0), s) is None  # 0.3 + 0.25 > 0.5
    assert stop_reason([0.26], (-100.0, 1.0), snap(margin=0.0)) is None  # 0.51 > 0.5


def test_better_analytic_objectives_are_never_stopped() -> None:
    s = snap()
    # more RF than anyone: no front trial is no worse in RF, whatever its mIoU
    assert stop_reason([0.0], (-500.0, 1.0), s) is None
    # fewer FLOPs than anyone
    assert stop_reason([0.0, 0.0, 0.0], (-10.0, 0.5), s) is None


def test_never_at_the_last_evaluation_or_before_min_evals() -> None:
    s = snap(min_evals=2)
    assert stop_reason([0.0], (-100.0, 1.0), s) is None
    assert stop_reason([0.0, 0.0], (-100.0, 1.0), s) is not None
    assert stop_reason([0.0, 0.0, 0.0, 0.0], (-100.0, 1.0), s) is None


def test_margin_protects() -> None:
    assert stop_reason([0.2], (-100.0, 1.0), snap(margin=0.0)) is not None  # 0.45 < 0.5
    assert stop_reason([0.2], (-100.0, 1.0), snap(margin=0.1)) is None  # 0.55 > 0.5


curves = st.lists(st.floats(0, 1), min_size=4, max_size=4).map(tuple)
losses = st.tuples(st.integers(-300, -1).map(float), st.integers(1, 4).map(float))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(curves, losses), min_size=3, max_size=8), curves, losses,
       st.integers(1, 3))
def test_sound_against_the_gains_seen(done, curve, own, e) -> None:
    """A trial that is stopped would not have reached the front had it made, after eval e,
    a gain no larger than the largest seen: its final point is dominated."""
    completed = [Completed(i, c, loss) for i, (c, loss) in enumerate(done)]
    s = make_snapshot(completed, min_completed=3, n_evals=4, margin=0.0, min_evals=1)
    assert s is not None
    if stop_reason(curve[:e], own, s) is None:
        return
    best_final = max(curve[:e]) + s.gains[e - 1]
    assert any(p.miou >= best_final and all(a <= b for a, b in zip(p.losses, own, strict=True))
               for p in s.front)
