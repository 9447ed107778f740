"""Frozen-backbone trials: only the head trains, on features cached once per key; the result
is the whole net's (mIoU at full resolution) and the kept model rebuilds from its config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.models import ArchConfig
from nas_dil.models.backbones import Backbone
from nas_dil.models.net import model_config, model_from_config
from nas_dil.train import TrainConfig, TrialConfig, run_trial
from nas_dil.train import features as feats
from nas_dil.train.config import TrialConfigError
from nas_dil.train.features import frozen_net
from nas_dil.train.trial import evaluate

DATA = DataConfig(image_size=32, n_train=16, n_val=8, seed=1)


def _random_weights(path: Path, seed: int) -> Path:
    """A ResNet-18 trunk's state_dict with random weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    sd = Backbone("resnet18").trunk.state_dict()
    for k, v in sd.items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 2.0)
        elif k.endswith("running_mean"):
            v.normal_(0, 0.1)
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def data():
    return load_data(DATA)


def _cfg(weights: Path, **train) -> TrialConfig:
    arch = ArchConfig(backbone="resnet18", target="head", output_stride=8, width=16,
                      weights=str(weights))
    kw = {"epochs": 2, "batch_size": 8, "threads": 1, "lr": 0.01, "freeze": "backbone",
          "freeze_views": 2, **train}
    return TrialConfig(arch, DATA, TrainConfig(**kw))


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda: TrainConfig(freeze="head"), "freeze='head': must be one of none, backbone"),
    (lambda: TrainConfig(freeze_views=0), "freeze_views=0: expected an integer in [1, 256]"),
    (lambda: TrainConfig(freeze_cache="pca0"), "train: freeze_cache='pca0': use 'full', "),
    (lambda: TrainConfig(freeze_cache="fp16"), "train: freeze_cache='fp16': use 'full', "),
    (lambda: TrialConfig(train=TrainConfig(freeze="backbone")),
     "needs a torchvision backbone and arch.target='head' (got backbone='stem'"),
    (lambda: TrialConfig(ArchConfig(backbone="resnet18", target="backbone"),
                         train=TrainConfig(freeze="backbone")), "target='backbone'"),
])
def test_refusals(make, fragment: str) -> None:
    with pytest.raises(TrialConfigError) as e:
        make()
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_config_round_trip_keeps_freeze(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "w.pt")
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg
    assert TrialConfig.from_dict({**cfg.to_dict(), "train": {"epochs": 1}}).train.freeze == (
        "none")  # a config stored before freezing existed: the whole net trains
    # and unfrozen configs are written as before, so older studies' trial keys stay equal
    assert "freeze" not in TrialConfig().to_dict()["train"]
    assert "freeze_cache" not in TrialConfig().to_dict()["train"]
    reduced = _cfg(tmp_path / "w.pt", freeze_cache="pca16-int8")
    assert reduced.to_dict()["train"]["freeze_cache"] == "pca16-int8"  # a study records it
    assert TrialConfig.from_dict(reduced.to_dict()) == reduced
    assert TrialConfig.from_dict(TrialConfig().to_dict()) == TrialConfig()


def test_frozen_trial(tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _random_weights(tmp_path / "r18.pt", 3)
    cfg = _cfg(weights)
    root = tmp_path / "cache"
    outcome = run_trial(cfg, [1, 2], seed=0, data=data, feature_cache=root)
    r = outcome.result
    folders = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1
    assert r.config["train"]["freeze"] == "backbone" and 0 <= r.miou <= 1
    assert len(r.miou_curve) == 2 and r.train_images == 2 * DATA.n_train

    # the backbone did not move: it is the weights file's, BatchNorm statistics included
    model = outcome.model
    fresh = Backbone("resnet18", 8, weights=str(weights)).state_dict()
    got = model.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in fresh.items())
    untrained = frozen_net(model.schedule, model.arch, 0).head.state_dict()
    assert any(not torch.equal(v, untrained[k])  # while the head trained
               for k, v in model.head.state_dict().items())

    # the kept weights rebuild the whole net: backbone from arch.weights, head from the trial
    rebuilt = model_from_config(model_config(model))
    rb = rebuilt.state_dict()
    assert all(torch.equal(rb[k], v) for k, v in got.items() if k.startswith("backbone."))
    rebuilt.load_state_dict(model.state_dict())
    full = evaluate(rebuilt, data, 8, torch.device("cpu"), False)["miou"]
    assert abs(full - r.miou) < 0.03  # the trial read fp16 features; the net computes fp32

    # a second trial (a resumed study, the next study with the same key) builds nothing
    def no_build(*a, **k):
        raise AssertionError("rebuilt a valid cache")

    monkeypatch.setattr(feats, "_build", no_build)
    again = run_trial(cfg, [1, 2], seed=0, data=data, feature_cache=root).result
    assert again.miou == r.miou and again.miou_curve == r.miou_curve
    feats._OPENED.clear()  # another process: hashes the files again, then reads them
    assert run_trial(cfg, [1, 2], seed=0, data=data, feature_cache=root).result.miou == r.miou


def test_changed_weights_file_is_rebuilt_never_read(tmp_path: Path, data) -> None:
    weights = _random_weights(tmp_path / "r18.pt", 3)
    cfg = _cfg(weights, epochs=None, steps=2)
    root = tmp_path / "cache"
    first = run_trial(cfg, [1], seed=0, data=data, feature_cache=root).result
    _random_weights(weights, 4)  # same path, new bytes
    second = run_trial(cfg, [1], seed=0, data=data, feature_cache=root).result
    folders = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert len(folders) == 2  # a new key: built anew, the old cache never read
    assert second.loss_curve != first.loss_curve


def test_recomputed_backbone_is_the_same_trial_without_a_cache(tmp_path: Path, data) -> None:
    """``feature_cache=False`` (the benchmark's reference) trains the same head on the
    backbone recomputed at every step: nothing is written, the result is of the same kind."""
    weights = _random_weights(tmp_path / "r18.pt", 3)
    cfg = replace(_cfg(weights), train=replace(_cfg(weights).train, epochs=1, freeze_views=1))
    before = sorted(tmp_path.iterdir())
    b = run_trial(cfg, [1, 2], seed=0, data=data, feature_cache=False).result
    assert sorted(tmp_path.iterdir()) == before
    a = run_trial(cfg, [1, 2], seed=0, data=data, feature_cache=tmp_path / "c").result
    assert a.params == b.params and a.train_images == b.train_images
    assert abs(a.loss_curve[0] - b.loss_curve[0]) < 0.2 and 0 <= b.miou <= 1
