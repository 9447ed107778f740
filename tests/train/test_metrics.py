from __future__ import annotations

import numpy as np
import pytest
import torch

from nas_dil.train.metrics import confusion_update, scores_from_confusion


def test_confusion_ignores_ignore_index() -> None:
    conf = torch.zeros(3, 3, dtype=torch.int64)
    target = torch.tensor([[0, 1, 2, 255]])
    pred = torch.tensor([[0, 2, 2, 1]])
    confusion_update(conf, pred, target, ignore_index=255)
    assert conf.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]


@pytest.mark.parametrize(
    ("conf", "miou", "ious", "acc"),
    [
        # perfect two-class prediction
        ([[3, 0], [0, 1]], 1.0, [1.0, 1.0], 1.0),
        # class 1: tp 1, fn 1, fp 1 → 1/3; class 0: tp 2, fn 1, fp 1 → 2/4
        ([[2, 1], [1, 1]], (0.5 + 1 / 3) / 2, [0.5, 1 / 3], 0.6),
        # class 2 never occurs nor is predicted: no IoU, left out of the mean
        ([[2, 0, 0], [0, 2, 0], [0, 0, 0]], 1.0, [1.0, 1.0, None], 1.0),
    ],
)
def test_scores_hand_computed(conf, miou, ious, acc) -> None:
    s = scores_from_confusion(np.array(conf))
    assert s["miou"] == pytest.approx(miou)
    assert s["pixel_acc"] == pytest.approx(acc)
    for got, want in zip(s["per_class_iou"], ious, strict=True):
        assert (got is None and want is None) or got == pytest.approx(want)
