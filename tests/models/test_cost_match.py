"""Analytic FLOPs/params (``net_cost``) against torch's own counts on the built net."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from nas_dil.models import build_model, count_params, describe_model
from nas_dil.schedule import Schedule, batch_net_cost, net_cost


def _torch_counts(model: torch.nn.Module, h: int, w: int, c_in: int) -> tuple[int, int]:
    model.eval()
    x = torch.randn(1, c_in, h, w)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops(), sum(p.numel() for p in model.parameters())


def _check(rates: list[int], kernels: list[int], h: int, w: int, **arch) -> None:
    s = Schedule(tuple(rates), tuple(kernels))
    model = build_model(s, **arch)
    flops, params = _torch_counts(model, h, w, model.arch.in_channels)
    c = net_cost(h, w, s.rates, kernel=s.kernels, **model.arch.cost_kwargs())
    assert (c.flops, c.params) == (flops, params)  # exact, not just within 1 %
    assert count_params(model) == params
    if len(set(kernels)) == 1:
        a = model.arch
        b = batch_net_cost(h, w, a.output_stride, a.width, len(rates), kernels[0],
                           stem_width=a.stem_width, in_channels=a.in_channels,
                           num_classes=a.num_classes, backbone_stride=a.backbone_stride,
                           norm=a.norm, context=a.context, context_rates=a.context_rates)
        assert (int(b.flops), int(b.params)) == (flops, params)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(
    os_=st.sampled_from([2, 4, 8, 16]),
    extra=st.integers(0, 1),
    width=st.integers(1, 24),
    stem_width=st.integers(1, 24),
    rates=st.lists(st.integers(1, 8), min_size=1, max_size=8),
    kernel=st.sampled_from([1, 3, 5]),
    mixed=st.booleans(),
    norm=st.sampled_from(["bn", "gn", "none"]),
    residual=st.booleans(),
    context=st.booleans(),
    ctx_rates=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    h=st.integers(17, 70),  # GroupNorm needs > 1 value per group: >= 2×2 at OS 16
    w=st.integers(17, 70),
    in_channels=st.integers(1, 4),
    num_classes=st.integers(1, 6),
)
def test_flops_and_params_match_torch(os_: int, extra: int, width: int, stem_width: int,
                                      rates: list[int], kernel: int, mixed: bool, norm: str,
                                      residual: bool, context: bool, ctx_rates: list[int],
                                      h: int, w: int, in_channels: int,
                                      num_classes: int) -> None:
    # mixed: per-layer kernels, cycling 1/3/5 from the drawn one
    kernels = [(1, 3, 5)[(i + (kernel // 2)) % 3] for i in range(len(rates))] if mixed else [
        kernel] * len(rates)
    _check(rates, kernels, h, w, output_stride=os_, backbone_stride=os_ << extra, width=width,
           stem_width=stem_width, norm=norm, residual=residual, context=context,
           context_rates=tuple(ctx_rates), in_channels=in_channels, num_classes=num_classes)


@pytest.mark.parametrize("h,w", [(65, 47), (33, 33), (97, 129)])
def test_seeded_sweep_odd_sizes(h: int, w: int) -> None:
    rng = random.Random(h * 1000 + w)
    for _ in range(6):
        os_ = rng.choice([4, 8, 16])
        depth = rng.randint(1, 8)
        _check([rng.randint(1, 8) for _ in range(depth)], [rng.choice([1, 3, 5])] * depth, h, w,
               output_stride=os_, backbone_stride=os_ * rng.choice([1, 2, 4]),
               width=rng.randint(4, 32), stem_width=rng.randint(4, 16),
               norm=rng.choice(["bn", "gn", "none"]), residual=rng.random() < 0.5,
               context=rng.random() < 0.5, num_classes=rng.randint(2, 21))


def test_describe_model_rows_add_up() -> None:
    model = build_model([1, 2, 5], output_stride=8, context=True)
    d = describe_model(model, 65, 47)
    flops, params = _torch_counts(model, 65, 47, 3)
    assert d["flops"] == flops and d["params"] == params
    assert sum(r["macs"] for r in d["layers"]) == d["macs"]
    assert sum(r["params"] for r in d["layers"]) == d["params"]
    assert d["rf_stack"] == 17 and d["rf_image"] == d["layers"][-1]["rf"]
    assert d["output_lowres"] == [9, 6] and d["layers"][-1]["out"] == [65, 47]
    assert d["stack_holes_1d"] == 0
