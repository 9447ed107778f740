"""Segmentation metrics from a confusion matrix (ignore index excluded)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["confusion_update", "scores_from_confusion"]


def confusion_update(conf: torch.Tensor, pred: torch.Tensor, target: torch.Tensor,
                     ignore_index: int) -> None:
    """Add one batch to ``conf`` (C×C, rows = truth, cols = prediction), in place, on device."""
    c = conf.shape[0]
    keep = target != ignore_index
    idx = target[keep] * c + pred[keep]
    conf += torch.bincount(idx, minlength=c * c).view(c, c)


def scores_from_confusion(conf: np.ndarray) -> dict[str, float | list[float | None]]:
    """mIoU over classes that occur (in truth or prediction), per-class IoU, pixel accuracy.

    A class absent from both truth and prediction has no IoU (None) and is left out of the
    mean, the usual convention (e.g. VOC's evaluation).
    """
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    total = conf.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
        "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
    }
