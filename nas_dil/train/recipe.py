"""The training recipe of a trial: optimiser, learning-rate schedule and loss, each chosen by
name from `TrainConfig` in a table (modes are objects: the loop calls them, never branches).

- `OPTIMIZERS`: "adamw" (decoupled weight decay) and "sgd" (momentum, optional Nesterov).
- `LR_SCHEDULES`: the rate after the linear warm-up, from the fraction ``t`` of the steps
  after warm-up done: "cosine" ``lr/2 · (1 + cos πt)``, "poly" ``lr · (1 - t)^poly_power``.
- `Criterion`: cross-entropy with per-class weights and label smoothing (F.cross_entropy's).
- `criterion_for`: the trial's criterion; class weights given, or inverse frequency
  (`inverse_frequency`) from the training labels' pixel counts (`SegData.label_counts`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nas_dil.train.config import INVERSE_FREQUENCY, TrainConfig, TrialConfigError

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "Criterion", "criterion_for", "inverse_frequency",
           "lr_at"]

Params = Iterable[nn.Parameter]

OPTIMIZERS: dict[str, Callable[[Params, TrainConfig], torch.optim.Optimizer]] = {
    "adamw": lambda params, tc: torch.optim.AdamW(params, lr=tc.lr,
                                                  weight_decay=tc.weight_decay),
    "sgd": lambda params, tc: torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum,
                                              nesterov=tc.nesterov,
                                              weight_decay=tc.weight_decay),
}

# (peak lr, fraction t in [0, 1] of the steps after warm-up, config) -> lr
LR_SCHEDULES: dict[str, Callable[[float, float, TrainConfig], float]] = {
    "cosine": lambda lr, t, tc: 0.5 * lr * (1 + math.cos(math.pi * t)),
    "poly": lambda lr, t, tc: lr * (1 - t) ** tc.poly_power,
}


def lr_at(step: int, total: int | None, tc: TrainConfig) -> float:
    """The rate of optimiser step ``step`` (0-based) of ``total``: linear warm-up to
    ``tc.lr``, then ``tc.lr_schedule`` to 0 at ``total``; flat with a seconds budget, whose
    total is unknown."""
    if tc.warmup_steps and step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    if not total:
        return tc.lr
    frac = min(1.0, (step - tc.warmup_steps) / max(1, total - tc.warmup_steps))
    return LR_SCHEDULES[tc.lr_schedule](tc.lr, frac, tc)


@dataclass(frozen=True)
class Criterion:
    """Pixel-wise cross-entropy over (B, C, H, W) logits and (B, H, W) labels."""

    ignore_index: int
    weight: torch.Tensor | None = None  # per-class weights (C,), on the logits' device
    label_smoothing: float = 0.0

    def __call__(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, masks, weight=self.weight, ignore_index=self.ignore_index,
                               label_smoothing=self.label_smoothing)


class Labelled(Protocol):
    num_classes: int
    ignore_index: int

    def label_counts(self) -> np.ndarray: ...


def inverse_frequency(counts: np.ndarray) -> np.ndarray:
    """``N / (K · n_c)`` for each class with ``n_c > 0`` pixels (``N`` their sum, ``K`` their
    number: the mean weight over the pixels is 1), 0 for a class without any (never a target).
    """
    n = np.asarray(counts, dtype=np.float64)
    present = n > 0
    out = np.zeros_like(n)
    out[present] = n[present].sum() / (present.sum() * n[present])
    return out


def criterion_for(tc: TrainConfig, data: Labelled, device: torch.device) -> Criterion:
    """The trial's criterion: ``tc.class_weights`` (one per class of ``data``), or
    "inverse_frequency" from ``data.label_counts()``; no weights when unset."""
    cw = tc.class_weights
    weight = None
    if cw == INVERSE_FREQUENCY:
        weight = inverse_frequency(data.label_counts())
    elif cw is not None:
        if len(cw) != data.num_classes:
            raise TrialConfigError(f"train: class_weights has {len(cw)} weights, the data "
                                   f"{data.num_classes} classes ({list(cw)})")
        weight = np.asarray(cw, dtype=np.float64)
    return Criterion(data.ignore_index,
                     None if weight is None else torch.tensor(weight, dtype=torch.float32,
                                                              device=device),
                     tc.label_smoothing)
