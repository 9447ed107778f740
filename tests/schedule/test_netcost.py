"""Whole-net analytic cost and RF (numpy only; the torch checks live in tests/models)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_dil.schedule import (
    Schedule,
    batch_net_cost,
    conv_cost,
    image_schedule,
    net_cost,
    receptive_field,
    rf_in_image,
    stack_cost,
    stem_plan,
    support_1d,
)


def test_import_is_torch_free() -> None:
    code = "import sys, nas_dil.schedule.netcost; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stem_plan_derives_dilated_stages() -> None:
    # Yu & Koltun front end: 5 stages, output stride 8, the last two dilated 2 and 4
    plan = stem_plan(8, 32, stem_width=16, width=32)
    assert [(s.c_out, s.stride, s.dilation) for s in plan] == [
        (16, 2, 1), (32, 2, 1), (32, 2, 1), (32, 1, 2), (32, 1, 4)
    ]
    assert [s.stride for s in stem_plan(16)] == [2, 2, 2, 2]
    assert [s.c_out for s in stem_plan(16, stem_width=8, width=64)] == [8, 16, 32, 64]
    assert [s.dilation for s in stem_plan(4, 16)] == [1, 1, 2, 4]


def test_hand_computed_small_net() -> None:
    # 16×16 input, OS 4, stem 2 stages (3→4→8), stack [1, 2] K=3 width 8, 5 classes, BN
    c = net_cost(16, 16, [1, 2], in_channels=3, num_classes=5, output_stride=4, stem_width=4,
                 width=8)
    macs = 8 * 8 * 4 * 3 * 9 + 4 * 4 * 8 * 4 * 9 + 2 * (4 * 4 * 8 * 8 * 9) + 4 * 4 * 5 * 8
    params = (4 * 3 * 9 + 8) + (8 * 4 * 9 + 16) + 2 * (8 * 8 * 9 + 16) + (8 * 5 + 5)
    assert (c.macs, c.params, c.flops) == (macs, params, 2 * macs)
    assert (c.out_h, c.out_w) == (4, 4)
    assert c.rf_stem == 7 and c.rf_stack == 7
    assert c.rf_features == c.rf_image == 7 + 6 * 4
    assert c.layers[-1].name == "upsample" and (c.layers[-1].h_out, c.layers[-1].w_out) == (16, 16)


def test_norm_none_uses_biases_and_context_adds_head() -> None:
    base = net_cost(33, 33, [1], output_stride=8, norm="none")
    bn = net_cost(33, 33, [1], output_stride=8, norm="bn")
    assert bn.params - base.params == 16 + 32 + 32 + 32  # one extra per channel of each norm
    ctx = net_cost(33, 33, [1], output_stride=8, context=True, num_classes=4,
                   context_rates=(1, 2))
    plain = net_cost(33, 33, [1], output_stride=8, num_classes=4)
    hw = 5 * 5
    assert ctx.macs - plain.macs == 2 * hw * 4 * 4 * 9 + hw * 4 * 4
    assert ctx.params - plain.params == 2 * (4 * 4 * 9 + 4) + 4 * 4 + 4
    assert ctx.rf_image == plain.rf_image + 2 * (1 + 2) * 8


@settings(max_examples=60, deadline=None)
@given(
    os_=st.sampled_from([2, 4, 8, 16]),
    extra=st.integers(0, 2),
    rates=st.lists(st.integers(1, 8), min_size=1, max_size=8),
    kernel=st.sampled_from([1, 3, 5]),
    width=st.integers(1, 64),
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    norm=st.sampled_from(["bn", "gn", "none"]),
)
def test_parts_agree_with_core(os_: int, extra: int, rates: list[int], kernel: int, width: int,
                               h: int, w: int, norm: str) -> None:
    bs = os_ << extra
    c = net_cost(h, w, rates, kernel=kernel, output_stride=os_, backbone_stride=bs, width=width,
                 norm=norm)
    stack = Schedule(tuple(rates), (kernel,))
    n_stem = len(stem_plan(os_, bs))
    # the stack rows are exactly stack_cost; every row is a conv_cost
    rows = c.layers[n_stem:n_stem + len(rates)]
    s_cost = stack_cost(stack, width, c.out_h, c.out_w, norm=norm != "none")
    assert sum(r.macs for r in rows) == s_cost.macs
    assert sum(r.params for r in rows) == s_cost.params
    assert sum(r.macs for r in c.layers) == c.macs
    # RFs: stem + stack by rf_in_image equals the full chain; the full chain is image_schedule
    full = image_schedule(rates, kernel, os_, bs)
    assert c.rf_features == rf_in_image(receptive_field(stack), os_, c.rf_stem)
    assert c.rf_image == receptive_field(full) == c.rf_features == support_1d(full).size
    assert c.layers[n_stem + len(rates) - 1].rf == c.rf_features


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 20),
    seed=st.integers(0, 2**31 - 1),
    norm=st.sampled_from(["bn", "gn", "none"]),
    context=st.booleans(),
)
def test_batch_equals_scalar(n: int, seed: int, norm: str, context: bool) -> None:
    rng = np.random.default_rng(seed)
    os_ = rng.choice([2, 4, 8, 16], n)
    bs = os_ << rng.integers(0, 2, n)
    width = rng.integers(1, 80, n)
    stem_width = rng.integers(1, 40, n)
    depth = rng.integers(1, 9, n)
    kernel = rng.choice([1, 3, 5, 7], n)
    h, w = rng.integers(1, 600, n), rng.integers(1, 600, n)
    ctx_rates = (1, 2, 4)
    b = batch_net_cost(h, w, os_, width, depth, kernel, stem_width=stem_width, in_channels=3,
                       num_classes=7, backbone_stride=bs, norm=norm, context=context,
                       context_rates=ctx_rates)
    for i in range(n):
        c = net_cost(int(h[i]), int(w[i]), [1] * int(depth[i]), kernel=int(kernel[i]),
                     num_classes=7, output_stride=int(os_[i]), backbone_stride=int(bs[i]),
                     stem_width=int(stem_width[i]), width=int(width[i]), norm=norm,
                     context=context, context_rates=ctx_rates)
        assert (int(b.macs[i]), int(b.params[i])) == (c.macs, c.params)
    assert (b.flops == 2 * b.macs).all()


def test_batch_broadcasts_and_cost_ignores_rates() -> None:
    b = batch_net_cost(513, 513, np.array([[4], [8], [16]]), np.array([16, 32, 64]), 4)
    assert b.macs.shape == (3, 3)
    # resolution is what costs: the stack at OS 8 costs 4× the stack at OS 16
    a, c = (net_cost(512, 512, r, output_stride=8) for r in ([1, 1, 1], [1, 2, 9]))
    assert (a.macs, a.params) == (c.macs, c.params)
    assert a.rf_image < c.rf_image
    s8 = net_cost(512, 512, [1] * 2, output_stride=8).layers[3]
    s16 = net_cost(512, 512, [1] * 2, output_stride=16).layers[4]
    assert s8.macs == 4 * s16.macs == 4 * conv_cost(32, 32, 32, 32, 3, norm=True).macs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_stride": 6}, "output_stride=6"),
        ({"output_stride": 1}, "output_stride=1"),
        ({"output_stride": 16, "backbone_stride": 8}, "backbone_stride=8"),
        ({"norm": "ln"}, "norm='ln'"),
        ({"width": 0}, "width=0"),
        ({"kernel": 4}, "kernels"),
    ],
)
def test_bad_arguments_say_what(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        net_cost(64, 64, [1, 2], **kwargs)


def test_batch_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="powers of 2"):
        batch_net_cost(64, 64, np.array([8, 12]), 32, 2)
    with pytest.raises(ValueError, match="kernel must be odd"):
        batch_net_cost(64, 64, 8, 32, 2, np.array([3, 4]))
    with pytest.raises(ValueError, match="depth must be >= 1"):
        batch_net_cost(64, 64, 8, 32, np.array([0, 2]))
