"""The seed claims (THEORY.md), checked on the built modules rather than on paper.

Linear variants (norm="none", act="identity", positive weights, zero biases) make the
gradient of one output unit non-zero exactly on the pixels it sees: no cancellation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas_dil.models import DilatedStack, build_model
from nas_dil.schedule import (
    Schedule,
    count_map_2d,
    image_schedule,
    net_cost,
    receptive_field,
    support_1d,
)


def _set_weights(model: nn.Module, fill: float | None = 1.0, seed: int = 0) -> None:
    """All convs: weights ``fill`` (or random positive when None), biases zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                if fill is None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g, dtype=m.weight.dtype)
                                   + 0.1)
                else:
                    m.weight.fill_(fill)
                if m.bias is not None:
                    m.bias.zero_()


def _unit_gradient(f: nn.Module, x_shape: tuple[int, ...], unit: tuple[int, int]) -> np.ndarray:
    """d f(x)[0, 0, unit] / dx, summed over input channels (all terms are >= 0)."""
    x = torch.zeros(x_shape, dtype=torch.float64, requires_grad=True)
    y = f(x)
    (g,) = torch.autograd.grad(y[0, 0, unit[0], unit[1]], x)
    return g.sum(1)[0].numpy()


def _placed(block: np.ndarray, size: int, centre: int) -> np.ndarray:
    out = np.zeros((size, size), dtype=block.dtype)
    r = block.shape[0] // 2
    out[centre - r:centre + r + 1, centre - r:centre + r + 1] = block
    return out


@pytest.mark.parametrize("rates", [[2, 2, 2], [1, 2, 9], [1, 2, 5], [2, 4, 8], [1, 2, 3]])
@pytest.mark.parametrize("residual", [False, True])
def test_gradient_support_is_coverage(rates: list[int], residual: bool) -> None:
    s = Schedule(tuple(rates), (3,))
    rf = receptive_field(s)
    n = rf + 12
    c = n // 2
    stack = DilatedStack(s, width=2, norm="none", act="identity", residual=residual).double()
    _set_weights(stack, fill=None)  # random positive: support must not depend on the values
    seen = _unit_gradient(stack, (1, 2, n, n), (c, c)) > 0
    sup = support_1d(s)
    assert (seen == _placed(np.outer(sup, sup), n, c)).all()  # holes included
    if not residual:
        # width 1 and unit weights: the gradient IS the path-count map
        one = DilatedStack(s, width=1, norm="none", act="identity").double()
        _set_weights(one, fill=1.0)
        grad = _unit_gradient(one, (1, 1, n, n), (c, c))
        assert (grad == _placed(count_map_2d(s).astype(np.float64), n, c)).all()


def test_gridding_visible_in_gradient() -> None:
    # [2, 4, 8]: every rate even, so every odd offset is a hole
    s = Schedule((2, 4, 8))
    stack = DilatedStack(s, width=1, norm="none", act="identity").double()
    _set_weights(stack)
    n = 45
    grad = _unit_gradient(stack, (1, 1, n, n), (22, 22))
    assert grad[22, 23] == 0 and grad[23, 23] == 0 and grad[24, 24] > 0


@pytest.mark.parametrize("norm", ["bn", "none"])
def test_stack_is_translation_equivariant(norm: str) -> None:
    torch.manual_seed(0)
    s = Schedule((1, 2, 5, 3))
    stack = DilatedStack(s, width=4, norm=norm, residual=True).eval()
    r = receptive_field(s) // 2
    x = torch.randn(1, 4, 64, 56)
    shift = (5, -3)
    with torch.no_grad():
        a = stack(torch.roll(x, shift, dims=(2, 3)))
        b = torch.roll(stack(x), shift, dims=(2, 3))
        # zero padding: equal wherever neither the border nor the wrap is in view
        m = r + max(abs(v) for v in shift)
        torch.testing.assert_close(a[..., m:-m, m:-m], b[..., m:-m, m:-m])
        assert not torch.allclose(a, b)  # borders do differ: the crop above is needed
        for mod in stack.modules():  # circular padding: exact everywhere
            if isinstance(mod, nn.Conv2d):
                mod.padding_mode = "circular"
        torch.testing.assert_close(stack(torch.roll(x, shift, dims=(2, 3))),
                                   torch.roll(stack(x), shift, dims=(2, 3)))


@pytest.mark.parametrize("depth", [2, 3])
def test_exponential_dilation_is_kronecker_conv(depth: int) -> None:
    a = 3
    s = Schedule(tuple(a**i for i in range(depth)), (a,))
    stack = DilatedStack(s, width=1, norm="none", act="identity").double()
    torch.manual_seed(depth)
    with torch.no_grad():
        for layer in stack.layers:
            layer.conv.weight.normal_()
            layer.conv.bias.zero_()
    big = torch.ones(1, 1, dtype=torch.float64)
    for layer in stack.layers:  # the later (coarser) layer is the outer factor
        big = torch.kron(layer.conv.weight[0, 0], big)
    assert big.shape[0] == a**depth == receptive_field(s)
    x = torch.randn(1, 1, 3 * a**depth, 2 * a**depth + 7, dtype=torch.float64)
    r = big.shape[0] // 2
    with torch.no_grad():
        ref = F.conv2d(x, big[None, None])  # valid conv: no border effects
        out = stack(x)[..., r:-r, r:-r]
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize(
    "arch",
    [
        {"output_stride": 8},
        {"output_stride": 4, "backbone_stride": 16, "context": True, "context_rates": (1, 2)},
        {"output_stride": 8, "backbone_stride": 32, "context": True, "context_rates": (1, 1, 2)},
    ],
)
def test_rf_in_image_pixels_matches_gradient(arch: dict) -> None:
    rates = (1, 2, 5) if arch["output_stride"] == 8 else (2, 2)
    model = build_model(rates, norm="none", act="identity", in_channels=1, num_classes=1,
                        width=2, stem_width=2, **arch).double()
    _set_weights(model, fill=1.0)  # context convs too: identity init would hide their taps
    os_ = arch["output_stride"]
    cost = net_cost(64, 64, rates, **model.arch.cost_kwargs())
    rf = cost.rf_image
    r = rf // 2
    unit = -(-r // os_)  # first output unit whose RF lies inside the image
    centre = unit * os_  # stride-2 / padding-1 convs centre unit i on image pixel i·os
    n = centre + r + 1 + os_
    grad = _unit_gradient(model.forward_lowres, (1, 1, n, n), (unit, unit))
    rows, cols = np.nonzero(grad)
    assert rows.max() - rows.min() + 1 == rf == cols.max() - cols.min() + 1
    sup = support_1d(image_schedule(rates, 3, model.arch.output_stride,
                                    model.arch.backbone_stride, model.arch.context,
                                    model.arch.context_rates))
    expect = np.zeros((n, n), dtype=bool)
    expect[centre - r:centre + r + 1, centre - r:centre + r + 1] = np.outer(sup, sup)
    assert ((grad > 0) == expect).all()
    if arch.get("backbone_stride") == 32:
        # inside the front end, the first dilated stage (taps 16 px apart on units seeing 15)
        # leaves image holes at ±8; later layers fill them in
        prefix = model.stem[:4]
        grad = _unit_gradient(prefix, (1, 1, n, n), (unit, unit))
        line = grad[centre, centre - 23:centre + 24] > 0
        assert line.tolist() == [o not in (-8, 8) for o in range(-23, 24)]
        assert grad[centre, centre - 24] == 0 and grad[centre, centre + 24] == 0
