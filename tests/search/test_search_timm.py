"""Real searches on timm backbones through `nas-dil search`: a ResNet and a ConvNeXt with
per-block rates, a ConvNeXt head on the frozen trunk; the exports rebuilt by `load_exported`;
the refusals a timm study gets before anything is written. Tiny sizes, random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import timm
import torch

from nas_dil.cli import main
from nas_dil.export import export_trial, load_exported
from tests.search.conftest import RayCluster
from tests.search.test_search_backbones import _refused

pytestmark = pytest.mark.slow

SPACE = """
name = "timm_space"
depth = {depth}
kernel = [3]
output_stride = [{os}]
width = [8]
[rates]
rule = "free"
choices = [1, 2]
"""

STUDY = """
name = "tm"
space = "space.toml"
n_trials = {n_trials}
seed = 0
keep_weights = true
dead_taps = "{dead}"
[sampler]
name = "brute"
[parallel]
max_in_flight = 2
[trial]
kind = "train"
[arch]
backbone = "{backbone}"
target = "{target}"
weights = "{weights}"
[data]
source = "synthetic"
image_size = {size}
n_train = 8
n_val = 4
[train]
steps = 2
eval_every_steps = 1
batch_size = 4
threads = 1
{train}
[early_stop]
enabled = false
[noise]
baseline_seeds = 1  # one look per baseline: these tests count trials
[confirm]
seeds = 0
"""


def _study(tmp_path: Path, backbone: str, *, target: str = "backbone", depth: int = 2,
           os_: int = 16, weights: str = "none", size: int = 48, n_trials: int = 4,
           train: str = "", dead: str = "refuse") -> Path:
    (tmp_path / "space.toml").write_text(SPACE.format(depth=depth, os=os_))
    cfg = tmp_path / "tm.toml"
    cfg.write_text(STUDY.format(backbone=backbone, target=target, weights=weights, size=size,
                                n_trials=n_trials, train=train, dead=dead))
    return cfg


def _search(cfg: Path, out: Path, address: str, capsys: pytest.CaptureFixture[str]
            ) -> list[optuna.trial.FrozenTrial]:
    code = main(["search", str(cfg), "--out", str(out), "--address", address])
    assert code == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tm", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in study.trials if t.state.is_finished()]
    for t in done:
        assert np.isfinite(t.user_attrs["miou"]) and 0 <= t.user_attrs["miou"] <= 1
    return done


def _exported(out: Path, where: Path, pick: str = "best-miou") -> tuple[dict, torch.nn.Module]:
    export_trial(out, pick, where)
    doc = json.loads((where / "schedule.json").read_text())
    model = load_exported(where, require_weights=True)
    assert sum(p.numel() for p in model.parameters()) == doc["params"]  # analytic = built
    return doc, model


def _kept(out: Path) -> str:
    """A trial whose weights the study kept (the front's), as an export pick."""
    return f"trial={sorted(out.glob('weights/trial_*.pt'))[0].stem.removeprefix('trial_')}"


def test_timm_resnet_per_block(ray_cluster: RayCluster, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    w = tmp_path / "r18.pt"
    torch.save(timm.create_model("resnet18").state_dict(), w)  # timm's keys, fc included
    cfg = _study(tmp_path, "timm:resnet18", weights=str(w))
    out = tmp_path / "out"
    done = _search(cfg, out, ray_cluster.address, capsys)
    rates = sorted(tuple(t.user_attrs["candidate"]["rates"]) for t in done)
    assert rates == [(1, 1), (1, 2), (2, 1), (2, 2)]  # layer4.0, layer4.1 at OS 16
    assert all(t.user_attrs["arch"]["backbone"] == "timm:resnet18" for t in done)
    doc, model = _exported(out, tmp_path / "x")
    convs = dict(model.backbone.trunk.named_modules())
    assert [convs[f"layer4.{i}.conv2"].dilation[0] for i in range(2)] == doc["candidate"]["rates"]
    assert not doc["mmseg"]["expressible"]  # no mmseg backbone for a timm trunk
    w.unlink()  # the trained net rebuilds without the file it started from
    assert model.eval()(torch.randn(1, 3, 48, 40)).shape[-2:] == (48, 40)


def test_timm_convnext_per_block_and_frozen_head(ray_cluster: RayCluster, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # per block: the last stage's two blocks at ConvNeXt's own output stride
    # (2×2 maps at a 64-pixel crop: the 7×7 depthwise convs read padding, allowed here)
    out = tmp_path / "out"
    done = _search(_study(tmp_path, "timm:convnext_atto", os_=32, size=64, dead="allow"), out,
                   ray_cluster.address, capsys)
    assert len(done) == 4
    doc, model = _exported(out, tmp_path / "x", _kept(out))  # every trial has dead taps
    convs = dict(model.backbone.trunk.named_modules())
    assert [convs[f"stages.3.blocks.{i}.conv_dw"].dilation[0] for i in range(2)] == doc[
        "candidate"]["rates"]
    # the head on the frozen trunk: features cached once, only the head trains
    out2 = tmp_path / "out2"
    cfg = _study(tmp_path, "timm:convnext_atto", target="head", depth=1, os_=32, size=64,
                 n_trials=2, dead="allow", train='freeze = "backbone"\nfreeze_views = 1')
    done = _search(cfg, out2, ray_cluster.address, capsys)
    assert len(done) == 2
    assert all(t.user_attrs["trial_config"]["train"]["freeze"] == "backbone" for t in done)
    doc, model = _exported(out2, tmp_path / "y", _kept(out2))
    assert model.stack is not None and model.stack.layers[0].conv.dilation[0] == doc[
        "candidate"]["rates"][0]


@pytest.mark.parametrize(("backbone", "os_", "fragment"), [
    ("timm:no_such_net", 16, "has no model 'no_such_net'"),
    ("timm:vit_tiny_patch16_224", 16, "a timm VisionTransformer"),
    ("timm:convnext_atto", 16, "has no symmetric stride-1 form; use output_stride=32"),
])
def test_timm_refusals(capsys: pytest.CaptureFixture[str], tmp_path: Path, backbone: str,
                       os_: int, fragment: str) -> None:
    line = _refused(capsys, _study(tmp_path, backbone, os_=os_), tmp_path / "out")
    assert fragment in line, line


def test_timm_missing_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_timm(name: str, *a: object, **k: object) -> object:
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real(name, *a, **k)

    from nas_dil.models.backbones import layer_table

    layer_table.cache_clear()  # an earlier test may have traced resnet10t in this process
    monkeypatch.setattr(builtins, "__import__", no_timm)
    line = _refused(capsys, _study(tmp_path, "timm:resnet10t"), tmp_path / "out")
    assert "timm backbones need timm" in line and "nas-dil[timm]" in line
