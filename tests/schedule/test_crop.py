"""Dead taps, live RF and usable RF at an input size (hand-computed tables, batch = scalar,
brute force). The gradient of a built net is the judge in tests/models/test_crop_gradient.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_dil.schedule import (
    Schedule,
    ScheduleError,
    batch_crop,
    crop_fields,
    crop_report,
    live_taps,
    net_cost,
    net_crop_report,
)
from nas_dil.schedule.crop import ConvOp, chain_support, net_ops


@pytest.mark.parametrize(("size", "kernel", "stride", "dilation", "live"), [
    (6, 3, 1, 9, [0, 1, 0]),  # rate 9 on a 6-px map: a 1×1 conv
    (6, 3, 1, 6, [0, 1, 0]),  # r = s: still dead (offset 6 is one past the last pixel)
    (6, 3, 1, 5, [1, 1, 1]),  # |o| = 5 < 6: the corner units read it
    (4, 5, 1, 2, [0, 1, 1, 1, 0]),  # K = 5: taps ±4 dead, ±2 live
    (5, 5, 1, 2, [1, 1, 1, 1, 1]),
    (1, 3, 2, 1, [0, 1, 0]),  # stride 2 on one pixel: only the centre
    (2, 3, 2, 1, [0, 1, 1]),  # stride 2, pad 1, two pixels: the -1 tap reads padding only
    (3, 3, 2, 1, [1, 1, 1]),
    (1, 1, 1, 1, [1]),
])
def test_live_taps_by_hand(size: int, kernel: int, stride: int, dilation: int,
                           live: list[int]) -> None:
    assert live_taps(size, kernel, stride, dilation).astype(int).tolist() == live


def _brute_live(size: int, kernel: int, stride: int, dilation: int) -> list[bool]:
    pad = dilation * (kernel - 1) // 2
    n_out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    return [any(0 <= stride * p - pad + k * dilation < size for p in range(n_out))
            for k in range(kernel)]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.sampled_from([1, 3, 5, 7]), st.integers(1, 3), st.integers(1, 20))
def test_live_taps_brute_force(size: int, kernel: int, stride: int, dilation: int) -> None:
    assert live_taps(size, kernel, stride, dilation).tolist() == _brute_live(
        size, kernel, stride, dilation)


def test_issue_example_1_3_9_at_48px() -> None:
    # issue 12: 1,3,9,1,3,9 at output stride 8 on a 48-px crop: 6×6 maps, the rate-9 layers'
    # off-centre taps are dead, the centre output sees the whole 48×48 crop, nominal RF 431
    rep = net_crop_report(48, 48, Schedule((1, 3, 9, 1, 3, 9)), output_stride=8)
    assert rep.out == (6, 6)
    assert rep.rf_nominal == (431, 431)
    assert rep.rf_nominal[0] == net_cost(48, 48, (1, 3, 9, 1, 3, 9)).rf_image
    assert [(t.name, t.dead, t.dead_h, t.dead_w) for t in rep.dead_layers] == [
        ("stack.2", 8, (-9, 9), (-9, 9)), ("stack.5", 8, (-9, 9), (-9, 9))]
    assert rep.dead_taps == 16 and rep.dead_taps_of("stack.") == 16
    # live: stem 15 + (1+3+1+3)·2·8 = 143; usable: the crop itself
    assert rep.rf_live == (143, 143) and rep.rf_usable == (48, 48)
    rows = chain_support(net_ops(Schedule((1, 3, 9, 1, 3, 9))), 48)
    assert rows[3].all()  # a centre output unit sees every pixel of the crop


def test_non_square_crop() -> None:
    # 48×40 at output stride 8: 6×5 maps, so the rate-5 layers are dead along the width only
    s = Schedule((1, 2, 5, 1, 2, 5))
    rep = net_crop_report(48, 40, s, output_stride=8)
    assert rep.out == (6, 5)
    assert [(t.name, t.dead_h, t.dead_w, t.dead) for t in rep.dead_layers] == [
        ("stack.2", (), (-5, 5), 6), ("stack.5", (), (-5, 5), 6)]
    assert rep.rf_live == (271, 15 + 12 * 8) and rep.rf_usable == (48, 40)
    f = crop_fields(s, 48, 40, output_stride=8)
    assert f["dead_taps"] == 12 and f["rf_usable"] == 40 and f["rf_nominal"] == 271
    assert (f["rf_usable_h"], f["rf_usable_w"]) == (48, 40)


@pytest.mark.parametrize(("rates", "size", "dead", "live", "usable"), [
    ((1, 3, 9), 6, 8, 9, 6),  # rate 9: dead on 6 px; 1, 3 live: 1 + 2·4 = 9
    ((1, 2, 5), 64, 0, 17, 17),  # all live; usable = nominal RF when the input is wide
    ((1, 2, 5), 17, 0, 17, 17),
    ((1, 2, 5), 5, 8, 7, 5),
    ((4,), 4, 8, 1, 1),  # a lone 1×1 at this size
])
def test_stack_alone_by_hand(rates: tuple[int, ...], size: int, dead: int, live: int,
                             usable: int) -> None:
    rep = crop_report(Schedule(rates), size)
    assert rep.dead_taps == dead and rep.rf_live == (live, live)
    assert rep.rf_usable == (usable, usable)


def test_smoothing_prefilter_taps_can_be_dead() -> None:
    # (3,) smoothed on 2 px: the 5-wide pre-filter keeps offsets -1..1 (3 of 5 per axis)
    rep = crop_report(Schedule((3,), smooth=(True,)), 2)
    pre = rep.layers[0]
    assert pre.name == "stack.0.smooth" and pre.kernel == (5, 5)
    assert pre.dead_h == (-2, 2) and pre.dead == 25 - 9
    assert rep.layers[1].dead == 8


def _brute_usable(ops: list[ConvOp], size: int) -> int:
    """Per output unit, enumerate every path back to the input (no matrices)."""
    sizes = [size]
    for op in ops:
        pad = op.dilation * (op.kernel - 1) // 2
        sizes.append((sizes[-1] + 2 * pad - op.dilation * (op.kernel - 1) - 1) // op.stride + 1)
    best = 0
    for u in range(sizes[-1]):
        cur = {u}
        for op, s_in in zip(reversed(ops), reversed(sizes[:-1]), strict=True):
            pad = op.dilation * (op.kernel - 1) // 2
            cur = {op.stride * p - pad + k * op.dilation for p in cur for k in range(op.kernel)}
            cur = {x for x in cur if 0 <= x < s_in}
        best = max(best, max(cur) - min(cur) + 1)
    return best


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=5), st.sampled_from([4, 8]),
       st.integers(16, 72), st.booleans(), st.booleans())
def test_usable_rf_brute_force(rates: list[int], os_: int, size: int, context: bool,
                               smooth: bool) -> None:
    s = Schedule(tuple(rates), smooth=(True,) * len(rates) if smooth else ())
    ops = net_ops(s, "h", os_, None, context, (1, 2, 4))
    rep = net_crop_report(size, size, s, output_stride=os_, context=context,
                          context_rates=(1, 2, 4))
    assert rep.rf_usable[0] == _brute_usable(ops, size)
    assert rep.rf_usable[0] <= min(size, rep.rf_live[0]) and rep.rf_live[0] <= rep.rf_nominal[0]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.lists(
    st.lists(st.integers(1, 14), min_size=n, max_size=n), min_size=1, max_size=6)),
    st.sampled_from([4, 8, 16]), st.sampled_from([1, 3, 5]), st.integers(24, 80),
    st.integers(24, 80), st.booleans(), st.booleans(), st.booleans())
def test_batch_equals_scalar(rows: list[list[int]], os_: int, k: int, h: int, w: int,
                             smooth: bool, per_axis: bool, context: bool) -> None:
    r = np.asarray(rows)
    rw = r[:, ::-1].copy() if per_axis else None
    b = batch_crop(r, k, os_, h, w, rates_w=rw, smooth=smooth, context=context,
                   context_rates=(1, 2))
    for i, row in enumerate(rows):
        s = Schedule(tuple(row), (k,), (), tuple(rw[i].tolist()) if per_axis else (),
                     (True,) * len(row) if smooth else ())
        rep = net_crop_report(h, w, s, output_stride=os_, context=context, context_rates=(1, 2))
        assert int(b.dead_taps[i]) == rep.dead_taps_of("stack.")
        assert int(b.dead_taps_net[i]) == rep.dead_taps
        assert (int(b.rf_nominal_h[i]), int(b.rf_nominal_w[i])) == rep.rf_nominal
        assert (int(b.rf_live_h[i]), int(b.rf_live_w[i])) == rep.rf_live
        assert (int(b.rf_usable_h[i]), int(b.rf_usable_w[i])) == rep.rf_usable


def test_bad_sizes() -> None:
    with pytest.raises(ScheduleError, match="input side"):
        crop_report(Schedule((1,)), 0)
    with pytest.raises(ScheduleError, match="input side"):
        net_crop_report(48, 10**6, Schedule((1,)))
    # 'same' padding never empties a map: one pixel stays one pixel down to output stride 64
    rep = net_crop_report(1, 1, Schedule((1,)), output_stride=16, backbone_stride=64)
    assert rep.out == (1, 1) and rep.rf_usable == (1, 1)


@pytest.mark.parametrize(("h", "w", "os_"), [(512, 200, 8), (300, 48, 4), (64, 1000, 16)])
def test_bitset_and_matrix_paths_agree(h: int, w: int, os_: int) -> None:
    # maps of side <= 64 use one uint64 per unit; wider ones (here 75 and 62×…) the matrices
    rng = np.random.default_rng(h + w)
    r = rng.choice([1, 2, 3, 5, 9, 17, 33], size=(60, 4))
    rw = rng.choice([1, 2, 4, 7], size=(60, 4))
    for smooth in (False, (True, False, True, False)):
        a = batch_crop(r, 3, os_, h, w, rates_w=rw, smooth=smooth, context=True,
                       context_rates=(1, 3))
        b = batch_crop(r, 3, os_, h, w, rates_w=rw, smooth=smooth, context=True,
                       context_rates=(1, 3), bits=False)
        for f in a.__dataclass_fields__:
            assert (getattr(a, f) == getattr(b, f)).all(), f
    s = Schedule(tuple(int(v) for v in r[0]), rates_w=tuple(int(v) for v in rw[0]),
                 smooth=(True, False, True, False))  # the last loop's flags
    rep = net_crop_report(h, w, s, output_stride=os_, context=True, context_rates=(1, 3))
    assert (int(a.rf_usable_h[0]), int(a.rf_usable_w[0])) == rep.rf_usable
