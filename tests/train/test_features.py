"""The frozen-feature cache: built once, reused by key, never stale, never corrupt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.models.backbones import Backbone
from nas_dil.train.features import (
    CacheError,
    FeatureKey,
    cache_bytes,
    cache_root,
    default_root,
    frozen_backbone,
    kept_bytes,
    open_or_build,
    plan_features,
)


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig(image_size=32, n_train=6, n_val=4, seed=3))


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return Backbone("resnet18", 8).eval()


class _Counting(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.images = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.inner(x)


def test_build_then_reuse(tmp_path: Path, data, backbone) -> None:
    key = FeatureKey.of(data, "resnet18", "none", 8, views=2, seed=5)
    counting = _Counting(backbone)
    cache = open_or_build(tmp_path, key, counting, data, batch_size=4)
    assert counting.images == 1 + 6 * 2 + 4  # shape probe, two views, val
    assert cache.nbytes == cache_bytes(backbone, data, 2)
    # the features are the backbone's (fp16) on the very batches the trainer would see
    x, y = next(data.train_batches(6, 1, 5))
    with torch.no_grad():
        ref = backbone(x).half().float()
    fx, fy = cache.train_rows(1, np.arange(6))
    torch.testing.assert_close(torch.from_numpy(fx.astype(np.float32)), ref)
    assert torch.equal(torch.from_numpy(fy).long(), y)
    vx, vy = next(cache.val_batches(4))
    assert vx.shape == (4, 512, 4, 4) and vy.shape == (4, 32, 32)
    batches = list(cache.train_batches(4, epoch=3, seed=1))  # epoch 3 reads view 1
    assert [b[0].shape[0] for b in batches] == [4, 2]
    # a second open (another trial, a resumed study): no forward at all
    counting.images = 0
    again = open_or_build(tmp_path, key, counting, data)
    assert counting.images == 0 and again.folder == cache.folder


def test_a_changed_key_or_file_is_never_read(tmp_path: Path, data, backbone) -> None:
    key = FeatureKey.of(data, "resnet18", "none", 8, views=1)
    first = open_or_build(tmp_path, key, backbone, data)
    other = FeatureKey.of(data, "resnet18", "none", 16, views=1)
    assert other.digest() != key.digest()
    assert open_or_build(tmp_path, other, Backbone("resnet18", 16).eval(), data).folder != (
        first.folder)
    # weights enter by content: same path, new bytes, new key
    w = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(1)}, w)
    k1 = FeatureKey.of(data, "resnet18", str(w), 8, views=1)
    torch.save({"a": torch.ones(1)}, w)
    assert FeatureKey.of(data, "resnet18", str(w), 8, views=1) != k1
    # a corrupted file: rebuilt, never used
    path = first.folder / "train-v0-00000.x.npy"
    del first
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    counting = _Counting(backbone)
    rebuilt = open_or_build(tmp_path, key, counting, data)
    assert counting.images > 0
    x, _ = next(data.train_batches(6, 0, 0))
    with torch.no_grad():
        ref = backbone(x).half().numpy()
    assert (rebuilt.train_rows(0, np.arange(6))[0] == ref).all()


def test_no_room_is_one_line(tmp_path: Path, data, backbone,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    class Usage:
        free = 1000

    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage)
    with pytest.raises(CacheError, match=r"needs .* GiB; .* has 0.00 GiB free"):
        open_or_build(tmp_path, FeatureKey.of(data, "resnet18", "none", 8), backbone, data)
    assert not any(tmp_path.iterdir())  # nothing half-written


def _manifest_null(m: dict) -> object:
    return None


def _manifest_list(m: dict) -> object:
    return [m]


def _no_shards(m: dict) -> object:
    return {k: v for k, v in m.items() if k != "shards"}


def _shards_dict(m: dict) -> object:
    return {**m, "shards": {r["name"]: r for r in m["shards"]}}


def _sha256_list(m: dict) -> object:
    return {**m, "shards": [{**r, "sha256": list(r["sha256"].values())} for r in m["shards"]]}


def _sha256_numbers(m: dict) -> object:
    return {**m, "shards": [{**r, "sha256": {k: 7 for k in r["sha256"]}} for r in m["shards"]]}


def _a_shard_less(m: dict) -> object:
    return {**m, "shards": m["shards"][1:]}


@pytest.mark.parametrize("reshape", [_manifest_null, _manifest_list, _no_shards, _shards_dict,
                                     _sha256_list, _sha256_numbers, _a_shard_less])
def test_a_manifest_of_the_wrong_shape_is_rebuilt(tmp_path: Path, data, backbone,
                                                  reshape) -> None:
    # issue 23 item 3: valid JSON of the wrong shape was an AttributeError / KeyError
    import json

    key = FeatureKey.of(data, "resnet18", "none", 8, views=1)
    folder = open_or_build(tmp_path, key, backbone, data).folder
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(reshape(json.loads(manifest.read_text()))))
    counting = _Counting(backbone)
    rebuilt = open_or_build(tmp_path, key, counting, data)
    assert counting.images > 0 and rebuilt.folder == folder
    assert [r["name"] for r in json.loads(manifest.read_text())["shards"]] == [
        "train-v0-00000", "val-00000"]


_STUCK_BUILDER = """
import sys, time, torch
from nas_dil.data import DataConfig, load_data
from nas_dil.models.backbones import Backbone
from nas_dil.train.features import FeatureKey, open_or_build

torch.manual_seed(0)
inner = Backbone("resnet18", 8).eval()  # the `backbone` fixture's weights

class Stuck(torch.nn.Module):  # the real backbone for its first calls, then hangs
    calls = 0
    def forward(self, x):
        Stuck.calls += 1
        if Stuck.calls > 6:  # the probe, two shards of two forwards, one forward of the third
            time.sleep(600)
        return inner(x)

data = load_data(DataConfig(image_size=32, n_train=24, n_val=4, seed=3))
open_or_build(sys.argv[1], FeatureKey.of(data, "resnet18", "none", 8, views=2), Stuck(), data,
              batch_size=4)
"""


@pytest.fixture(scope="module")
def data24():
    return load_data(DataConfig(image_size=32, n_train=24, n_val=4, seed=3))


def _killed_mid_build(root: Path) -> Path:
    """The shard file a real builder process was writing when it was killed with SIGKILL
    (24 training images in shards of 8: two shards finished, the third half-written)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", _STUCK_BUILDER, str(root)])
    try:
        deadline = time.monotonic() + 180
        third = ".build-*/train-v0-00002.x.npy.tmp-*"
        while not (tmps := list(root.glob(third))) and time.monotonic() < deadline:
            assert proc.poll() is None, "the builder ended before its third shard"
            time.sleep(0.05)
        assert len(tmps) == 1, "the builder never started its third shard"
        assert tmps[0].name.endswith(f"-{proc.pid}")
        time.sleep(0.5)  # it hangs in the third shard's second forward: nothing else written
        assert list(root.glob(".build-*/*.tmp-*")) == tmps
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert tmps[0].is_file()  # left behind: nobody removed it
    return tmps[0]


def test_a_killed_build_resumes_at_its_first_missing_shard(
        tmp_path: Path, data24, backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 22 item 3: the finished shards of a killed build are kept, checked and reused;
    # its half-written file goes; the disk check counts the kept bytes as written
    import shutil

    stale = _killed_mid_build(tmp_path)
    key = FeatureKey.of(data24, "resnet18", "none", 8, views=2)
    work = stale.parent
    assert work.name == f".build-{key.digest()[:24]}"
    assert sorted(p.name for p in work.glob("*.json")) == ["train-v0-00000.json",
                                                           "train-v0-00001.json"]
    kept = kept_bytes(tmp_path, key)
    assert kept == sum(p.stat().st_size for p in work.glob("train-v0-0000[01].?.npy")) > 0
    need = cache_bytes(backbone, data24, 2) - kept

    class Usage:
        free = need - 1

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage)
    with pytest.raises(CacheError, match="needs"):
        open_or_build(tmp_path, key, backbone, data24, batch_size=4)
    assert not stale.exists() and len(list(work.glob("*.json"))) == 2  # kept for the next
    Usage.free = need  # exactly what is missing: fits
    counting = _Counting(backbone)
    cache = open_or_build(tmp_path, key, counting, data24, batch_size=4)
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert counting.images == 1 + (2 * 24 - 16) + 4  # the probe, all but two shards, val
    assert not work.exists() and not list(tmp_path.rglob("*.tmp-*"))
    whole = open_or_build(tmp_path / "whole", key, backbone, data24, batch_size=4)
    for v in range(2):  # the kept shards hold what a whole build computes (the killed
        # builder was another process, maybe with another torch thread count: the same
        # features up to float rounding, stored at fp16)
        rows = np.arange(24)
        np.testing.assert_allclose(cache.train_rows(v, rows)[0].astype(np.float32),
                                   whole.train_rows(v, rows)[0].astype(np.float32),
                                   rtol=1e-2, atol=1e-3)


def test_a_killed_builders_files_are_removed_by_the_next_builder(tmp_path: Path, data,
                                                                 backbone) -> None:
    # issue 23 item 4: kill -9 during a build left `.tmp-<digest>-<pid>-<ns>/` forever
    import os
    import socket

    stale = _killed_mid_build(tmp_path)
    dead = stale.name.rsplit("-", 1)[1]
    old = tmp_path / f".tmp-{'1' * 24}-{socket.gethostname()}-{dead}-1"  # FORMAT 1's folder
    old.mkdir()
    live = stale.parent / f"val-00000.x.npy.tmp-{socket.gethostname()}-{os.getpid()}"
    live.write_bytes(b"")  # a shard being written (this process is alive): never touched
    key = FeatureKey.of(data, "resnet18", "none", 8, views=1)
    open_or_build(tmp_path, key, backbone, data)
    assert not stale.exists() and not old.exists() and live.is_file()


def test_stale_build_files_are_removed_before_the_disk_check(
        tmp_path: Path, data, backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    # their space counts as free: they go before the check, even when the build is refused
    import shutil

    stale = _killed_mid_build(tmp_path)

    class Usage:
        free = 1000

    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage)
    with pytest.raises(CacheError, match="needs"):
        open_or_build(tmp_path, FeatureKey.of(data, "resnet18", "none", 8), backbone, data)
    assert not stale.exists()


def _trial_config(data_cfg: DataConfig, output_stride: int = 8) -> Any:
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig

    return TrialConfig(ArchConfig(backbone="resnet18", target="head",
                                  output_stride=output_stride, width=8),
                       data_cfg, TrainConfig(epochs=1, batch_size=4, freeze="backbone",
                                             freeze_views=2))


def test_plan_sizes_builds_then_finds_every_stride(tmp_path: Path, data) -> None:
    """One call plans a study's caches (one per output stride), checked to fit together;
    `build` makes the missing ones, a second plan finds them all."""
    cfg = _trial_config(DataConfig(image_size=32, n_train=6, n_val=4, seed=3))
    at16 = _trial_config(cfg.data, 16).arch
    plan = plan_features(cfg, 0, tmp_path, archs=[at16, cfg.arch], data=data)
    assert [c.output_stride for c in plan.caches] == [8, 16]
    assert all(c.found is None for c in plan.caches) and not any(tmp_path.iterdir())
    assert [c.nbytes for c in plan.caches] == [
        cache_bytes(c.backbone, data, 2, cfg.train.freeze_cache) for c in plan.caches]
    said: list[str] = []
    info = plan.build(said.append)
    assert [c["built"] for c in info["caches"]] == [True, True] and len(said) == 4
    assert "feature cache: resnet18 at output stride 16, 2 view(s) of 6 + 4 val images" in (
        said[2])
    again = plan_features(cfg, 0, tmp_path, archs=[at16], data=data)
    assert [c.found.folder for c in again.caches if c.found] == [
        Path(c["folder"]) for c in info["caches"]]
    assert [c["built"] for c in again.build()["caches"]] == [False, False]
    # a trial's plan (its own backbone, one stride) opens the same cache
    net_bb = frozen_backbone(cfg.arch, 0)
    assert plan_features(cfg, 0, tmp_path, data=data, backbone=net_bb).open().folder == (
        Path(info["caches"][0]["folder"]))


def test_a_plan_that_does_not_fit_is_refused_before_writing(
        tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    class Usage:
        free = 1000

    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage)
    cfg = _trial_config(DataConfig(image_size=32, n_train=6, n_val=4, seed=3))
    with pytest.raises(CacheError, match=r"for resnet18 \(output stride 8, 16\) needs"):
        plan_features(cfg, 0, tmp_path / "fc", archs=[_trial_config(cfg.data, 16).arch],
                      data=data)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("where", "expected"), [
    (None, "default"), ("auto", "default"), (True, "default"), ("", "default"),
    ("/x/fc", "/x/fc"), (Path("rel/fc"), "rel/fc"),
])
def test_cache_root(where: Any, expected: str) -> None:
    got = cache_root(where)
    assert got == (default_root() if expected == "default" else Path(expected))


def test_val_images_of_mixed_sizes_are_cached_each_at_its_own_size(tmp_path: Path,
                                                                  backbone) -> None:
    # issue 22 item 1: val images of several sizes (as VOC's) stopped the build
    from tests.data._builders import make_voc

    voc = load_data(DataConfig(source=str(make_voc(tmp_path / "voc", train=4, val=5)),
                               image_size=24, seed=3))
    assert voc.val_shapes() == [(32, 36), (30, 40), (32, 36), (30, 40), (32, 36)]
    key = FeatureKey.of(voc, "resnet18", "none", 8, views=1)
    cache = open_or_build(tmp_path / "fc", key, backbone, voc, batch_size=4)
    # one shard per size (first appearance first), each image at its own size, not padded
    assert [(x.shape, y.shape) for x, y in cache.val] == [
        ((3, 512, 4, 5), (3, 32, 36)), ((2, 512, 4, 5), (2, 30, 40))]
    assert cache.nbytes == cache_bytes(backbone, voc, 1)
    # batches of one size, as the data's own val batches: the backbone's features of them
    got, want = list(cache.val_batches(4)), list(voc.val_batches(4))
    assert [y.shape for _, y in got] == [y.shape for _, y in want] == [(3, 32, 36), (2, 30, 40)]
    for (fx, fy), (x, y) in zip(got, want, strict=True):
        with torch.no_grad():
            torch.testing.assert_close(fx, backbone(x).half().float())
        assert torch.equal(fy, y)


def test_a_reduced_cache_is_its_own_key_stored_small_and_decoded(tmp_path: Path, data,
                                                                 backbone) -> None:
    # issue 22 item 2: the codec (nas_dil.train.codec) encodes each shard and is in the key
    import json
    import os

    full = open_or_build(tmp_path, FeatureKey.of(data, "resnet18", "none", 8, views=1),
                         backbone, data)
    key = FeatureKey.of(data, "resnet18", "none", 8, views=1, codec="pca16-int8")
    red = open_or_build(tmp_path, key, backbone, data)
    assert red.folder != full.folder and red.codec.key == "pca16-int8"
    assert red.nbytes == cache_bytes(backbone, data, 1, "pca16-int8")

    def feature_bytes(c: Any) -> int:
        return sum(x.nbytes for x, _ in (*c.train[0], *c.val))

    assert feature_bytes(red) * 64 == feature_bytes(full)  # 16 int8 channels for 512 fp16
    stored, _ = red.train_rows(0, np.arange(6))
    x, _ = next(data.train_batches(6, 0, 0))  # the shard: the first view's 6 crops
    with torch.no_grad():
        assert np.array_equal(stored, red.codec.encode(backbone(x).float().numpy()))
    fx, _ = next(red.train_batches(6, 0, 0))
    assert fx.shape == (6, 512, 4, 4) and fx.dtype == torch.float32  # every channel again
    # its fitted parameters are a hashed file of the cache: altered, the cache is rebuilt
    meta = json.loads((red.folder / "manifest.json").read_text())["codec"]
    assert meta["codec"] == "pca16-int8" and (red.folder / meta["file"]).is_file()
    del red
    path = tmp_path / key.digest()[:24] / "codec.npz"
    stamp = path.stat().st_mtime_ns
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # later than a coarse clock's same tick
    counting = _Counting(backbone)
    open_or_build(tmp_path, key, counting, data)
    assert counting.images > 0


def test_another_node_plans_and_builds_the_same_caches(tmp_path: Path, data) -> None:
    """What a Ray task on another host gets (`FeaturePlan.elsewhere`, plain data) plans the
    same caches there and builds them with `build_shard`, as the driver would."""
    import json

    from nas_dil.train.features import build_elsewhere

    cfg = _trial_config(DataConfig(image_size=32, n_train=6, n_val=4, seed=3))
    at16 = _trial_config(cfg.data, 16).arch
    plan = plan_features(cfg, 0, tmp_path / "fc", archs=[at16], data=data)
    request = json.loads(json.dumps(plan.elsewhere()))  # crosses to the node as plain data
    info = build_elsewhere(request)
    assert [c["built"] for c in info["caches"]] == [True, True]
    assert [c["shards_built"] for c in info["caches"]] == [2 * 1 + 1] * 2  # 2 views, val
    again = plan_features(cfg, 0, tmp_path / "fc", archs=[at16], data=data)
    assert [str(c.found.folder) for c in again.caches if c.found] == [
        c["folder"] for c in info["caches"]]


@pytest.mark.parametrize("num_classes, ignore_index, dtype", [
    (21, 255, np.uint8),  # VOC: 21 classes, 255 ignored
    (4, 255, np.uint8),
    (256, 0, np.uint8),  # labels 0..255
    (257, 255, np.int16),  # a label of 256
    (21, -1, np.int16),  # a negative ignore index
    (150, 300, np.int16),
])
def test_mask_dtype(num_classes: int, ignore_index: int, dtype: type) -> None:
    from nas_dil.train.features import mask_dtype

    assert mask_dtype(num_classes, ignore_index) == np.dtype(dtype)
