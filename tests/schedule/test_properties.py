"""Property tests against brute force (hypothesis)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_dil import analyze
from nas_dil.schedule import (
    Schedule,
    batch_holes_1d,
    batch_m,
    count_map_2d,
    counts_1d,
    coverage,
    m_values,
    receptive_field,
    score_batch,
)

rates_st = st.lists(st.integers(1, 12), min_size=1, max_size=6)
kernel_st = st.sampled_from([1, 3, 5, 7])


def _brute_counts_2d(rates: list[int], kernel: int, strides: list[int] | None = None):
    """Compose the dilated kernels explicitly as 2-D path counts (no convolution trick)."""
    strides = strides or [1] * len(rates)
    h = (kernel - 1) // 2
    paths: dict[tuple[int, int], int] = {(0, 0): 1}
    jump = 1
    for r, s in zip(rates, strides, strict=True):
        nxt: dict[tuple[int, int], int] = {}
        for (y, x), c in paths.items():
            for ty in range(-h, h + 1):
                for tx in range(-h, h + 1):
                    key = (y + ty * r * jump, x + tx * r * jump)
                    nxt[key] = nxt.get(key, 0) + c
        paths = nxt
        jump *= s
    return paths


@settings(max_examples=60, deadline=None)
@given(rates=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       kernel=st.sampled_from([1, 3, 5]))
def test_count_map_equals_brute_force(rates: list[int], kernel: int) -> None:
    s = Schedule(tuple(rates), (kernel,))
    got = count_map_2d(s)
    brute = _brute_counts_2d(rates, kernel)
    half = got.shape[0] // 2
    expected = np.zeros_like(got)
    for (y, x), c in brute.items():
        expected[y + half, x + half] = c
    assert np.array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_strided_counts_equal_brute_force(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 3))
    rates = data.draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    strides = data.draw(st.lists(st.integers(1, 2), min_size=n, max_size=n))
    s = Schedule(tuple(rates), (3,), tuple(strides))
    brute = _brute_counts_2d(rates, 3, strides)
    ext = max(abs(x) for _, x in brute)
    assert receptive_field(s) == 2 * ext + 1
    c = counts_1d(s)
    assert int(c.sum()) ** 2 == sum(brute.values())


@settings(max_examples=150, deadline=None)
@given(rates=rates_st, kernel=kernel_st)
def test_rf_is_extent_of_count_map(rates: list[int], kernel: int) -> None:
    s = Schedule(tuple(rates), (kernel,))
    c = counts_1d(s)
    nz = np.flatnonzero(c)
    assert receptive_field(s) == c.size == nz[-1] - nz[0] + 1
    assert c[0] > 0 and c[-1] > 0  # the extremes are always reached


@settings(max_examples=300, deadline=None)
@given(tail=st.lists(st.integers(1, 15), min_size=1, max_size=6), kernel=st.sampled_from([3, 5]))
def test_rule1_never_accepts_holes_when_r1_is_1(tail: list[int], kernel: int) -> None:
    rates = [1, *tail]
    a = analyze(rates, kernel=kernel)
    if a["hdc_rule1"]:
        assert a["gridding_free"], rates


@settings(max_examples=100, deadline=None)
@given(rates=rates_st, kernel=st.sampled_from([1, 3, 5]))
def test_holes_are_order_independent(rates: list[int], kernel: int) -> None:
    a = coverage(Schedule(tuple(rates), (kernel,)))
    b = coverage(Schedule(tuple(sorted(rates)), (kernel,)))
    assert a == b


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 7), kernel=kernel_st, seed=st.integers(0, 2**31))
def test_batch_matches_scalar(n: int, kernel: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rates = rng.integers(1, 70, size=(40, n))
    sc = score_batch(rates, kernel)
    holes_nodedupe = batch_holes_1d(rates, kernel, dedupe=False)
    for i, row in enumerate(rates.tolist()):
        cov = coverage(Schedule(tuple(row), (kernel,)))
        assert sc.rf[i] == cov.rf
        assert sc.holes[i] == cov.holes and sc.holes_1d[i] == cov.holes_1d == holes_nodedupe[i]
        assert sc.coverage[i] == cov.coverage
        assert sc.m[i].tolist() == m_values(row)
        assert bool(sc.gridding_free[i]) == cov.gridding_free
    assert np.array_equal(batch_m(rates), sc.m)


@settings(max_examples=100, deadline=None)
@given(rates=rates_st, kernel=kernel_st)
def test_analyze_json_contract(rates: list[int], kernel: int) -> None:
    a = json.loads(json.dumps(analyze(rates, kernel=kernel)))
    assert a["schedule"] == rates and a["kernel"] == kernel
    assert isinstance(a["rf"], int) and a["rf"] == len(a["counts_1d"])
    assert len(a["m"]) == len(rates) and a["m"][-1] == rates[-1]
    assert isinstance(a["hdc_rule1"], bool) and isinstance(a["hdc_rule2"], bool)
    assert 0.0 <= a["coverage"] <= 1.0
    assert isinstance(a["holes"], int) and a["holes"] >= 0
    assert a["gridding_free"] is (a["holes"] == 0)
    assert all(isinstance(c, int) and c >= 0 for c in a["counts_1d"])
    assert sum(a["counts_1d"]) == kernel ** len(rates)


def test_deep_schedule_counts_do_not_overflow() -> None:
    s = Schedule((1,) * 60)
    cov = coverage(s)
    assert cov.gridding_free and cov.rf == 121
    assert counts_1d(s).dtype == np.float64  # 3**60 does not fit int64: said so by dtype
