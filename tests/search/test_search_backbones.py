"""A real search on a torchvision backbone (ResNet-18, target "backbone": per-block rates of its
last stage) through `nas-dil search`, its export rebuilt by `load_exported`, and the refusals
a backbone study gets before anything is written. Tiny sizes; random weights from a file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import torchvision.models as tvm
from torch import nn

from nas_dil.cli import main
from nas_dil.export import export_trial, load_exported
from nas_dil.export.mmseg import from_mmseg_state_dict
from nas_dil.models import model_from_config
from tests.search.conftest import RayCluster

pytestmark = pytest.mark.slow

SPACE = """
name = "r18_last"
depth = {depth}
kernel = {kernel}
output_stride = [{os}]
width = [8]
[rates]
rule = "free"
choices = [1, 2]
"""

STUDY = """
name = "bb"
space = "space.toml"
n_trials = 4
seed = 0
keep_weights = true
[sampler]
name = "brute"
[parallel]
max_in_flight = 2
[trial]
kind = "{kind}"
[arch]
backbone = "resnet18"
target = "{target}"
weights = "{weights}"
[data]
source = "synthetic"
image_size = 48
n_train = 8
n_val = 4
[train]
steps = 2
eval_every_steps = 1
batch_size = 4
threads = 1
[early_stop]
enabled = false
[noise]
baseline_seeds = 1  # one seed per baseline, no confirmation: the counts below
[confirm]
seeds = 0
"""


def _weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "resnet18_random.pt"
    torch.save(tvm.resnet18().state_dict(), path)  # the whole model's keys, fc included
    return path


def _study(tmp_path: Path, *, weights: str, target: str = "backbone", depth: int = 2,
           kernel: str = "[3]", os_: int = 16, kind: str = "train") -> Path:
    (tmp_path / "space.toml").write_text(SPACE.format(depth=depth, kernel=kernel, os=os_))
    cfg = tmp_path / "bb.toml"
    cfg.write_text(STUDY.format(weights=weights, target=target, kind=kind))
    return cfg


def test_search_export_and_load(ray_cluster: RayCluster, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    w = _weights(tmp_path)
    cfg = _study(tmp_path, weights=str(w))
    out = tmp_path / "out"
    code = main(["search", str(cfg), "--out", str(out), "--address", ray_cluster.address])
    text = capsys.readouterr()
    assert code == 0, text.err
    study = optuna.load_study(study_name="bb", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in study.trials if t.state.is_finished()]
    assert len(done) == 4  # layer4.0 and layer4.1 at rates 1-2 at OS 16: 4 candidates
    rates = sorted(tuple(t.user_attrs["candidate"]["rates"]) for t in done)
    assert rates == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for t in done:
        a = t.user_attrs
        assert a["arch"]["backbone"] == "resnet18" and a["arch"]["target"] == "backbone"
        assert a["dead_taps"] == 0 and a["rf"] == 48 and a["rf_nominal"] > 48
        assert np.isfinite(a["miou"]) and 0 <= a["miou"] <= 1
    # the trial's net is the layer table's: rates on layer4's convs, ResNet-18's parameters
    knee = export_trial(out, "best-miou", tmp_path / "x")
    doc = json.loads((tmp_path / "x" / "schedule.json").read_text())
    r = tuple(doc["candidate"]["rates"])
    assert doc["schedule"]["rates"] == list(r) and doc["arch"]["weights"] == str(w)
    model = load_exported(tmp_path / "x", require_weights=True)
    assert sum(p.numel() for p in model.parameters()) == doc["params"] == study.trials[
        knee.trial].user_attrs["params"]  # the analytic count is the built net's
    convs = dict(model.backbone.trunk.named_modules())
    assert [convs[f"layer4.{i}.conv2"].dilation[0] for i in range(2)] == list(r)
    # the trained weights round-trip: equal to the search's own file, not the start point
    blob = torch.load(out / f"weights/trial_{knee.trial}.pt", weights_only=True)
    ref = model_from_config(blob["model_config"])
    ref.load_state_dict(blob["state_dict"])
    start = torch.load(w, weights_only=True)
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items())
    assert not torch.equal(got["backbone.trunk.layer4.1.conv2.weight"],
                           start["layer4.1.conv2.weight"])  # it trained
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref.eval()(x))
    # export --mmseg of the undilated trial: its weights in mmseg's names, beside the config
    n = next(t.number for t in done if tuple(t.user_attrs["candidate"]["rates"]) == (1, 1))
    mm = tmp_path / "mm"
    code = main(["export", str(out), "--pick", f"trial={n}", "--out", str(mm), "--mmseg"])
    assert code == 0, capsys.readouterr().err
    assert "mmseg_config.py" in capsys.readouterr().out
    text = (mm / "mmseg_config.py").read_text()
    assert "dilations=(1, 1, 1, 1)" in text and "num_classes=" in text
    if (mm / "weights.pt").exists():  # the search kept this trial's weights (on the front)
        ckpt = torch.load(mm / "mmseg_weights.pth", weights_only=True)["state_dict"]
        mine = torch.load(mm / "weights.pt", weights_only=True)
        back = from_mmseg_state_dict(ckpt)
        assert list(back) == list(mine) and all(torch.equal(back[k], mine[k]) for k in mine)
    else:  # no weights: none converted, and the config loads none
        assert not (mm / "mmseg_weights.pth").exists() and "load_from = None" in text
    # the weights file the search started from is not needed to rebuild the trained net
    w.unlink()
    assert isinstance(load_exported(tmp_path / "x"), nn.Module)
    # mmseg: a BasicBlock ResNet is expressible only undilated (its conv2 never dilates)
    frag = doc["mmseg"]
    if r == (1, 1):
        assert frag["expressible"] and frag["config"]["model"]["backbone"]["depth"] == 18
    else:
        assert not frag["expressible"] and "BasicBlock" in frag["not_expressible"][0]


def _refused(capsys: pytest.CaptureFixture[str], cfg: Path, out: Path) -> str:
    code = main(["search", str(cfg), "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas-dil search: error: "), err
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


@pytest.mark.parametrize(("kw", "fragment"), [
    ({"depth": 3}, "depth 3 cannot fit: target='backbone' on resnet18 at output_stride=16 "
                   "sets 2 block rates (layer4.0 … layer4.1); the space's depths are [3], it "
                   "needs depth = 2"),
    ({"depth": 2, "target": "both"}, "it needs depths > 2"),
    ({"kernel": "[3, 5]"}, "target='backbone' has no head stack, so kernel [3, 5]"),
    ({"os_": 4}, "output_stride=4: backbone='resnet18' runs at 8, 16, 32"),
    ({"weights": "/nonexistent/r18.pt"}, "weights='/nonexistent/r18.pt': no such file"),
    ({"weights": "r18.pt"}, "weights='r18.pt': give the state_dict's absolute path"),
])
def test_backbone_refusals(capsys: pytest.CaptureFixture[str], tmp_path: Path, kw: dict,
                           fragment: str) -> None:
    kw.setdefault("weights", "none")
    line = _refused(capsys, _study(tmp_path, **kw), tmp_path / "out")
    assert fragment in line, line


def test_empty_weights_file_is_one_line(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    # issue 23 item 5: an empty (0-byte) weights file was an IndexError traceback
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    line = _refused(capsys, _study(tmp_path, weights=str(empty)), tmp_path / "out")
    assert f"weights={str(empty)!r}: cannot load a state_dict (EOFError)" in line, line


def test_a_baseline_that_does_not_fit_is_refused(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    cfg = _study(tmp_path, weights="none")
    cfg.write_text(cfg.read_text().replace('name = "brute"', 'name = "random"')
                   + '[[baselines]]\nname = "three"\nrates = [1, 2, 4]\n')
    line = _refused(capsys, cfg, tmp_path / "out")
    assert "baselines 'three': rates=[1, 2, 4]: target='backbone' on resnet18 at " \
           "output_stride=16 needs 2 rates (blocks layer4.0, layer4.1)" in line, line


def test_imagenet_offline_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*_a: object, **_k: object) -> None:  # no network in tests, ever
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    line = _refused(capsys, _study(tmp_path, weights="imagenet"), tmp_path / "out")
    assert "weights='imagenet': resnet18's ImageNet weights are not at" in line
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in line


def test_torchvision_missing_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_torchvision(name: str, *a: object, **k: object) -> object:
        if name.startswith("torchvision"):
            raise ImportError("No module named 'torchvision'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    line = _refused(capsys, _study(tmp_path, weights="none"), tmp_path / "out")
    assert "torchvision backbones need a torchvision" in line and "nas-dil[vision]" in line


def test_the_shipped_multigrid_study_passes_preflight() -> None:
    from nas_dil.models.analytic import analytic_batch
    from nas_dil.search.config import load_study_config
    from nas_dil.search.preflight import check_arch
    from nas_dil.spaces import load_space

    cfg = load_study_config("resnet50_multigrid")
    space = load_space(cfg.space_path)
    check_arch(cfg, space)  # torchvision here, weights "none", depth 3 = layer4's blocks
    cands = list(space.enumerate())
    cols = analytic_batch(cands, {**cfg.arch, "num_classes": 5}, cfg.data.crop_hw)
    live = [c.rates for c, d in zip(cands, cols["dead_taps"], strict=True) if d == 0]
    assert sorted(live) == sorted(c.rates for c in cands if max(c.rates) <= 3)  # 4×4 maps
    assert len(set(cols["rf_stack"].tolist())) > 1  # the objective varies
