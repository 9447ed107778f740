"""The built net: shapes, config round trip, identity-initialised context, presets, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import nas_dil
from nas_dil.models import (
    PRESETS,
    ArchConfig,
    ArchError,
    ContextModule,
    DilatedSegNet,
    build_model,
    context_module,
    count_params,
    deeplab_multigrid,
    hdc_sawtooth,
    model_config,
    model_from_config,
    yu_koltun_front_end,
)
from nas_dil.models.presets import ARCH
from nas_dil.schedule import Schedule, ScheduleError


def test_config_import_is_torch_free() -> None:
    code = ("import sys; from nas_dil.models import ArchConfig; ArchConfig(width=8);"
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("os_", [4, 8, 16])
@pytest.mark.parametrize("hw", [(65, 47), (33, 97), (31, 31)])
def test_output_shape_odd_sizes(os_: int, hw: tuple[int, int]) -> None:
    model = build_model("1,2,5", output_stride=os_, num_classes=5, width=8, stem_width=4,
                        context=os_ == 8).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, *hw))
    assert y.shape == (2, 5, *hw)


def test_schedule_inputs_and_stored_attributes() -> None:
    a = build_model("1,2,5")
    b = build_model([1, 2, 5])
    c = build_model(Schedule((1, 2, 5)))
    assert a.schedule == b.schedule == c.schedule == Schedule((1, 2, 5), (3,))
    assert isinstance(a, DilatedSegNet) and a.arch == ArchConfig()
    assert build_model("1,2", kernel=5).schedule.kernels == (5, 5)
    assert nas_dil.build_model is build_model
    assert build_model("1", arch=ArchConfig(width=8), num_classes=3).arch.num_classes == 3


def test_json_round_trip_rebuilds_identical_net() -> None:
    model = build_model("1,2,5,9", kernel=5, output_stride=4, backbone_stride=16, width=12,
                        stem_width=6, norm="gn", residual=True, context=True,
                        context_rates=(1, 2, 4), num_classes=4)
    cfg = model_config(model)
    text = json.dumps(cfg)
    assert json.loads(text) == cfg  # plain JSON types only
    clone = model_from_config(json.loads(text))
    assert clone.arch == model.arch and clone.schedule == model.schedule
    assert count_params(clone) == count_params(model)
    clone.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 45, 37)
    model.eval(), clone.eval()
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))
    # the dataclass route named in the brief works too
    from dataclasses import asdict
    assert ArchConfig(**json.loads(json.dumps(asdict(model.arch)))) == model.arch


def test_context_module_is_identity_at_init() -> None:
    ctx = ContextModule(6, (1, 1, 2, 4, 8, 16, 1))
    x = torch.rand(2, 6, 23, 19)  # ReLU passes non-negative maps unchanged
    with torch.no_grad():
        assert torch.equal(ctx(x), x)
    lin = ContextModule(6, (1, 2, 4), act="identity")
    x = torch.randn(2, 6, 23, 19)
    with torch.no_grad():
        assert torch.equal(lin(x), x)
    # in the whole net: the head's output equals the classifier's (after ReLU) at init
    model = context_module(width=8, stem_width=4, num_classes=3).eval()
    with torch.no_grad():
        f = model.stack(model.stem(torch.randn(1, 3, 64, 64)))
        logits = model.head.classifier(f)
        assert torch.equal(model.head(f), logits.clamp(min=0))


def test_presets() -> None:
    fe = yu_koltun_front_end()
    assert [m.conv.dilation[0] for m in fe.stem] == [1, 1, 1, 2, 4]
    assert [m.conv.stride[0] for m in fe.stem] == [2, 2, 2, 1, 1]
    assert fe.arch.output_stride == 8 and not fe.arch.context
    cm = context_module()
    assert cm.arch.context and cm.arch.context_rates == (1, 1, 2, 4, 8, 16, 1)
    assert deeplab_multigrid().schedule.rates == (2, 4, 8)
    assert deeplab_multigrid(base_rate=1).schedule.rates == (1, 2, 4)
    assert deeplab_multigrid().arch.output_stride == 16
    assert hdc_sawtooth().schedule.rates == (1, 2, 5, 1, 2, 5)
    assert hdc_sawtooth(width=8).arch.width == 8  # keyword overrides win
    assert set(PRESETS) == {"yu_koltun_front_end", "context_module", "context_module_vgg16",
                            "deeplab_multigrid", "hdc_sawtooth"}
    assert set(ARCH) == set(PRESETS)
    for name, fields in ARCH.items():  # the data a study's [arch] can copy builds the preset
        built = PRESETS[name]().arch.to_dict()
        assert {k: built[k] for k in fields} == {k: v for k, v in fields.items()}, name
    with torch.no_grad():
        assert fe.eval()(torch.randn(1, 3, 70, 50)).shape == (1, 21, 70, 50)


def test_channels_last_matches() -> None:
    model = build_model("1,2,5", width=8, stem_width=4, residual=True, context=True).eval()
    x = torch.randn(2, 3, 41, 29)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(
            x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)


def test_train_step_runs() -> None:
    model = build_model("1,2", width=8, stem_width=4, residual=True, norm="gn")
    x = torch.randn(2, 3, 33, 33)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_stride": 6}, "output_stride=6"),
        ({"output_stride": 16, "backbone_stride": 8}, "backbone_stride=8"),
        ({"norm": "layer"}, "norm='layer'"),
        ({"act": "gelu"}, "act='gelu'"),
        ({"width": 0}, "width=0"),
        ({"residual": 1}, "residual=1"),
        ({"context_rates": ()}, "context_rates=\\[\\]"),
        ({"context_rates": (1, 0)}, "context_rates=\\[1, 0\\]"),
        ({"widht": 8}, "widht"),
    ],
)
def test_bad_arch_one_line_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ArchError, match=match) as e:
        build_model("1,2", **kwargs)
    assert "\n" not in str(e.value)


def test_bad_schedule_errors() -> None:
    with pytest.raises(ScheduleError, match="keeps resolution"):
        build_model(Schedule((1, 2), (3,), (1, 2)))
    with pytest.raises(ScheduleError, match="conflicts"):
        build_model(Schedule((1, 2), (3,)), kernel=5)
    with pytest.raises(ArchError, match="unknown keys"):
        model_from_config({"schedule": {"rates": [1]}, "arch": {"bogus": 1}})
    with pytest.raises(ArchError, match="missing keys"):
        model_from_config({"schedule": {"rates": [1]}})


@pytest.mark.parametrize("n, gain", [(1, 1.0), (3, 1.0), (4, 0.5625), (6, 0.25), (9, 1 / 9)])
def test_residual_gain_by_depth(n: int, gain: float) -> None:
    from nas_dil.models.layers import residual_gain

    assert residual_gain(n) == pytest.approx(gain)


@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_a_deep_residual_stack_starts_with_scaled_branches(norm: str) -> None:
    """6 residual layers: every branch starts at γ = (3/6)² (or its conv scaled by it without
    a norm); a plain stack and a 3-layer residual one keep PyTorch's init."""
    from nas_dil.models.layers import DilatedStack

    s = Schedule.coerce([1, 2, 5, 1, 2, 5])
    torch.manual_seed(0)
    plain = DilatedStack(s, 8, norm, residual=False)
    torch.manual_seed(0)
    res = DilatedStack(s, 8, norm, residual=True)
    for a, b in zip(plain.layers, res.layers, strict=True):
        if norm == "none":
            assert torch.allclose(b.conv.weight, 0.25 * a.conv.weight)
            assert torch.allclose(b.conv.bias, 0.25 * a.conv.bias)
        else:
            assert torch.equal(b.norm.weight, torch.full_like(a.norm.weight, 0.25))
            assert torch.equal(b.conv.weight, a.conv.weight)
    shallow = DilatedStack(Schedule.coerce([1, 2, 5]), 8, norm, residual=True)
    if norm != "none":
        assert all(torch.equal(m.norm.weight, torch.ones(8)) for m in shallow.layers)
