"""``register_backbone``: a user's own trunk as a backbone, its rates on the convs the user
names; analytic cost = FlopCounterMode, analytic support = gradient support, one-line
refusals."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas_dil.models import ArchConfig, build_model, count_params, register_backbone, registry
from nas_dil.models.analytic import analytic_attrs
from nas_dil.models.backbones import BackboneError, model_table
from nas_dil.models.tables import block_kernels
from nas_dil.schedule.layertable import table_cost, table_support
from tests.models.test_backbones import _columns, _grad_supports, _linearise


class Res(nn.Module):
    """A residual block: 3×3 conv (stride s), BN, ReLU, 3×3 conv; a 1×1 strided shortcut."""

    def __init__(self, c_in: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)
        self.short = nn.Conv2d(c_in, c, 1, stride) if stride > 1 or c_in != c else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.bn(self.conv1(x)))) + self.short(x)


def tiny() -> nn.Module:
    """Output stride 16: a 5×5 stride-2 stem, then stages at strides 2, 2, 2."""
    return nn.Sequential(nn.Conv2d(3, 8, 5, 2, 2), nn.ReLU(), Res(8, 8, 2), Res(8, 16, 2),
                         Res(16, 16, 1), Res(16, 24, 2), Res(24, 24, 1))


@pytest.fixture
def tiny_registered() -> Iterator[str]:
    register_backbone("tiny", tiny, rate_convs=["5", "6.conv2"])
    yield "tiny"
    registry.remove("tiny")


def test_rates_set_the_named_convs(tiny_registered: str) -> None:
    # "5": both 3×3 convs of that block; "6.conv2": that conv alone (6.conv1 keeps its own)
    assert block_kernels("tiny", 8) == (("5", "6.conv2"), (3, 3))
    model = build_model([2, 3, 1], backbone="tiny", output_stride=8, target="both",
                        num_classes=2, width=4).eval()
    convs = dict(model.backbone.trunk.named_modules())
    # output stride 8: the last stage's stride became dilation 2 (block 6's conv1 keeps it)
    assert [convs[n].dilation[0] for n in ("5.conv1", "5.conv2", "6.conv1", "6.conv2")] == [
        2, 2, 2, 3]
    assert convs["5.conv1"].stride == (1, 1)
    assert model(torch.randn(1, 3, 40, 40)).shape == (1, 2, 40, 40)
    assert model.forward_lowres(torch.randn(1, 3, 40, 40)).shape[-2:] == (5, 5)


@pytest.mark.parametrize(("rates", "os_", "target"), [
    ([1, 2], 16, "head"), ([2, 4], 16, "backbone"), ([3, 1, 2, 2], 8, "both"),
    ([1, 1], 8, "backbone"),
])
def test_cost_and_support(tiny_registered: str, rates: list[int], os_: int,
                          target: str) -> None:
    arch = {"backbone": "tiny", "output_stride": os_, "target": target, "num_classes": 3,
            "width": 4, "norm": "bn"}
    h, w = 37, 45
    a = analytic_attrs(rates, ArchConfig(**arch), (h, w))
    model = build_model(rates, **arch).eval()
    with FlopCounterMode(display=False) as fc:
        model(torch.empty(1, 3, h, w))
    assert (a["flops"], a["params"]) == (fc.get_total_flops(), count_params(model))
    lin = _linearise(build_model(rates, **{**arch, "act": "identity", "num_classes": 1}))
    table = model_table(lin)
    n = 70
    n_out = table_cost(table, n, _columns(table, n)).out_h
    units = [0, n_out // 2, n_out - 1]
    for unit, g in zip(units, _grad_supports(lin.forward_lowres, n, _columns(table, n), units),
                       strict=True):
        lo, mask = table_support(table, n, unit)
        assert g.tolist() == (lo + np.flatnonzero(mask)).tolist(), (rates, unit)


def test_refusals_are_one_line() -> None:
    cases = [
        (lambda: register_backbone("resnet18", tiny), "must be an identifier other than"),
        (lambda: register_backbone("t2", tiny, ["1"]), "entry '1' names no conv"),
        (lambda: register_backbone("t3", lambda: 3), "returned a int, not an nn.Module"),
        (lambda: register_backbone("t4", lambda: nn.Sequential(nn.Conv2d(3, 4, 3, 1, 2, 2))),
         "has dilation already"),
        (lambda: register_backbone("t5", lambda: nn.Sequential(nn.Conv2d(3, 4, 3),
                                                               nn.Upsample(scale_factor=2))),
         "module Upsample has no layer-table rule"),
    ]
    for make, fragment in cases:
        with pytest.raises(BackboneError) as e:
            make()
        assert fragment in str(e.value) and "\n" not in str(e.value)
    assert not {"t2", "t3", "t4", "t5"} & set(registry.registered())
    with pytest.raises(ValueError, match="a name given to register_backbone"):
        ArchConfig(backbone="t2")
