"""The auxiliary head of a backbone trial (``train.aux_weight > 0``): a small FCN head on an
earlier backbone stage's features whose loss, × aux_weight, joins the main loss in training
(PSPNet's and DeepLab's in mmseg: FCNHead on ResNet's res4, weight 0.4).

It lives in the regime (`AuxRegime`), not in the net: the trial's net (``regime.model``), its
forward at evaluation, its parameter count and its export are those without the head, which
is dropped when the trial ends. The stage's output is caught by a forward hook present only
while a training loss is computed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from nas_dil.models.backbones import BackboneSegNet
from nas_dil.train.config import TrainConfig, TrialConfigError
from nas_dil.train.recipe import Criterion
from nas_dil.train.regime import Batches, Regime

__all__ = ["AuxHead", "AuxRegime", "aux_stage", "with_aux"]


def aux_stage(net: BackboneSegNet) -> nn.Module:
    """The trunk stage the head reads: ResNet's layer3 (res4, stride 16 at output stride
    32), else the block at two thirds of the trunk's ``features`` (VGG, MobileNetV3)."""
    trunk = net.backbone.trunk
    stage = getattr(trunk, "layer3", None)
    if isinstance(stage, nn.Module):
        return stage
    features = getattr(trunk, "features", None)
    if isinstance(features, nn.Sequential):
        return features[(2 * len(features)) // 3]
    raise TrialConfigError(f"train: aux_weight: no auxiliary stage known in the "
                           f"{net.arch.backbone} trunk")


class AuxHead(nn.Sequential):
    """3×3 conv → BatchNorm → ReLU → dropout 0.1 → 1×1 classifier (mmseg's FCNHead with one
    conv), ``min(256, max(16, channels // 4))`` wide."""

    def __init__(self, channels: int, num_classes: int) -> None:
        mid = min(256, max(16, channels // 4))
        super().__init__(nn.Conv2d(channels, mid, 3, padding=1, bias=False),
                         nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Dropout2d(0.1),
                         nn.Conv2d(mid, num_classes, 1))


class AuxRegime(Regime):
    """The whole ``net`` trains with an auxiliary head's loss × ``weight`` added."""

    def __init__(self, net: BackboneSegNet, data: Batches, device: torch.device,
                 channels_last: bool, weight: float) -> None:
        super().__init__(net, data, device, channels_last)
        self.weight = weight
        self.stage = aux_stage(net)
        self.head = AuxHead(self._stage_channels(net), net.arch.num_classes).to(device)
        if device.type == "cuda" and channels_last:
            self.head = self.head.to(memory_format=torch.channels_last)
        self.trained += list(self.head.parameters())

    def _stage_channels(self, net: BackboneSegNet) -> int:
        """The stage's output channels, from one small forward in eval mode (which leaves
        BatchNorm statistics and the random state untouched)."""
        was = net.training
        net.eval()
        with torch.no_grad():
            feats = self._caught(lambda: net.backbone(torch.zeros(1, 3, 64, 64,
                                                                  device=self.device)))[1]
        net.train(was)
        return int(feats.shape[1])

    def _caught(self, run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        kept: list[torch.Tensor] = []
        hook = self.stage.register_forward_hook(lambda _m, _i, o: kept.append(o))
        try:
            out = run()
        finally:
            hook.remove()
        return out, kept[-1]

    def loss(self, x: torch.Tensor, masks: torch.Tensor, criterion: Criterion) -> torch.Tensor:
        logits, feats = self._caught(lambda: self.forward(x, masks))
        aux = F.interpolate(self.head(feats), size=masks.shape[-2:], mode="bilinear",
                            align_corners=False)
        return criterion(logits.float(), masks) + self.weight * criterion(aux.float(), masks)

    def train_mode(self) -> None:
        super().train_mode()
        self.head.train()


def with_aux(regime: Regime, tc: TrainConfig) -> Regime:
    """``regime`` with the auxiliary head when ``tc.aux_weight > 0`` (the config checked
    that it is then a whole ``BackboneSegNet`` training: `config.check_aux`)."""
    if not tc.aux_weight > 0:
        return regime
    if not isinstance(regime.model, BackboneSegNet) or type(regime) is not Regime:
        raise TrialConfigError(f"train: aux_weight={tc.aux_weight} needs the whole net "
                               "on a torchvision backbone training")
    return AuxRegime(regime.model, regime.data, regime.device, tc.channels_last, tc.aux_weight)
