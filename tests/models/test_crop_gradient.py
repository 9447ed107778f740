"""Dead taps, usable RF, residual counts and the degridding variants, held to the built net.

Linear variants (norm="none", act="identity", positive weights, zero biases): a weight gets a
gradient exactly when its tap reads a real pixel from some output position, and an output
unit's input gradient is non-zero exactly on the pixels it sees (no cancellation).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas_dil.models import DilatedStack, build_model
from nas_dil.models.net import SharedSmoothing
from nas_dil.schedule import (
    Schedule,
    count_map_2d,
    counts_1d,
    net_cost,
    net_count_map,
    net_crop_report,
    rf_hw,
)
from nas_dil.schedule.crop import chain_support, net_ops


def _positive(model: nn.Module, fill: float | None = None, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | SharedSmoothing):
                if fill is None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g,
                                              dtype=m.weight.dtype) + 0.1)
                else:
                    m.weight.fill_(fill)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()


def _linear_net(s: Schedule, **arch: object) -> nn.Module:
    model = build_model(s, norm="none", act="identity", in_channels=1, num_classes=1,
                        width=2, stem_width=2, **arch).double()
    _positive(model)
    return model


NETS = [
    (Schedule((1, 3, 9, 1, 3, 9)), 48, 48, {"output_stride": 8}),  # issue 12's example
    (Schedule((1, 2, 5, 1, 2, 5)), 48, 40, {"output_stride": 8}),  # non-square crop
    (Schedule((2, 7)), 20, 36, {"output_stride": 4, "backbone_stride": 16, "context": True,
                                "context_rates": (1, 4)}),  # dilated stem, context module
    (Schedule((1, 3, 5, 2, 1), rates_w=(3, 1, 6, 2, 1), smooth=(True,) * 3 + (False,) * 2,
              tail=2), 40, 56, {"output_stride": 8, "residual": True}),  # every variant
    (Schedule((1, 2)), 7, 9, {"output_stride": 8}),  # 1×2 maps after an odd-sized stem
]


@pytest.mark.parametrize(("s", "h", "w", "arch"), NETS)
def test_dead_taps_get_no_gradient(s: Schedule, h: int, w: int, arch: dict) -> None:
    model = _linear_net(s, **arch)
    x = torch.ones(1, 1, h, w, dtype=torch.float64)
    model.forward_lowres(x).sum().backward()
    rep = net_crop_report(h, w, s, **model.arch.cost_kwargs())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | SharedSmoothing)]
    # module order: stem, stack (pre-filter before its conv), classifier, context
    assert len(convs) == len(rep.layers)
    for conv, tap in zip(convs, rep.layers, strict=True):
        moved = conv.weight.grad.abs().sum(dim=(0, 1)).numpy() > 0
        kh, kw = tap.kernel
        off_h = np.arange(kh) * tap.dilation[0] - tap.dilation[0] * (kh - 1) // 2
        off_w = np.arange(kw) * tap.dilation[1] - tap.dilation[1] * (kw - 1) // 2
        dead = np.isin(off_h, tap.dead_h)[:, None] | np.isin(off_w, tap.dead_w)[None, :]
        assert (moved == ~dead).all(), tap.name
        assert int(dead.sum()) == tap.dead


@pytest.mark.parametrize(("s", "h", "w", "arch"), NETS)
def test_usable_rf_is_the_gradient_support(s: Schedule, h: int, w: int, arch: dict) -> None:
    model = _linear_net(s, **arch)
    a = model.arch
    kw = {"output_stride": a.output_stride, "backbone_stride": a.backbone_stride,
          "context": a.context, "context_rates": a.context_rates}
    rows_h = chain_support(net_ops(s, "h", **kw), h)
    rows_w = chain_support(net_ops(s, "w", **kw), w)
    rep = net_crop_report(h, w, s, **a.cost_kwargs())
    assert rep.out == (rows_h.shape[0], rows_w.shape[0])
    ext_h, ext_w = 0, 0
    x = torch.zeros(1, 1, h, w, dtype=torch.float64, requires_grad=True)
    y = model.forward_lowres(x)
    n = y.numel()
    one_hot = torch.eye(n, dtype=y.dtype).reshape(n, *y.shape)  # every output unit at once
    (grads,) = torch.autograd.grad(y, x, grad_outputs=one_hot, is_grads_batched=True)
    for i, (uh, uw) in enumerate(np.ndindex(*y.shape[-2:])):
        seen = grads[i, 0, 0].numpy() > 0
        assert (seen == np.outer(rows_h[uh], rows_w[uw])).all(), (uh, uw)
        ys, xs = np.nonzero(seen)
        ext_h = max(ext_h, int(ys.max() - ys.min() + 1))
        ext_w = max(ext_w, int(xs.max() - xs.min() + 1))
    assert rep.rf_usable == (ext_h, ext_w)
    assert ext_h <= min(h, rep.rf_live[0]) and ext_w <= min(w, rep.rf_live[1])


def _unit_grad(f: nn.Module, shape: tuple[int, ...], unit: tuple[int, int]) -> np.ndarray:
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(f(x)[0, 0, unit[0], unit[1]], x)
    return g.sum(1)[0].numpy()


@pytest.mark.parametrize("s", [
    Schedule((1, 2, 9)),
    Schedule((2, 2, 2)),
    Schedule((1, 2, 5, 2, 1), tail=2),
    Schedule((3, 1, 2), rates_w=(1, 2, 4)),
    Schedule((2, 3, 1), smooth=(True, True, False), rates_w=(1, 3, 2)),
])
@pytest.mark.parametrize("residual", [False, True])
def test_count_map_is_the_gradient(s: Schedule, residual: bool) -> None:
    rf_h, rf_w = rf_hw(s)
    n_h, n_w = rf_h + 8, rf_w + 6
    ch, cw = n_h // 2, n_w // 2
    stack = DilatedStack(s, width=1, norm="none", act="identity", residual=residual).double()
    _positive(stack, fill=1.0)
    grad = _unit_grad(stack, (1, 1, n_h, n_w), (ch, cw))
    expect = np.zeros((n_h, n_w))
    expect[ch - rf_h // 2:ch + rf_h // 2 + 1, cw - rf_w // 2:cw + rf_w // 2 + 1] = count_map_2d(
        s, residual)
    assert (grad == expect).all()
    # one pixel high: only the kernels' middle row acts, so the net is 1-D along the width
    row = _unit_grad(stack, (1, 1, 1, n_w), (0, cw))[0]
    line = np.zeros(n_w)
    line[cw - rf_w // 2:cw + rf_w // 2 + 1] = counts_1d(s.axis("w"), residual)
    assert (row == line).all()


@pytest.mark.parametrize("s", [
    Schedule((1, 3), smooth=(True, True)),
    Schedule((2, 1, 4), rates_w=(1, 3, 2), smooth=(True, False, True)),
    Schedule((1, 2, 5, 2, 1), tail=2, smooth=(True,) * 3 + (False,) * 2),
])
@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_variant_flops_and_params_match_torch(s: Schedule, norm: str) -> None:
    model = build_model(s, output_stride=8, width=12, norm=norm, residual=True).eval()
    x = torch.randn(1, 3, 50, 38)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    c = net_cost(50, 38, s, **model.arch.cost_kwargs())
    assert c.flops == fc.get_total_flops()
    assert c.params == sum(p.numel() for p in model.parameters())


def test_smoothing_starts_as_identity() -> None:
    s = Schedule((1, 3), smooth=(True, True))
    torch.manual_seed(0)
    a = build_model(s, output_stride=8, width=8).eval()
    b = build_model(Schedule((1, 3)), output_stride=8, width=8).eval()
    b.load_state_dict({k: v for k, v in a.state_dict().items() if ".smooth." not in k})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize(("s", "arch"), [
    (Schedule((1, 2)), {"output_stride": 4}),
    (Schedule((1, 3, 2, 1), tail=2), {"output_stride": 4, "context": True,
                                      "context_rates": (1, 2)}),
    (Schedule((2, 1), rates_w=(1, 3), smooth=(True, True)), {"output_stride": 2,
                                                              "backbone_stride": 4}),
])
@pytest.mark.parametrize("residual", [False, True])
def test_whole_net_count_map_is_the_gradient(s: Schedule, arch: dict, residual: bool) -> None:
    # width 1 everywhere and unit weights: the gradient of one logit counts the paths
    model = build_model(s, norm="none", act="identity", in_channels=1, num_classes=1, width=1,
                        stem_width=1, residual=residual, **arch).double()
    _positive(model, fill=1.0)
    m = net_count_map(s, **model.arch.cost_kwargs())
    rf_h, rf_w = m.shape
    os_ = model.arch.output_stride
    unit = (-(-(rf_h // 2) // os_), -(-(rf_w // 2) // os_))  # first unit fully inside
    centre = (unit[0] * os_, unit[1] * os_)
    n_h, n_w = centre[0] + rf_h // 2 + 1 + os_, centre[1] + rf_w // 2 + 1 + os_
    grad = _unit_grad(model.forward_lowres, (1, 1, n_h, n_w), unit)
    expect = np.zeros((n_h, n_w))
    expect[centre[0] - rf_h // 2:centre[0] + rf_h // 2 + 1,
           centre[1] - rf_w // 2:centre[1] + rf_w // 2 + 1] = m
    assert (grad == expect).all()
