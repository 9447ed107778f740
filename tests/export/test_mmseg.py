"""The mmsegmentation fragment of an export: hand-checked settings (mmseg's own r50-d8 config
is torchvision's OS-8 ResNet-50), and every case it must refuse, with the reason."""

from __future__ import annotations

import pytest

from nas_dil.export.mmseg import mmseg_fragment
from nas_dil.models import ArchConfig
from nas_dil.models.tables import candidate_schedule

R50 = {"type": "ResNet", "depth": 50, "style": "pytorch"}


def _frag(backbone: str, target: str, os_: int, rates: list[int], **arch: object) -> dict:
    a = ArchConfig(backbone=backbone, target=target, output_stride=os_, **arch)
    return mmseg_fragment(candidate_schedule(rates, 3, a).to_dict(), a.to_dict())


@pytest.mark.parametrize(("backbone", "os_", "rates", "expect"), [
    # torchvision's OS-8 net = mmseg's configs/_base_/models/*r50-d8*: (1,1,2,4), contract
    ("resnet50", 8, [1, 2, 2, 2, 2, 2, 2, 4, 4],
     {**R50, "strides": [1, 2, 1, 1], "dilations": [1, 1, 2, 4], "contract_dilation": True}),
    # DeepLab v3's multi-grid on the last stage at OS 16
    ("resnet50", 16, [1, 2, 4],
     {**R50, "strides": [1, 2, 2, 1], "dilations": [1, 1, 1, 2], "contract_dilation": True,
      "multi_grid": [1, 2, 4]}),
    # layer3 all at 2 (no contraction), layer4 per block
    ("resnet50", 8, [2, 2, 2, 2, 2, 2, 1, 2, 4],
     {**R50, "strides": [1, 2, 1, 1], "dilations": [1, 1, 2, 2], "contract_dilation": False,
      "multi_grid": [1, 2, 4]}),
    ("resnet101", 32, [1, 2, 3],
     {**R50, "depth": 101, "strides": [1, 2, 2, 2], "dilations": [1, 1, 1, 2],
      "contract_dilation": True, "multi_grid": [1, 2, 3]}),
    ("resnet18", 32, [1, 1],
     {"type": "ResNet", "depth": 18, "style": "pytorch", "strides": [1, 2, 2, 2],
      "dilations": [1, 1, 1, 1], "contract_dilation": True}),
])
def test_expressible(backbone: str, os_: int, rates: list[int], expect: dict) -> None:
    f = _frag(backbone, "backbone", os_, rates)
    assert f == {"expressible": True, "config": {"model": {"backbone": expect}},
                 "not_expressible": []}


@pytest.mark.parametrize(("backbone", "target", "os_", "rates", "why"), [
    ("resnet50", "backbone", 8, [1, 2, 2, 2, 3, 2, 1, 2, 4], "per-block rates outside the "
                                                              "last stage"),
    ("resnet18", "backbone", 16, [1, 2], "BasicBlock dilates only its first 3×3 conv"),
    ("vgg16", "backbone", 8, [2, 2, 2], "MobileNetV3/VGG backbones take no per-block"),
    ("mobilenet_v3_large", "head", 16, [2], "MobileNetV3/VGG backbones take no per-block"),
])
def test_not_expressible(backbone: str, target: str, os_: int, rates: list[int],
                         why: str) -> None:
    f = _frag(backbone, target, os_, rates)
    assert not f["expressible"] and f["config"] is None and why in f["not_expressible"][0]


def test_the_head_is_never_expressible_but_its_backbone_is() -> None:
    f = _frag("resnet50", "both", 16, [1, 2, 4, 3, 1], context=True, context_rates=(1, 2))
    assert not f["expressible"]
    assert f["config"]["model"]["backbone"]["multi_grid"] == [1, 2, 4]
    assert f["not_expressible"] == [
        "the nas-dil head stack (rates [3, 1]): mmseg has no decode head with per-layer "
        "dilations", "the context module (rates [1, 2]): no mmseg equivalent"]
    stem = mmseg_fragment({"rates": [1, 2, 3], "kernels": [3]}, ArchConfig().to_dict())
    assert stem["config"] is None and "stem net" in stem["not_expressible"][0]
