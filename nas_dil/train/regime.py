"""What a trial trains, and on what: a `Regime` gives the training loop (`fit`) the model's
forward, the parameters the optimiser moves, the train/val batches and the train mode, so the
loop has one path for every mode.

- `Regime`: the whole net trains on the data set's images.
- `FrozenBackbone`: only the head trains, on the backbone's features read from the feature
  cache (`features.CachedFeatures`: the cache presented as a data set, its batches already
  features); the backbone stays in eval mode (BatchNorm statistics as loaded).
- `RecomputedBackbone`: the same head trained on the frozen backbone recomputed at every step
  and evaluation instead (``feature_cache=False``: the benchmark's reference, no cache).

`regime_for` picks one from the trial config. Every regime's ``model`` is the whole net: what
a trial keeps and exports, also when only its head trained.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from nas_dil.data.base import Batch, SegData
from nas_dil.models import build_model
from nas_dil.schedule import Schedule
from nas_dil.train.config import TrialConfig
from nas_dil.train.features import CachedFeatures, frozen_net, plan_features

if TYPE_CHECKING:  # torchvision is an extra: the frozen regimes import it when they run
    from nas_dil.models.backbones import BackboneSegNet

__all__ = ["Batches", "FrozenBackbone", "RecomputedBackbone", "Regime", "regime_for"]


class Batches(Protocol):
    """What a regime trains on (a `SegData`, or `CachedFeatures`): batches on its device."""

    n_train: int
    num_classes: int
    ignore_index: int

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]: ...

    def val_batches(self, batch_size: int) -> Iterator[Batch]: ...


class Regime:
    """The whole net trains on ``data``'s images (NHWC on CUDA with ``channels_last``)."""

    def __init__(self, model: nn.Module, data: Batches, device: torch.device,
                 channels_last: bool = False) -> None:
        if device.type == "cuda" and channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model  # the whole net: what the trial keeps
        self.data = data
        self.device = device
        self.trained: list[nn.Parameter] = [p for _, p in self._trained()]

    def _trained(self) -> Iterator[tuple[str, nn.Parameter]]:
        return self.model.named_parameters()

    def forward(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Logits of a batch from ``train_batches``/``val_batches`` (``masks``: its labels)."""
        return self.model(x)

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
        return self.data.train_batches(batch_size, epoch, seed)

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        return self.data.val_batches(batch_size)

    def train_mode(self) -> None:
        self.model.train()


class FrozenBackbone(Regime):
    """Only the head of ``net`` trains, on features ``data`` yields (`CachedFeatures`)."""

    def __init__(self, net: BackboneSegNet, data: Batches, device: torch.device,
                 channels_last: bool = False) -> None:
        super().__init__(net, data, device, channels_last)
        self.net = net

    def _trained(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.model.named_parameters() if not n.startswith("backbone."))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features of a batch: the batch itself (read from the cache)."""
        return x

    def forward(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        # the head's logits up-sampled to the label size, as BackboneSegNet.forward does
        return F.interpolate(self.net.forward_features(self.features(x)),
                             size=masks.shape[-2:], mode="bilinear", align_corners=False)

    def train_mode(self) -> None:
        self.model.train()
        self.net.backbone.eval()  # frozen means eval mode too: BatchNorm statistics as loaded


class RecomputedBackbone(FrozenBackbone):
    """`FrozenBackbone` on ``data``'s images, the backbone run at every step (no cache)."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.backbone(x)


def regime_for(cfg: TrialConfig, schedule: Schedule, data: SegData, seed: int,
               device: torch.device,
               feature_cache: str | os.PathLike[str] | bool | None = None) -> Regime:
    """The regime of a trial: ``cfg.train.freeze`` "none" the whole net (built from the torch
    seed as it stands); "backbone" the frozen backbone's head on the cached features under
    ``feature_cache`` (`features.cache_root`; built there first when no valid cache of
    their key exists), or recomputed at every step with ``feature_cache=False``."""
    channels_last = cfg.train.channels_last
    if cfg.train.freeze == "none":
        return Regime(build_model(schedule, arch=cfg.arch).to(device), data, device,
                      channels_last)
    net = frozen_net(schedule, cfg.arch, seed).to(device)
    if feature_cache is False:
        return RecomputedBackbone(net, data, device, channels_last)
    cache = plan_features(cfg, seed, feature_cache, data=data, backbone=net.backbone).open()
    return FrozenBackbone(net, CachedFeatures(cache, data, device), device, channels_last)
