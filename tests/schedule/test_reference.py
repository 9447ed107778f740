"""Every reference value in THEORY.md, as parametrize tables of hand-computed numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nas_dil import analyze
from nas_dil.schedule import (
    Schedule,
    count_map_2d,
    counts_1d,
    coverage,
    hdc_report,
    m_values,
    receptive_field,
    rf_in_image,
    rf_per_layer,
)


@pytest.mark.parametrize(
    ("rates", "rf"),
    [((1, 1, 1), 7), ((1, 2, 3), 13), ((2, 2, 2), 13), ((1, 2, 4), 15), ((1, 2, 5), 17),
     ((1,), 3), ((4,), 9)],
)
def test_rf_reference(rates: tuple[int, ...], rf: int) -> None:
    assert receptive_field(Schedule(rates)) == rf


def test_yu_koltun_table1() -> None:
    s = Schedule((1, 1, 2, 4, 8, 16, 1))
    assert rf_per_layer(s).tolist() == [3, 5, 9, 17, 33, 65, 67]


@pytest.mark.parametrize(
    ("rates", "kernel", "strides", "rf"),
    [
        ((1, 1), 3, (2, 1), 7),  # second layer's taps are 2 px apart: 1 + 2 + 2·2
        ((1, 1, 1), 3, (2, 2, 1), 15),  # 1 + 2 + 4 + 8
        ((1, 2), 5, (1, 1), 13),  # 1 + 4 + 8
        ((1,), 1, (1,), 1),
    ],
)
def test_rf_with_strides_and_kernels(rates, kernel, strides, rf) -> None:
    assert receptive_field(Schedule(rates, (kernel,), strides)) == rf


def test_rf_in_image() -> None:
    # a stem of stride 8 whose units see 19 px: one stack pixel is 8 image px
    assert rf_in_image(17, 8, 19) == 19 + 16 * 8
    assert rf_in_image(1, 8, 19) == 19


@pytest.mark.parametrize(
    ("rates", "m"),
    [((1, 2, 5), [1, 2, 5]), ((1, 2, 9), [3, 5, 9]), ((1, 3, 1), [3, 5, 1]), ((7,), [7])],
)
def test_m_recursion(rates, m) -> None:
    assert m_values(rates) == m


@pytest.mark.parametrize(
    ("rates", "rule1"),
    [((1, 2, 5), True), ((1, 2, 9), False), ((1, 3, 1), False), ((1, 2, 3), True)],
)
def test_rule1(rates, rule1) -> None:
    assert hdc_report(rates, 3).rule1.passed is rule1


def test_rule2_and_rule3() -> None:
    rep = hdc_report((2, 4, 8), 3)
    assert not rep.rule2.passed and "factor 2" in rep.rule2.reason
    rep = hdc_report((1, 2, 5, 1, 2, 5), 3)
    assert rep.groups == ((1, 2, 5), (1, 2, 5))
    assert rep.rule3.passed and "repeated" in rep.rule3.reason
    assert rep.rule1_groups.passed and not rep.rule1.passed  # whole-schedule M_2 is 5
    assert rep.passed
    rep = hdc_report((2, 2, 2), 3)
    assert not rep.rule3.passed and not rep.rule2.passed
    assert hdc_report((1, 2, 3, 1, 2, 3), 3).rule3.passed


def test_counts_111_seed000() -> None:
    s = Schedule((1, 1, 1))
    assert counts_1d(s).tolist() == [1, 3, 6, 7, 6, 3, 1]
    assert count_map_2d(s)[3, 3] == 49


def test_222_checkerboard() -> None:
    s = Schedule((2, 2, 2))
    c = counts_1d(s)
    assert c.size == 13
    assert (c[1::2] == 0).all() and (c[::2] > 0).all()
    cov = coverage(s)
    assert cov.holes == 13 * 13 - 7 * 7 and cov.holes_1d == 6 and cov.largest_gap == 1
    assert not cov.gridding_free
    m = count_map_2d(s)
    assert m[6, 6] == 49 and m[5, 6] == 0 and m[5, 5] == 0


def test_123_no_holes() -> None:
    cov = coverage(Schedule((1, 2, 3)))
    assert cov.rf == 13 and cov.holes == 0 and cov.gridding_free and cov.coverage == 1.0


def test_129_holes_at_4_and_5() -> None:
    c = counts_1d(Schedule((1, 2, 9)))
    centre = c.size // 2
    zeros = sorted(int(i) - centre for i in np.flatnonzero(c == 0))
    assert zeros == [-5, -4, 4, 5]


def test_248_odd_offsets_are_holes() -> None:
    c = counts_1d(Schedule((2, 4, 8)))
    assert (c[1::2] == 0).all()


def _brute_holefree(rates: tuple[int, ...], k: int) -> bool:
    reach = {0}
    h = (k - 1) // 2
    for r in rates:
        reach = {a + t * r for a in reach for t in range(-h, h + 1)}
    return len(reach) == 2 * max(reach) + 1


@pytest.mark.slow
@pytest.mark.parametrize(("kernel", "hole_free", "rejected"), [(3, 9904, 7887), (5, 14502, 9499)])
def test_theory_brute_force_counts(kernel: int, hole_free: int, rejected: int) -> None:
    """THEORY.md: 2–5 layers, rates 1–11, r_1 = 1: 16,104 schedules; rule 1 is sound."""
    from nas_dil.schedule import score_batch

    n_total = n_free = n_rej = n_false_accept = 0
    for n in range(2, 6):
        tails = np.array(list(itertools.product(range(1, 12), repeat=n - 1)), dtype=np.int64)
        rates = np.hstack([np.ones((len(tails), 1), dtype=np.int64), tails])
        sc = score_batch(rates, kernel)
        n_total += len(rates)
        n_free += int(sc.gridding_free.sum())
        n_rej += int((sc.gridding_free & ~sc.hdc_rule1).sum())
        n_false_accept += int((~sc.gridding_free & sc.hdc_rule1).sum())
    assert (n_total, n_free, n_rej, n_false_accept) == (16104, hole_free, rejected, 0)


def test_k5_non_decreasing_disagreements() -> None:
    """THEORY.md: for K = 5, rule 1 rejects 39 non-decreasing hole-free schedules;
    for K = 3 rule 1 and the exact test agree exactly on non-decreasing schedules."""
    from nas_dil.schedule import score_batch

    for kernel, expected in ((3, 0), (5, 39)):
        disagree = 0
        for n in range(2, 6):
            tails = [t for t in itertools.combinations_with_replacement(range(1, 12), n - 1)]
            rates = np.array([(1, *t) for t in tails], dtype=np.int64)
            sc = score_batch(rates, kernel)
            disagree += int((sc.gridding_free != sc.hdc_rule1).sum())
        assert disagree == expected


def test_analyze_contract() -> None:
    a = analyze("1,2,5", kernel=3)
    assert a["schedule"] == [1, 2, 5] and a["kernel"] == 3 and a["rf"] == 17
    assert a["m"] == [1, 2, 5] and a["hdc_rule1"] is True and a["hdc_rule2"] is True
    assert a["coverage"] == 1.0 and a["holes"] == 0 and a["gridding_free"] is True
    assert sum(a["counts_1d"]) == 27 and len(a["counts_1d"]) == 17
    b = analyze([2, 2, 2])
    assert b["holes"] == 120 and b["gridding_free"] is False
    assert 0.0 <= b["coverage"] <= 1.0
