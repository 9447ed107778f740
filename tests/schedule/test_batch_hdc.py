"""`batch_hdc` against `hdc_report` row by row: hand-picked schedules and random ones of every
depth 1-8 and kernel 1, 3, 5."""

from __future__ import annotations

import numpy as np
import pytest

from nas_dil.schedule import batch_hdc, hdc_report


def _scalar(row: list[int], kernel: int) -> tuple[bool, ...]:
    r = hdc_report(row, kernel)
    return r.rule1.passed, r.rule1_groups.passed, r.rule2.passed, r.rule3.passed, r.passed


def _batch(rates: np.ndarray, kernel: int) -> list[tuple[bool, ...]]:
    h = batch_hdc(rates, kernel)
    return [tuple(bool(x) for x in t) for t in zip(h.rule1, h.rule1_groups, h.rule2, h.rule3,
                                                    h.passed, strict=True)]


@pytest.mark.parametrize(("rates", "expected"), [
    # (rule1 whole, rule1 per group, rule2, rule3, hdc)
    ([1, 2, 5], (True, True, True, True, True)),
    ([1, 2, 5, 1, 2, 5], (False, True, True, True, True)),  # whole M_2 = 5, groups M_2 = 2
    ([1, 2, 9], (False, False, True, True, False)),  # M_2 = 5 > 3
    ([2, 4, 8], (False, False, False, True, False)),  # M_2 = 4 > 3; shares the factor 2
    ([1, 3, 4], (True, True, True, True, True)),  # M = 1, 3, 4: M_2 = 3
    ([2, 2, 2], (True, True, False, False, False)),  # three one-layer groups
    ([3], (True, True, False, False, False)),  # one layer: nothing to fill; no rising group
    ([1], (True, True, True, False, False)),
])
def test_hand_picked(rates: list[int], expected: tuple[bool, ...]) -> None:
    assert _scalar(rates, 3) == expected
    assert _batch(np.array([rates]), 3) == [expected]


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("depth", range(1, 9))
def test_equals_hdc_report(depth: int, kernel: int) -> None:
    rng = np.random.default_rng(depth * 10 + kernel)
    rates = rng.integers(1, 13, size=(400, depth))
    assert _batch(rates, kernel) == [_scalar(row, kernel) for row in rates.tolist()]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="kernel"):
        batch_hdc(np.array([[1, 2]]), 4)
    with pytest.raises(ValueError, match=">= 1"):
        batch_hdc(np.array([[0, 2]]), 3)
