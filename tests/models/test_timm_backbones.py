"""timm backbones ("timm:<name>"): stored tables = a fresh extraction, the output-stride rule =
timm's own ``output_stride``, analytic cost = FlopCounterMode and analytic support = gradient
support per family, weights from a file, and the one-line refusals. Needs timm (``setup.sh
--dev`` installs it): the import below fails loudly instead of skipping, so CI runs these."""

from __future__ import annotations

import builtins
import random
from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas_dil import apply_schedule
from nas_dil.errors import UserError
from nas_dil.models import ArchConfig, ArchError, build_model, count_params
from nas_dil.models.analytic import analytic_attrs
from nas_dil.models.backbones import (
    Backbone,
    BackboneError,
    extract_table,
    layer_table,
    model_table,
    trunk_of,
)
from nas_dil.models.config import TIMM_BACKBONES
from nas_dil.models.tables import backbone_table, block_kernels, table_path, trunk_table
from nas_dil.schedule.layertable import table_rf, table_support
from tests.models.test_backbones import _columns, check_support_is_gradient

# one small model per family, and the output strides each runs at
FAMILIES = {
    "timm:resnet18": (8, 16, 32),  # ResNet (BasicBlock)
    "timm:resnest14d": (8, 16, 32),  # ResNeSt: split attention, ResNet-D average-pool shortcut
    "timm:regnetx_002": (8, 16, 32),  # RegNetX: grouped convs
    "timm:regnety_002": (8, 16, 32),  # RegNetY: + squeeze-excitation
    "timm:convnext_atto": (32,),  # ConvNeXt: 7×7 depthwise, LayerNorm, layer scale
    "timm:efficientnet_b0": (8, 16, 32),  # EfficientNet: depthwise, squeeze-excitation
}


def _candidate(rng: random.Random, name: str) -> tuple[list[int], dict]:
    os_ = rng.choice(FAMILIES[name])
    target = rng.choice(["head", "backbone", "both"])
    n_bb = len(block_kernels(name, os_)[0]) if target != "head" else 0
    depth = 0 if target == "backbone" else rng.randint(1, 3)
    rates = [rng.randint(1, 5) for _ in range(n_bb + depth)]
    arch = {"backbone": name, "output_stride": os_, "target": target,
            "width": rng.randint(2, 16), "num_classes": rng.randint(1, 5),
            "norm": rng.choice(["bn", "none"]), "residual": rng.random() < 0.5,
            "context": rng.random() < 0.3, "context_rates": (1, 2)}
    return rates, arch


@pytest.mark.parametrize("name", TIMM_BACKBONES)
def test_stored_table_is_a_fresh_extraction(name: str) -> None:
    # a timm upgrade that changes a trunk fails here: rerun backbones.write_tables()
    assert trunk_table(name) == layer_table(name), f"{table_path(name)} is stale"


def test_the_analytic_path_needs_neither_torch_nor_timm() -> None:
    import subprocess
    import sys

    code = ("import sys; from nas_dil.models import ArchConfig; "
            "from nas_dil.models.analytic import analytic_attrs; "
            "analytic_attrs([1, 2, 4], ArchConfig(backbone='timm:convnext_atto', "
            "target='both', output_stride=32), 64); "
            "assert not {'torch', 'timm'} & set(sys.modules), 'torch or timm imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "regnetx_002", "regnety_002",
                                  "efficientnet_b0"])
@pytest.mark.parametrize("os_", [8, 16])
def test_output_stride_is_timms(name: str, os_: int) -> None:
    # the one stride-to-dilation rule (layertable.dilate) = timm's own output_stride
    with torch.device("meta"):
        trunk = trunk_of(timm.create_model(name, output_stride=os_))
    blocks = {op.name: op.block for op in trunk_table(f"timm:{name}").ops}
    ref = extract_table(trunk, block_of=lambda p: blocks.get(p, ""))
    assert ref == backbone_table(f"timm:{name}", os_)


def test_resnest_shortcut_pool_is_removed_where_timm_keeps_a_same_pool() -> None:
    # the one difference from timm's output_stride: a ResNet-D shortcut's 2×2 average pool
    # past the output stride is removed (as every pool is); timm keeps it at stride 1 with
    # one-sided padding. Every conv is timm's.
    with torch.device("meta"):
        ref = timm.create_model("resnest14d", output_stride=8)
    table = {op.name: op for op in backbone_table("timm:resnest14d", 8).ops}
    for name, m in ref.named_modules():
        if isinstance(m, nn.Conv2d):
            op = table[name]
            assert (op.stride, op.dilation, op.padding) == (
                m.stride[0], m.dilation[0], m.padding[0]), name
    assert table["layer4.0.downsample.0"].kind == "skip"
    assert type(ref.layer4[0].downsample[0]).__name__ == "AvgPool2dSame"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_macs_and_params_are_flop_counter_mode(name: str) -> None:
    rng = random.Random(f"timm-macs-{name}")
    for _ in range(4):
        rates, arch = _candidate(rng, name)
        h, w = rng.randint(40, 80), rng.randint(40, 80)
        a = analytic_attrs(rates, ArchConfig(**arch), (h, w))
        with torch.device("meta"):
            model = build_model(rates, **arch).eval()
            with FlopCounterMode(display=False) as fc:
                model(torch.empty(1, 3, h, w))
        assert (a["flops"], a["params"]) == (fc.get_total_flops(), count_params(model)), (
            rates, arch)
        assert a["rf_nominal"] == table_rf(model_table(model))


_GATED = ("SEModule", "SqueezeExcite", "SplitAttn")  # timm's gates on a global pool


def _linearise(model: nn.Module, seed: int = 0, gates: bool = True) -> nn.Module:
    """Same geometry, no cancellation (as tests/models/test_backbones._linearise): positive
    weights, zero biases, identity activations and LayerNorms, avg- for max-pools, BatchNorm a
    unit scale, layer scale 1, squeeze-excitation and split-attention gates constant (unless
    ``gates`` is false: then they stay live, positive)."""
    g = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    acts = (nn.ReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.LayerNorm)
    for name, m in list(model.named_modules()):
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        if isinstance(m, acts) or type(m).__name__ == "GELU":  # timm's GELU: F.gelu
            setattr(owner, leaf, nn.Identity())
        elif isinstance(m, nn.MaxPool2d):
            setattr(owner, leaf, nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                w = torch.rand(m.weight.shape, generator=g, dtype=torch.float64) + 0.1
                m.weight.copy_(w / w[0].sum())
                if m.bias is not None:
                    m.bias.zero_()
                gate = type(model.get_submodule(name.rpartition(".")[0])).__name__ in _GATED
                if gates and gate and name.endswith(("fc2", "conv_expand")):
                    # the gate's last conv: a constant, positive gate
                    m.weight.zero_()
                    m.bias.fill_(1.0)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_support_matches_gradient(name: str) -> None:
    rng = random.Random(f"timm-grad-{name}")
    rates, arch = _candidate(rng, name)
    arch.update(act="identity", context=False, width=2, num_classes=1)
    model = _linearise(build_model(rates, **arch))
    table = model_table(model)
    check_support_is_gradient(model, table, rng.randint(64, 128), (rates, arch))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "n"), [("timm:regnety_002", 384), ("timm:resnest14d", 160)])
def test_a_live_gate_reaches_every_pixel(name: str, n: int) -> None:
    # the convention for gates on a global pool (squeeze-excitation, split attention; as for
    # torchvision's MobileNetV3): the table's support is the local paths'; a live gate adds a
    # global path that reaches every pixel. With live gates the gradient covers the whole
    # input; with constant gates it is the table's (test_support_matches_gradient).
    arch = {"backbone": name, "output_stride": 32, "target": "head", "width": 2,
            "num_classes": 1, "act": "identity", "context": False}
    live = _linearise(build_model([1], **arch), gates=False)
    table = model_table(live)
    # a positive input: the gate's path x·g(x) has gradient x·g'(x), zero at x = 0
    x = (torch.rand(1, 3, n, _columns(table, n), dtype=torch.float64) + 0.1).requires_grad_()
    (g,) = torch.autograd.grad(live.forward_lowres(x)[0, 0, 0, 0], x)
    assert bool((g.abs().sum(dim=(0, 1, 3)) > 0).all())  # every row: the global path
    assert table_support(table, n, 0)[1].sum() < n  # the local paths reach fewer


def test_real_forward_at_each_output_stride() -> None:
    # at OS 8 the rates set layer3's and layer4's blocks, else layer4's
    for os_, size, rates in ((8, 8, [1, 2, 3, 4]), (16, 4, [3, 2]), (32, 2, [1, 2])):
        model = build_model(rates, backbone="timm:resnet18", output_stride=os_,
                            target="backbone", num_classes=3).eval()
        assert model.forward_lowres(torch.randn(1, 3, 57, 57)).shape[-2:] == (size, size)
        convs = dict(model.backbone.trunk.named_modules())
        assert [convs[f"layer4.{i}.conv2"].dilation[0] for i in range(2)] == rates[-2:]
    m = build_model([2], backbone="timm:convnext_atto", output_stride=32, num_classes=3).eval()
    assert m(torch.randn(2, 3, 64, 48)).shape == (2, 3, 64, 48)


def test_apply_schedule_on_a_timm_model() -> None:
    # a timm model as timm builds it gets the rates [arch] would give it
    model = timm.create_model("regnetx_002")
    rates = [2, 3, 1, 2, 4, 1, 2]  # RegNetX-200MF's last stage: blocks s4.b1 … s4.b7
    names = apply_schedule(model, rates, output_stride=16)
    ref = Backbone("timm:regnetx_002", 16, rates).trunk
    assert names == [f"s4.b{i}.conv2.conv" for i in range(1, 8)]
    got = dict(trunk_of(model).named_modules())
    for n, m in ref.named_modules():
        if isinstance(m, nn.Conv2d):
            assert (m.stride, m.dilation, m.padding) == (
                got[n].stride, got[n].dilation, got[n].padding), n
    with pytest.raises(BackboneError, match="no symmetric stride-1 form"):
        apply_schedule(timm.create_model("convnext_atto"), [1, 1], output_stride=16)


def test_weights_from_a_timm_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    full = timm.create_model("resnet18")  # the whole model's keys, fc included
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v
          for k, v in full.state_dict().items()}
    path = tmp_path / "r18.pt"
    torch.save(sd, path)
    bb = Backbone("timm:resnet18", 8, weights=str(path))
    got = bb.trunk.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in got) and "fc.weight" not in got
    with pytest.raises(BackboneError, match="only torchvision trunks take 'imagenet'"):
        Backbone("timm:resnet18", 32, weights="imagenet")


@pytest.mark.parametrize(("name", "os_", "fragment"), [
    ("timm:no_such_net", 32, "timm 1."),
    ("timm:no_such_net", 32, "has no model 'no_such_net'"),
    ("timm:vit_tiny_patch16_224", 32, "a timm VisionTransformer; nas-dil tabulates the timm "
                                      "families ResNet, RegNet, ConvNeXt, EfficientNet"),
    ("timm:tf_efficientnet_b0", 32, "Conv2dSame) unsupported"),
    ("timm:convnext_atto", 16, "stages.3.downsample.1 is a 2×2 stride-2 conv, which has no "
                               "symmetric stride-1 form; use output_stride=32"),
])
def test_refusals_are_one_line(name: str, os_: int, fragment: str) -> None:
    with pytest.raises(UserError) as e:
        backbone_table(name, os_)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_timm_missing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_timm(name: str, *a: object, **k: object) -> object:
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(BackboneError) as e:
        Backbone("timm:resnet18")
    assert "pip install 'nas-dil[timm]'" in str(e.value) and "\n" not in str(e.value)


def test_arch_config_takes_timm_names() -> None:
    assert ArchConfig(backbone="timm:anything", output_stride=16).backbone == "timm:anything"
    for bad in ("timm:", "resnet7"):
        with pytest.raises(ArchError, match="'timm:<model name>'"):
            ArchConfig(backbone=bad)


def test_a_model_without_a_stored_table_is_extracted() -> None:
    name = "timm:resnet10t"  # a ResNet-D with a deep stem: not shipped, tabulated live
    assert not table_path(name).is_file()
    rates = [3, 1, 2]  # layer4.0's rate, then the head's
    arch = ArchConfig(backbone=name, output_stride=16, target="both", num_classes=2)
    a = analytic_attrs(rates, arch, (48, 48))
    with torch.device("meta"):
        model = build_model(rates, arch=arch).eval()
        with FlopCounterMode(display=False) as fc:
            model(torch.empty(1, 3, 48, 48))
    assert (a["flops"], a["params"]) == (fc.get_total_flops(), count_params(model))
