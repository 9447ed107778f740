"""Regimes: what trains and on what, one object per mode (the loop has no branch on it)."""

from __future__ import annotations

import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.models import ArchConfig, build_model
from nas_dil.schedule import Schedule
from nas_dil.train.features import frozen_net
from nas_dil.train.regime import FrozenBackbone, RecomputedBackbone, Regime

CPU = torch.device("cpu")
DATA = DataConfig(image_size=32, n_train=4, n_val=2, seed=1)


def test_the_whole_net_trains_every_parameter() -> None:
    data = load_data(DATA)
    model = build_model(Schedule((1, 2)), arch=ArchConfig(output_stride=4, stem_width=8,
                                                          width=8, num_classes=data.num_classes))
    regime = Regime(model, data, CPU)
    assert regime.trained == list(model.parameters())
    model.eval()
    regime.train_mode()
    assert all(m.training for m in model.modules())


def test_a_frozen_backbone_trains_only_the_head_and_stays_in_eval_mode() -> None:
    data = load_data(DATA)
    arch = ArchConfig(backbone="resnet18", target="head", output_stride=8, width=8,
                      num_classes=data.num_classes)
    net = frozen_net(Schedule((1, 2)), arch, 0)
    cached, recomputed = FrozenBackbone(net, data, CPU), RecomputedBackbone(net, data, CPU)
    head = [p for n, p in net.named_parameters() if not n.startswith("backbone.")]
    assert cached.trained == recomputed.trained == head and len(head) < len(
        list(net.parameters()))
    recomputed.train_mode()
    assert net.head.training and not any(m.training for m in net.backbone.modules())
    # the same logits whether the backbone's features were cached or are recomputed
    x, masks = next(data.train_batches(2, 0, 0))
    with torch.no_grad():
        feats = net.backbone(x)
    torch.testing.assert_close(cached.forward(feats, masks), recomputed.forward(x, masks),
                               rtol=0, atol=0)
    assert recomputed.forward(x, masks).shape[-2:] == masks.shape[-2:]  # at the labels' size
