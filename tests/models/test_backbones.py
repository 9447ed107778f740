"""torchvision backbones: analytic cost = FlopCounterMode, analytic support = gradient support,
weights round trip, apply_schedule. Needs torchvision (``setup.sh --dev`` installs it): the
import below fails loudly instead of skipping, so CI always runs these."""

from __future__ import annotations

import random
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas_dil import apply_schedule
from nas_dil.errors import UserError
from nas_dil.models import (
    ArchConfig,
    ArchError,
    build_model,
    count_params,
    model_config,
    model_from_config,
)
from nas_dil.models.backbones import (
    Backbone,
    BackboneError,
    apply_table,
    backbone_table,
    extract_table,
    layer_table,
    model_table,
    trunk_of,
)
from nas_dil.models.config import TV_BACKBONES
from nas_dil.schedule.layertable import table_cost, table_support, target_blocks

SMALL = ("resnet18", "mobilenet_v3_large", "vgg16")  # cheap enough for real forwards


def _candidate(rng: random.Random, name: str) -> tuple[list[int], dict]:
    os_ = rng.choice([8, 16, 32])
    target = rng.choice(["head", "backbone", "both"])
    n_bb = len(target_blocks(layer_table(name), os_)) if target != "head" else 0
    depth = 0 if target == "backbone" else rng.randint(1, 4)
    rates = [rng.randint(1, 6) for _ in range(n_bb + depth)]
    arch = {"backbone": name, "output_stride": os_, "target": target,
            "width": rng.randint(2, 24), "num_classes": rng.randint(1, 5),
            "norm": rng.choice(["bn", "gn", "none"]), "residual": rng.random() < 0.5,
            "context": rng.random() < 0.3, "context_rates": (1, 2)}
    return rates, arch


@pytest.mark.parametrize("name", TV_BACKBONES)
def test_cost_matches_flop_counter(name: str) -> None:
    rng = random.Random(name)
    for _ in range(6):
        rates, arch = _candidate(rng, name)
        h, w = rng.randint(33, 80), rng.randint(33, 80)
        with torch.device("meta"):  # shapes only: exact counts at no compute
            model = build_model(rates, **arch)
            with FlopCounterMode(display=False) as fc:
                model(torch.empty(1, 3, h, w))
        c = table_cost(model_table(model), h, w)
        assert (c.flops, c.params) == (fc.get_total_flops(), count_params(model)), (rates, arch)


def test_torchvision_dilation_convention() -> None:
    # output stride by the table = torchvision's own replace_stride_with_dilation
    for name, flags, os_ in [("resnet50", [False, True, True], 8),
                             ("resnet18", [False, False, True], 16)]:
        with torch.device("meta"):
            ref = extract_table(trunk_of(getattr(tvm, name)(replace_stride_with_dilation=flags)
                                         if name != "resnet18" else _tv_resnet18_dilated()))
        assert ref == backbone_table(name, os_)


def _tv_resnet18_dilated() -> nn.Module:
    # torchvision's BasicBlock refuses dilation > 1: build it by hand as timm does
    m = tvm.resnet18()
    for i, block in enumerate(m.layer4):
        block.conv1.stride = (1, 1)
        block.conv1.dilation = block.conv1.padding = (1, 1) if i == 0 else (2, 2)
        block.conv2.dilation = block.conv2.padding = (2, 2)
    m.layer4[0].downsample[0].stride = (1, 1)
    return m


def _linearise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Same geometry, no cancellation: positive weights (unit fan-in sums), zero biases,
    identity activations, avg- for max-pools, BatchNorm a positive scale, SE gates constant.
    A unit's gradient is then non-zero exactly on the pixels that reach it."""
    g = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    for name, m in list(model.named_modules()):
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        if isinstance(m, nn.ReLU | nn.Hardswish | nn.Hardsigmoid):
            setattr(owner, leaf, nn.Identity())
        elif isinstance(m, nn.MaxPool2d):
            setattr(owner, leaf, nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode))
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                w = torch.rand(m.weight.shape, generator=g, dtype=torch.float64) + 0.1
                m.weight.copy_(w / w[0].sum())
                if m.bias is not None:
                    m.bias.zero_()
                if name.endswith("fc2"):  # SE: a constant positive gate, no global path
                    m.weight.zero_()
                    m.bias.fill_(1.0)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
            elif isinstance(m, nn.GroupNorm):
                raise AssertionError("GroupNorm is not linear; use norm='none' or 'bn'")
    return model


def _columns(table, n: int) -> int:
    """The narrowest input width the net accepts (pools need one pixel left at the end)."""
    for w in (1, 2, 4, 8, 16, 32):
        try:
            table_cost(table, n, w)
            return w
        except ValueError:
            continue
    raise AssertionError("no width up to 32 fits")


def _grad_supports(f: nn.Module, n: int, w: int, units: list[int]) -> list[np.ndarray]:
    """Per unit (output row, column 0): rows of an n×w input with a non-zero gradient.

    The 2-D support is an outer product, so its rows are the per-axis support."""
    x = torch.zeros(1, 3, n, w, dtype=torch.float64, requires_grad=True)
    y = f(x)
    out = []
    for u in units:
        (g,) = torch.autograd.grad(y[0, 0, u, 0], x, retain_graph=True)
        out.append(np.flatnonzero(g.abs().sum((1, 3))[0].numpy() > 0))
    return out


def check_support_is_gradient(model: nn.Module, table: Any, n: int, what: object) -> None:
    """The table's support of the first, middle and last low-res output units at input side
    ``n`` equals the input pixels their gradient reaches (``model`` linearised)."""
    w = _columns(table, n)
    n_out = table_cost(table, n, w).out_h
    units = sorted({0, n_out // 2, n_out - 1})
    got = _grad_supports(model.forward_lowres, n, w, units)
    for unit, g in zip(units, got, strict=True):
        lo, mask = table_support(table, n, unit)
        assert g.tolist() == (lo + np.flatnonzero(mask)).tolist(), (what, n, unit)


@pytest.mark.slow
@pytest.mark.parametrize("name", TV_BACKBONES)
def test_support_matches_gradient(name: str) -> None:
    rng = random.Random(f"grad-{name}")
    n_cases = 2 if name in ("resnet18", "vgg16") else 1
    for _ in range(n_cases):
        rates, arch = _candidate(rng, name)
        arch.update(norm=rng.choice(["bn", "none"]), act="identity", context=False)
        model = _linearise(build_model(rates, **arch))
        table = model_table(model)
        check_support_is_gradient(model, table, rng.randint(64, 160), (rates, arch))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vgg16"])
def test_nominal_support_when_nothing_is_clipped(name: str) -> None:
    # an input wider than the RF: the centre unit's support is the unbounded one
    model = _linearise(build_model([2, 2, 3], backbone=name, output_stride=8, norm="none",
                                   act="identity", width=4, num_classes=1))
    table = model_table(model)
    _, nominal = table_support(table)
    n = nominal.size + 64
    w = _columns(table, n)
    unit = table_cost(table, n, w).out_h // 2
    (got,) = _grad_supports(model.forward_lowres, n, w, [unit])
    lo_u, at_n = table_support(table, n, unit)
    assert at_n.tolist() == nominal.tolist()  # not clipped at this size
    assert got.tolist() == (lo_u + np.flatnonzero(nominal)).tolist()


def test_real_forward_shapes_and_2d_support() -> None:
    model = build_model([1, 2], backbone="resnet18", output_stride=8, num_classes=4, width=8)
    out = model.eval()(torch.randn(2, 3, 57, 41))
    assert out.shape == (2, 4, 57, 41)
    assert model.forward_lowres(torch.randn(1, 3, 57, 41)).shape[-2:] == (8, 6)
    # 2-D: the support is the outer product of the per-axis ones
    lin = _linearise(build_model([1, 3], backbone="resnet18", output_stride=16, norm="none",
                                 act="identity", width=2, num_classes=1))
    x = torch.zeros(1, 3, 49, 40, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(lin.forward_lowres(x)[0, 0, 1, 2], x)
    t = model_table(lin)
    lo_h, mh = table_support(t, 49, 1)
    lo_w, mw = table_support(t, 40, 2)
    expect = np.zeros((49, 40), dtype=bool)
    expect[lo_h:lo_h + mh.size, lo_w:lo_w + mw.size] = np.outer(mh, mw)
    assert ((g.abs().sum(1)[0] > 0).numpy() == expect).all()


# -- weights ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TV_BACKBONES)
def test_weights_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = Backbone(name, 32)
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v
          for k, v in src.trunk.state_dict().items()}
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    model = build_model([2] * len(target_blocks(layer_table(name), 8)), backbone=name,
                        output_stride=8, target="backbone", weights=str(path))
    got = model.backbone.trunk.state_dict()
    assert got.keys() == sd.keys()
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    again = model_from_config(model_config(model))  # a trial's config rebuilds it
    assert again.arch.weights == str(path) and list(again.schedule.rates) == list(
        model.schedule.rates)


def test_imagenet_weights_from_the_cache_and_offline(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*_a: object, **_k: object) -> None:  # no network in tests, ever
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    url = tvm.get_model_weights("resnet18").DEFAULT.url
    where = tmp_path / "hub" / "checkpoints" / Path(url).name
    with pytest.raises(BackboneError) as e:
        Backbone("resnet18", 32, weights="imagenet")
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg
    assert str(where) in msg and url in msg
    # the file where the message says: loaded with no download
    full = tvm.resnet18()
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v
          for k, v in full.state_dict().items()}  # the whole model's keys, fc included
    where.parent.mkdir(parents=True)
    torch.save(sd, where)
    bb = Backbone("resnet18", 8, weights="imagenet")
    assert torch.equal(bb.trunk.state_dict()["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])


def test_bad_weights_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="no such file"):
        Backbone("resnet18", weights=str(tmp_path / "absent.pt"))
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(BackboneError, match="missing"):
        Backbone("resnet18", weights=str(bad))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="cannot load"):
        Backbone("resnet18", weights=str(junk))


def test_arch_validation() -> None:
    with pytest.raises(ArchError, match="backbone='resnet34'"):
        ArchConfig(backbone="resnet34")
    with pytest.raises(ArchError, match="output_stride=4"):
        ArchConfig(backbone="resnet50", output_stride=4)
    with pytest.raises(ArchError, match="the stem has no blocks"):
        ArchConfig(target="backbone")
    a = ArchConfig(backbone="vgg16", target="both", weights="imagenet")
    assert ArchConfig.from_dict(a.to_dict()) == a
    with pytest.raises(UserError, match=r"needs 3 rates \(blocks layer4.0"):
        build_model([2, 4], backbone="resnet50", output_stride=16, target="backbone")


# -- apply_schedule --------------------------------------------------------------------------

def _geometry(model: nn.Module) -> dict[str, tuple]:
    return {n: (m.stride, m.dilation, m.padding) for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("name", TV_BACKBONES)
@pytest.mark.parametrize("os_", [8, 32])
def test_apply_schedule_changes_exactly_the_targeted_convs(name: str, os_: int) -> None:
    with torch.device("meta"):
        user = getattr(tvm, name)()
        plain = getattr(tvm, name)()
    blocks = target_blocks(layer_table(name), os_)
    rates = [3 + i % 4 for i in range(len(blocks))]
    changed = apply_schedule(user, rates, output_stride=os_)
    apply_table(trunk_of(plain), backbone_table(name, os_))  # output stride alone
    before, after = _geometry(plain), _geometry(user)
    differ = {n for n in before if before[n] != after[n]}
    assert changed and differ <= set(changed)  # nothing outside the targeted convs moved
    assert len(differ) >= len(changed) // 2  # (a rate may equal the default dilation)
    rate_of = dict(zip(blocks, rates, strict=True))
    for n in changed:
        block = next(b for b in blocks if n == b or n.startswith(b + "."))
        assert after[n][1] == (rate_of[block],) * 2
    with pytest.raises(BackboneError, match="has dilation already"):
        apply_schedule(user, rates, output_stride=os_)
    with pytest.raises(BackboneError, match="target='head'"):
        apply_schedule(plain, rates, target="head")


def test_apply_schedule_equals_the_built_backbone() -> None:
    torch.manual_seed(0)
    user = tvm.resnet18().eval()
    built = Backbone("resnet18", 8, [1, 2, 5, 9]).eval()
    built.trunk.load_state_dict(trunk_of(user).state_dict())
    apply_schedule(user, [1, 2, 5, 9], output_stride=8)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(trunk_of(user)(x), built(x))


def test_describe_model_on_a_backbone() -> None:
    from nas_dil.models import describe_model

    with torch.device("meta"):
        model = build_model([2, 3, 2, 4], backbone="mobilenet_v3_large", output_stride=16,
                            target="both", context=True, context_rates=(1, 2))
        with FlopCounterMode(display=False) as fc:
            model(torch.empty(1, 3, 65, 47))
    d = describe_model(model, 65, 47)
    assert d["flops"] == fc.get_total_flops() and d["params"] == count_params(model)
    assert sum(r["macs"] for r in d["layers"]) == d["macs"]
    assert d["output_lowres"] == [5, 3] and d["rf_stack"] == 9  # the head: one layer at 4
    assert d["rf_image"] > d["rf_features"] > d["rf_stem"]
    with pytest.raises(ArchError, match="layer table"):
        model.arch.cost_kwargs()  # the stem's net_cost would be a wrong count


def test_dead_taps_get_no_gradient() -> None:
    from nas_dil.schedule.layertable import dead_taps, table_rf, usable_rf

    torch.manual_seed(0)
    model = build_model([1, 8, 1, 8, 9], backbone="resnet18", output_stride=8, target="both",
                        width=4, num_classes=2)
    t = model_table(model)
    n = 48  # 6×6 maps after the trunk: the rate-8 and rate-9 convs see only padding off-centre
    dead = dead_taps(t, n)
    assert dead["stack.layers.0.conv"] == (0, 2) and dead["backbone.trunk.layer3.1.conv1"] == (
        0, 2)
    assert "backbone.trunk.layer3.0.conv1" not in dead
    assert usable_rf(t, n) <= n < table_rf(t)
    model.train()(torch.randn(2, 3, n, n)).square().mean().backward()
    convs = dict(model.named_modules())
    for name, taps in dead.items():
        g = convs[name].weight.grad
        live = [i for i in range(g.shape[-1]) if i not in taps]
        assert g[:, :, taps, :].abs().max() == 0 and g[:, :, :, taps].abs().max() == 0
        assert g[:, :, live][:, :, :, live].abs().max() > 0


def test_yu_koltun_context_module_on_vgg16() -> None:
    from nas_dil.models import context_module_vgg16

    with torch.device("meta"):
        m = context_module_vgg16(num_classes=3)
    assert m.arch.backbone == "vgg16" and m.arch.output_stride == 8 and m.arch.context
    trunk = m.backbone.trunk.features
    pools = [i for i, x in enumerate(trunk) if isinstance(x, nn.MaxPool2d)]
    assert len(pools) == 3  # pool4 and pool5 removed (identities)
    convs = [x for x in trunk if isinstance(x, nn.Conv2d)]
    assert [c.dilation[0] for c in convs[-3:]] == [2, 2, 2]  # conv5 after the removed pool4
    assert [c.dilation[0] for c in convs[:-3]] == [1] * 10
    assert m.stack.layers[0].conv.dilation == (4, 4)  # fc6's part
    assert [c.dilation[0] for c in m.head.context.modules() if isinstance(c, nn.Conv2d)
            and c.kernel_size[0] == 3] == [1, 1, 2, 4, 8, 16, 1]
