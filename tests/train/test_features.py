"""The frozen-feature cache: built once, reused by key, never stale, never corrupt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.models.backbones import Backbone
from nas_dil.train.features import CacheError, FeatureKey, cache_bytes, open_or_build


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
    assert counting.images == 2 + 6 * 2 + 4  # shape probes, two views, val
    assert cache.nbytes == cache_bytes(backbone, data, 2)
    # the features are the backbone's (fp16) on the very batches the trainer would see
    x, y = next(data.train_batches(6, 1, 5))
    with torch.no_grad():
        ref = backbone(x).half().float()
    got = torch.from_numpy(np.asarray(cache.arrays["train_x"][6:12], dtype=np.float32))
    torch.testing.assert_close(got, ref)
    assert torch.equal(torch.from_numpy(np.array(cache.arrays["train_y"][6:12])).long(), y)
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
    path = first.folder / "train_x.npy"
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
    assert (np.asarray(rebuilt.arrays["train_x"]) == ref).all()


def test_no_room_is_one_line(tmp_path: Path, data, backbone,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    class Usage:
        free = 1000

    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage)
    with pytest.raises(CacheError, match=r"needs .* GiB; .* has 0.00 GiB free"):
        open_or_build(tmp_path, FeatureKey.of(data, "resnet18", "none", 8), backbone, data)
    assert not any(tmp_path.iterdir())  # nothing half-written
