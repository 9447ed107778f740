"""The mmsegmentation fragment of an export: hand-checked settings (mmseg's own r50-d8 config
is torchvision's OS-8 ResNet-50), and every case it must refuse, with the reason. Then
``export --mmseg``: the config file parses with mmengine over mmseg's FCN base, the weight
converter round-trips, and, where mmseg and mmcv import, mmseg builds the same net (convs and
logits)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from nas_dil.export import ExportError, load_exported, write_bundle
from nas_dil.export.mmseg import (
    MmsegExportError,
    from_mmseg_state_dict,
    mmseg_config_text,
    mmseg_fragment,
    to_mmseg_state_dict,
)
from nas_dil.models import ArchConfig, build_model, model_config
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


# -- the config file and the checkpoint (export --mmseg) -------------------------------------

BASE_COPY = Path(__file__).resolve().parents[1] / "fixtures" / "mmseg" / "fcn_r50-d8.py"
# (backbone, output stride, rates, the mmseg backbone settings the file must merge to)
BUILDS = [
    ("resnet50", 8, [1, 2, 2, 2, 2, 2, 2, 4, 4],
     {"strides": (1, 2, 1, 1), "dilations": (1, 1, 2, 4), "contract_dilation": True}),
    ("resnet50", 16, [1, 2, 4],
     {"strides": (1, 2, 2, 1), "dilations": (1, 1, 1, 2), "contract_dilation": True,
      "multi_grid": (1, 2, 4)}),
    ("resnet18", 32, [1, 1],
     {"strides": (1, 2, 2, 2), "dilations": (1, 1, 1, 1), "contract_dilation": True}),
]


def _net(backbone: str, os_: int, rates: list[int], num_classes: int = 7) -> torch.nn.Module:
    """A net on a torchvision trunk with random weights and BN statistics (so a wrong key or
    a missing BN buffer shows in the output)."""
    torch.manual_seed(0)
    a = ArchConfig(backbone=backbone, target="backbone", output_stride=os_,
                   num_classes=num_classes)
    net = build_model(candidate_schedule(rates, 3, a), arch=a)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def _export(tmp_path: Path, net: torch.nn.Module) -> Path:
    out = tmp_path / "export"
    write_bundle(out, {"model_config": model_config(net)}, net, mmseg=True)
    return out


@pytest.mark.parametrize(("name", "mm"), [
    # torchvision's trunk names = mmseg ResNet(deep_stem=False)'s; the classifier is conv_seg
    ("backbone.trunk.conv1.weight", "backbone.conv1.weight"),
    ("backbone.trunk.bn1.num_batches_tracked", "backbone.bn1.num_batches_tracked"),
    ("backbone.trunk.layer4.0.downsample.1.running_var",
     "backbone.layer4.0.downsample.1.running_var"),
    ("backbone.trunk.layer3.5.bn3.bias", "backbone.layer3.5.bn3.bias"),
    ("head.classifier.weight", "decode_head.conv_seg.weight"),
    ("head.classifier.bias", "decode_head.conv_seg.bias"),
])
def test_converter_names(name: str, mm: str) -> None:
    assert to_mmseg_state_dict({name: 1}) == {mm: 1}
    assert from_mmseg_state_dict({mm: 1}) == {name: 1}


def test_converter_round_trips_and_refuses_what_mmseg_lacks() -> None:
    state = _net("resnet50", 8, [1, 2, 2, 2, 2, 2, 2, 4, 4]).state_dict()
    mm = to_mmseg_state_dict(state)
    assert len(mm) == len(state) and not any(k.startswith("backbone.trunk.") for k in mm)
    back = from_mmseg_state_dict(mm)
    assert list(back) == list(state) and all(back[k] is state[k] for k in state)
    with pytest.raises(MmsegExportError, match=re.escape("'stack.layers.0.conv.weight'")):
        to_mmseg_state_dict({"stack.layers.0.conv.weight": 0})


@pytest.mark.parametrize(("backbone", "os_", "rates", "settings"), BUILDS)
def test_the_written_config_parses(tmp_path: Path, backbone: str, os_: int, rates: list[int],
                                   settings: dict) -> None:
    """mmengine merges the written file over mmseg's FCN base (a copy: mmseg itself need not
    be installed): torchvision-layout ResNet, no V1c checkpoint, the searched strides and
    dilations, a 1×1 head with num_classes, the converted weights as load_from."""
    Config = pytest.importorskip("mmengine").Config
    net = _net(backbone, os_, rates)
    doc = json.loads((_export(tmp_path, net) / "schedule.json").read_text())
    text = mmseg_config_text(doc["schedule"], doc["arch"], base=str(BASE_COPY))
    path = tmp_path / "export" / "copy_base.py"
    path.write_text(text)
    cfg = Config.fromfile(str(path))
    m = cfg.model
    assert m.type == "EncoderDecoder" and m.pretrained is None and m.auxiliary_head is None
    bb = m.backbone
    depth = int(backbone.removeprefix("resnet"))
    assert (bb.type, bb.depth, bb.deep_stem, bb.style, bb.init_cfg) == (
        "ResNet", depth, False, "pytorch", None)
    assert {k: bb[k] for k in settings} == settings
    assert ("multi_grid" in bb) == ("multi_grid" in settings)
    c = 512 if depth == 18 else 2048
    h = m.decode_head
    assert (h.type, h.num_classes, h.in_channels, h.channels, h.num_convs, h.in_index,
            h.concat_input, h.dropout_ratio) == ("FCNHead", 7, c, c, 0, 3, False, 0.0)
    assert cfg.load_from == str(tmp_path / "export" / "mmseg_weights.pth")
    assert m.data_preprocessor.mean == [123.675, 116.28, 103.53]  # nas-dil's normalisation
    # the file export wrote names mmseg's own base, and differs from this one only there
    written = (tmp_path / "export" / "mmseg_config.py").read_text()
    assert "_base_ = ['mmseg::_base_/models/fcn_r50-d8.py']" in written
    assert written.replace("mmseg::_base_/models/fcn_r50-d8.py", str(BASE_COPY)) == text


def test_the_checkpoint_holds_the_converted_weights(tmp_path: Path) -> None:
    net = _net("resnet18", 32, [1, 1])
    out = _export(tmp_path, net)
    ckpt = torch.load(out / "mmseg_weights.pth", weights_only=True)
    assert set(ckpt) == {"meta", "state_dict"}
    back = from_mmseg_state_dict(ckpt["state_dict"])
    want = net.state_dict()
    assert list(back) == list(want) and all(torch.equal(back[k], want[k]) for k in want)
    doc = json.loads((out / "schedule.json").read_text())
    assert doc["files"]["mmseg_config"] == "mmseg_config.py"
    assert doc["files"]["mmseg_weights"] == "mmseg_weights.pth"


@pytest.mark.parametrize(("backbone", "target", "os_", "rates", "why"), [
    ("resnet50", "head", 16, [2, 1], "head stack"),
    ("resnet18", "backbone", 16, [1, 2], "BasicBlock"),
])
def test_mmseg_refused_writes_nothing(tmp_path: Path, backbone: str, target: str, os_: int,
                                      rates: list[int], why: str) -> None:
    a = ArchConfig(backbone=backbone, target=target, output_stride=os_, num_classes=3)
    net = build_model(candidate_schedule(rates, 3, a), arch=a)
    with pytest.raises(ExportError, match=f"--mmseg: mmseg cannot build this net.*{why}"):
        write_bundle(tmp_path / "x", {"model_config": model_config(net)}, net, mmseg=True)
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def _mmseg_registry() -> object:
    """mmseg's model registry, or a skip: building needs mmseg and mmcv (not in the dev
    extra: mmcv has no wheel for every torch)."""
    try:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    except ImportError as e:
        pytest.skip(f"mmseg/mmcv not importable ({e})")
    register_all_modules()
    return MODELS


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "os_", "rates", "settings"), BUILDS)
def test_mmseg_builds_the_exported_net(tmp_path: Path, backbone: str, os_: int,
                                       rates: list[int], settings: dict) -> None:
    """Where mmseg is installed: the written config (mmseg's own base) builds, the converted
    checkpoint loads strictly, every conv has load_exported's stride, dilation and padding,
    and the logits on one input are the same."""
    models = _mmseg_registry()
    from mmengine.config import Config

    out = _export(tmp_path, _net(backbone, os_, rates))
    ref = load_exported(out, require_weights=True)
    cfg = Config.fromfile(str(out / "mmseg_config.py"))
    cfg.model.backbone.norm_cfg = cfg.model.decode_head.norm_cfg = {"type": "BN"}  # no DDP
    model = models.build(cfg.model).eval()  # type: ignore[attr-defined]
    ckpt = torch.load(cfg.load_from, weights_only=True)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    mine = {k.removeprefix("backbone.trunk."): m for k, m in ref.named_modules()
            if isinstance(m, torch.nn.Conv2d) and k.startswith("backbone.trunk.")}
    theirs = {k.removeprefix("backbone."): m for k, m in model.named_modules()
              if isinstance(m, torch.nn.Conv2d) and k.startswith("backbone.")}
    assert sorted(mine) == sorted(theirs)
    for k, m in mine.items():
        t = theirs[k]
        assert (t.stride, t.dilation, t.padding) == (m.stride, m.dilation, m.padding), k
    x = torch.randn(2, 3, 67, 83)
    with torch.no_grad():
        want = ref(x)
        got = model.encode_decode(x, [{"img_shape": (67, 83)}] * 2)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_cli_export_mmseg_of_a_stem_net_is_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """tests/fixtures/study_v0_1.db holds nets on nas-dil's own stem: --mmseg refuses, exit 2,
    one line, nothing written."""
    import shutil

    from nas_dil.cli import main

    db = tmp_path / "study.db"
    shutil.copy(Path(__file__).resolve().parents[1] / "fixtures" / "study_v0_1.db", db)
    out = tmp_path / "exp"
    assert main(["export", str(db), "--pick", "knee", "--out", str(out), "--mmseg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mmseg: mmseg cannot build this net" in err
    assert "stem net has no mmseg backbone" in err and not out.exists()
