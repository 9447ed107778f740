"""Degridding variants and residual counts (smoothing, per-axis rates, tail, x + f(x)) and the
bounded composition (dense vs sparse), against explicit path enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_dil.schedule import (
    Schedule,
    ScheduleError,
    count_map_2d,
    counts_1d,
    coverage,
    net_cost,
    receptive_field,
    rf_hw,
    sparse_counts_1d,
    support_1d,
)
from nas_dil.schedule.coverage import _sparse


def _layer_2d(r_h: int, r_w: int, k: int, smooth: bool, residual: bool) -> dict:
    """One layer's 2-D offsets → paths, written out: taps, box pre-filter, identity path."""
    h = (k - 1) // 2
    taps = {(a * r_h, b * r_w): 1 for a in range(-h, h + 1) for b in range(-h, h + 1)}
    if smooth and max(r_h, r_w) > 1:
        box = [(a, b) for a in range(-(r_h - 1), r_h) for b in range(-(r_w - 1), r_w)]
        out: dict = {}
        for (y, x), c in taps.items():
            for dy, dx in box:
                out[(y + dy, x + dx)] = out.get((y + dy, x + dx), 0) + c
        taps = out
    if residual:
        taps = dict(taps)
        taps[(0, 0)] = taps.get((0, 0), 0) + 1
    return taps


def _brute_2d(s: Schedule, residual: bool) -> np.ndarray:
    paths: dict = {(0, 0): 1}
    rw = s.rates_w or s.rates
    n = len(s)
    for i, (r, q, k) in enumerate(zip(s.rates, rw, s.kernels, strict=True)):
        lay = _layer_2d(r, q, k, bool(s.smooth) and s.smooth[i], residual and i < n - s.tail)
        nxt: dict = {}
        for (y, x), c in paths.items():
            for (dy, dx), d in lay.items():
                nxt[(y + dy, x + dx)] = nxt.get((y + dy, x + dx), 0) + c * d
        paths = nxt
    rf_h, rf_w = rf_hw(s)
    out = np.zeros((rf_h, rf_w), dtype=np.int64)
    for (y, x), c in paths.items():
        out[y + rf_h // 2, x + rf_w // 2] = c
    return out


variant_st = st.integers(1, 4).flatmap(lambda n: st.tuples(
    st.lists(st.integers(1, 6), min_size=n, max_size=n),
    st.lists(st.integers(1, 6), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
    st.integers(0, n - 1),
    st.sampled_from([1, 3, 5]),
    st.booleans(),
))


@settings(max_examples=60, deadline=None)
@given(variant_st)
def test_counts_match_path_enumeration(v: tuple) -> None:
    rates, rates_w, smooth, tail, k, residual = v
    s = Schedule(tuple(rates), (k,), (), tuple(rates_w), tuple(smooth), tail)
    brute = _brute_2d(s, residual)
    assert (count_map_2d(s, residual) == brute).all()
    sup_h, sup_w = support_1d(s.axis("h")), support_1d(s.axis("w"))
    # supports (and so holes) never depend on the residual paths: odd kernels
    assert ((brute > 0) == np.outer(sup_h, sup_w)).all()
    cov = coverage(s)
    assert cov.holes == brute.size - int((brute > 0).sum())
    assert (cov.rf, cov.rf_w) == brute.shape == rf_hw(s)
    assert cov.gridding_free == (cov.holes == 0)
    # the 1-D residual count vector is the map of the same stack on a 1-pixel-high input:
    # the composition of δ + taps (per axis), checked by enumerating 1-D paths
    for axis in ("h", "w"):
        a = s.axis(axis)
        one = _brute_1d(a, residual)
        assert counts_1d(a, residual).tolist() == one.tolist()
        offs, cnt = sparse_counts_1d(a, residual)
        assert (offs + receptive_field(a) // 2).tolist() == np.flatnonzero(one).tolist()
        assert cnt.tolist() == one[one > 0].tolist()


def _brute_1d(s: Schedule, residual: bool) -> np.ndarray:
    paths = {0: 1}
    n = len(s)
    for i, (r, k) in enumerate(zip(s.rates, s.kernels, strict=True)):
        h = (k - 1) // 2
        lay = {j * r: 1 for j in range(-h, h + 1)}
        if s.smoothed(i):
            full: dict = {}
            for o in range(-h, h + 1):
                for b in range(-(r - 1), r):
                    full[o * r + b] = full.get(o * r + b, 0) + 1
            lay = full
        if residual and i < n - s.tail:
            lay = dict(lay)
            lay[0] = lay.get(0, 0) + 1
        nxt: dict = {}
        for o, c in paths.items():
            for d, m in lay.items():
                nxt[o + d] = nxt.get(o + d, 0) + c * m
        paths = nxt
    rf = receptive_field(s)
    out = np.zeros(rf, dtype=np.int64)
    for o, c in paths.items():
        out[o + rf // 2] = c
    return out


@settings(max_examples=40, deadline=None)
@given(variant_st)
def test_sparse_equals_dense(v: tuple) -> None:
    rates, _, smooth, tail, k, residual = v
    s = Schedule(tuple(rates), (k,), (), (), tuple(smooth), tail)
    dense = counts_1d(s, residual)
    offs, cnt = _sparse(s, residual, np.int64)
    assert (offs + dense.size // 2).tolist() == np.flatnonzero(dense).tolist()
    assert cnt.tolist() == dense[dense > 0].tolist()


@pytest.mark.parametrize(("rates", "counts"), [
    # δ + taps per layer: [1, 2] gives (1 2 1) * (1 0 2 0 1)
    ((1, 2), [1, 2, 3, 4, 3, 2, 1]),
    ((1,), [1, 2, 1]),
    ((2, 2), [1, 0, 4, 0, 6, 0, 4, 0, 1]),  # (1 0 2 0 1)² : holes stay holes
])
def test_residual_counts_by_hand(rates: tuple[int, ...], counts: list[int]) -> None:
    s = Schedule(rates)
    assert counts_1d(s, residual=True).tolist() == counts
    assert coverage(s).holes_1d == counts.count(0)  # support unchanged


def test_residual_map_is_not_an_outer_product() -> None:
    s = Schedule((1,))
    m = count_map_2d(s, residual=True)
    assert m.tolist() == [[1, 1, 1], [1, 2, 1], [1, 1, 1]]  # δ2 + ones(3,3)
    c = counts_1d(s, residual=True)
    assert not (np.outer(c, c) == m).all()
    # tail layers are never residual: a one-layer tail gives the plain map
    assert (count_map_2d(Schedule((1, 1), tail=1), residual=True) == _tail_map()).all()


def _tail_map() -> np.ndarray:
    # layer 1 residual (δ2 + ones3x3), layer 2 plain (ones3x3): composed by hand
    first = np.ones((3, 3), dtype=np.int64)
    first[1, 1] = 2
    out = np.zeros((5, 5), dtype=np.int64)
    for y, x in itertools.product(range(3), range(3)):
        out[y:y + 3, x:x + 3] += first[y, x]
    return out


@pytest.mark.parametrize(("s", "rf", "holes_h", "holes_w"), [
    # per-axis: (2,2,2) along h has a checkerboard, (1,2,3) along w none
    (Schedule((2, 2, 2), rates_w=(1, 2, 3)), (13, 13), 6, 0),
    (Schedule((1, 2, 9), rates_w=(1, 2, 5)), (25, 17), 4, 0),
    # smoothing fills every gap: box 2r-1 between taps r apart
    (Schedule((2, 2, 2), smooth=(True,) * 3), (19, 19), 0, 0),
    (Schedule((2, 4, 8), smooth=(True,) * 3), (51, 51), 0, 0),
    # a degridding tail 2, 1 after 1, 2, 9 (DRN): RF grows by 6, holes ±4, ±5 filled
    (Schedule((1, 2, 9, 2, 1), tail=2), (31, 31), 0, 0),
])
def test_variant_coverage_by_hand(s: Schedule, rf: tuple[int, int], holes_h: int,
                                  holes_w: int) -> None:
    cov = coverage(s)
    assert (cov.rf, cov.rf_w) == rf == rf_hw(s)
    assert (cov.holes_1d, cov.holes_w) == (holes_h, holes_w)
    assert cov.holes == rf[0] * rf[1] - (rf[0] - holes_h) * (rf[1] - holes_w)


def test_smoothing_flops_and_params() -> None:
    s = Schedule((1, 3), smooth=(True, True), rates_w=(2, 3))
    plain = net_cost(64, 48, Schedule((1, 3)), width=8)
    c = net_cost(64, 48, s, width=8)
    # layer 0 (1, 2): a 1×3 shared filter; layer 1 (3, 3): 5×5; at output stride 8 (8×6)
    assert c.params - plain.params == 1 * 3 + 5 * 5
    assert c.macs - plain.macs == 8 * 6 * 8 * (1 * 3 + 5 * 5)
    names = [lay.name for lay in c.layers]
    assert names[3:7] == ["stack.0.smooth", "stack.0", "stack.1.smooth", "stack.1"]
    assert c.rf_image == plain.rf_image + 2 * (3 - 1) * 8  # r=1 has no pre-filter


def test_schedule_round_trip_and_old_dicts() -> None:
    s = Schedule((1, 2, 5, 2, 1), rates_w=(2, 1, 5, 2, 1), smooth=(True,) * 3 + (False,) * 2,
                 tail=2)
    assert Schedule.from_dict(s.to_dict()) == s
    old = {"rates": [1, 2, 5], "kernels": [3, 3, 3], "strides": [1, 1, 1]}
    assert Schedule.from_dict(old).to_dict() == old  # no new keys on a plain schedule
    assert Schedule((1, 2), rates_w=(1, 2)).rates_w == ()  # square after all
    with pytest.raises(ScheduleError, match="rates_w"):
        Schedule((1, 2), rates_w=(1,))
    with pytest.raises(ScheduleError, match="tail"):
        Schedule((1, 2), tail=2)
    with pytest.raises(ScheduleError, match="smooth"):
        Schedule((1, 2), smooth=(True,))


@pytest.mark.parametrize(("h", "w", "os_", "width"), [(64, 48, 8, 8), (65, 47, 4, 5),
                                                       (33, 97, 16, 3)])
def test_batch_smooth_cost_is_the_difference(h: int, w: int, os_: int, width: int) -> None:
    from nas_dil.schedule import batch_net_cost
    from nas_dil.schedule.netcost import batch_smooth_cost, smooth_box_area

    s = Schedule((1, 3, 5, 2, 1), rates_w=(2, 3, 1, 2, 1), smooth=(True,) * 3 + (False,) * 2,
                 tail=2)
    full = net_cost(h, w, s, output_stride=os_, width=width)
    base = batch_net_cost(h, w, os_, width, len(s))
    extra = batch_smooth_cost(h, w, os_, width, smooth_box_area(s))
    assert smooth_box_area(s) == 1 * 3 + 5 * 5 + 9 * 1
    assert (int(base.macs + extra.macs), int(base.params + extra.params)) == (full.macs,
                                                                              full.params)
