"""The training loop: `fit(regime, train_config, seed)` — the only one in nas-dil.

It knows nothing of what trains: the `Regime` (full net or frozen backbone) gives the model's
forward, the trained parameters and the batches. Budget by epochs, steps or seconds; an
evaluation after each epoch (epochs budget) or every ``eval_every_steps`` steps, whose
callback may stop the trial early. Failure is a result the caller handles, not a crash: a
NaN/Inf loss raises `TrialDiverged` with the step, an out-of-memory raises `TrialOOM` with
the batch and resolution.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from nas_dil.data import SegData
from nas_dil.train.config import TrainConfig
from nas_dil.train.metrics import confusion_update, scores_from_confusion

if TYPE_CHECKING:
    from nas_dil.train.regime import Regime

__all__ = ["EvalCallback", "Fitted", "ProgressCallback", "TrialDiverged", "TrialFailed",
           "TrialOOM", "evaluate", "fit"]

# callback(epoch_or_eval_index, miou, partial_result) -> True to stop the trial early
EvalCallback = Callable[[int, float, dict[str, Any]], bool | None]
# progress(step, total_steps or None, {"loss": tensor}) after each step (progress bars)
ProgressCallback = Callable[[int, int | None, dict[str, Any]], None]


class TrialFailed(RuntimeError):
    """A trial that could not finish; `reason` is one line for the study's records."""

    reason: str = "failed"


class TrialDiverged(TrialFailed):
    def __init__(self, step: int, loss: float) -> None:
        self.step, self.loss = step, loss
        self.reason = f"diverged: loss {loss} at step {step}"
        super().__init__(self.reason)


class TrialOOM(TrialFailed):
    def __init__(self, batch: int, h: int, w: int, device: str, detail: str = "") -> None:
        self.batch, self.h, self.w = batch, h, w
        self.reason = f"out of memory on {device}: batch {batch} at {h}x{w}" + (
            f" ({detail})" if detail else ""
        )
        super().__init__(self.reason)


@dataclass
class Fitted:
    """What a `fit` did: the curves, the last evaluation's scores, the work done."""

    miou_curve: list[float] = field(default_factory=list)  # mIoU after each evaluation
    loss_curve: list[float] = field(default_factory=list)  # mean loss between evaluations
    last: dict[str, Any] = field(default_factory=dict)  # the last evaluation's scores
    steps: int = 0  # optimiser steps done
    images: int = 0  # training images seen
    train_time_s: float = 0.0  # training steps only (evaluations excluded)
    stopped: bool = False  # the callback asked to stop


def fit(regime: Regime, tc: TrainConfig, seed: int, *, val_batch_size: int,
        crop_hw: tuple[int, int], callback: EvalCallback | None = None,
        progress: ProgressCallback | None = None) -> Fitted:
    """Train ``regime`` under ``tc`` (AdamW, warm-up then cosine decay; batches shuffled by
    ``seed``), evaluating on its val batches of ``val_batch_size``; see the module docstring.
    ``crop_hw``: the training resolution an out-of-memory before the first batch reports."""
    device, data = regime.device, regime.data
    is_cuda = device.type == "cuda"
    autocast = is_cuda and tc.amp
    channels_last = is_cuda and tc.channels_last
    opt = torch.optim.AdamW(regime.trained, lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = max(1, math.ceil(data.n_train / tc.batch_size))
    total = tc.steps if tc.steps else (tc.epochs * steps_per_epoch if tc.epochs else None)
    deadline = time.perf_counter() + tc.seconds if tc.seconds else None
    out = Fitted()
    losses = _Losses(device, tc.check_finite_every)
    h, w = crop_hw
    regime.train_mode()
    try:
        epoch, done = 0, False
        while not done:
            t0 = time.perf_counter()
            for images, masks in regime.train_batches(tc.batch_size, epoch, seed):
                h, w = images.shape[-2:]
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                for g in opt.param_groups:
                    g["lr"] = _lr_at(out.steps, total, tc)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = regime.forward(images, masks)
                    loss = F.cross_entropy(logits.float(), masks, ignore_index=data.ignore_index)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                out.steps += 1
                out.images += images.shape[0]
                d = loss.detach()
                losses.add(d, out.steps)
                if progress is not None:
                    progress(out.steps, total, {"loss": d})
                out_of_time = deadline is not None and time.perf_counter() >= deadline
                if (tc.steps and out.steps >= tc.steps) or out_of_time:
                    done = True
                    break
                if not tc.epochs and out.steps % tc.eval_every_steps == 0:
                    out.train_time_s += _lap(t0, device)
                    out.stopped = done = _evaluate_now(regime, out, losses, val_batch_size,
                                                       autocast, callback)
                    t0 = time.perf_counter()
                    if done:
                        break
            out.train_time_s += _lap(t0, device)
            epoch += 1
            if not done and tc.epochs:
                out.stopped = _evaluate_now(regime, out, losses, val_batch_size, autocast,
                                            callback)
                done = out.stopped or epoch >= tc.epochs
        if not out.last or (losses.n and not out.stopped):
            # the final evaluation when the budget ended mid-way
            _evaluate_now(regime, out, losses, val_batch_size, autocast, callback)
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if isinstance(e, TrialFailed) or not _is_oom(e):
            raise
        if is_cuda:
            torch.cuda.empty_cache()
        raise TrialOOM(tc.batch_size, h, w, str(device), str(e).splitlines()[0][:120]) from None
    return out


class _Losses:
    """Training losses since the last evaluation: their sum, kept on the device (no sync per
    step), and those not yet checked for NaN/Inf (each check syncs)."""

    def __init__(self, device: torch.device, check_every: int) -> None:
        self.device, self.check_every = device, check_every
        self.sum = torch.zeros((), device=device)
        self.n = 0
        self.window: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.sum = self.sum + loss
        self.n += 1
        self.window.append(loss)
        if len(self.window) >= self.check_every:
            self.check(step)

    def check(self, step: int) -> None:
        """Raise `TrialDiverged` at the first non-finite loss of the window (``step``: now)."""
        if not self.window:
            return
        vals = torch.stack(self.window).float().cpu()
        bad = (~torch.isfinite(vals)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise TrialDiverged(step - len(self.window) + i + 1, float(vals[i]))
        self.window.clear()

    def mean(self, step: int) -> float:
        """The mean loss since the last call (checked first), and a new interval."""
        self.check(step)
        m = float(self.sum) / max(1, self.n)
        self.sum = torch.zeros((), device=self.device)
        self.n = 0
        return m


def _evaluate_now(regime: Regime, out: Fitted, losses: _Losses, batch_size: int,
                  autocast: bool, callback: EvalCallback | None) -> bool:
    """One evaluation into ``out``'s curves; whether the callback asks to stop."""
    out.loss_curve.append(losses.mean(out.steps))
    out.last = _evaluate(regime.model, regime.forward, regime.val_batches(batch_size),
                         regime.data.num_classes, regime.data.ignore_index, regime.device,
                         autocast)
    regime.train_mode()
    out.miou_curve.append(out.last["miou"])
    if callback is None:
        return False
    partial = {"miou_curve": list(out.miou_curve), "loss_curve": list(out.loss_curve),
               "step": out.steps, **out.last}
    return bool(callback(len(out.miou_curve), out.last["miou"], partial))


def _lap(t0: float, device: torch.device) -> float:
    """Seconds since ``t0`` once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _lr_at(step: int, total: int | None, tc: TrainConfig) -> float:
    if tc.warmup_steps and step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    if not total:  # seconds budget: the total is unknown, keep the rate flat
        return tc.lr
    frac = min(1.0, (step - tc.warmup_steps) / max(1, total - tc.warmup_steps))
    return 0.5 * tc.lr * (1 + math.cos(math.pi * frac))


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


@torch.no_grad()
def evaluate(model: nn.Module, data: SegData, batch_size: int, device: torch.device,
             autocast: bool) -> dict[str, Any]:
    """Confusion-matrix metrics of ``model`` over the whole val split."""
    return _evaluate(model, lambda x, _: model(x), data.val_batches(batch_size), data.num_classes,
                     data.ignore_index, device, autocast)


@torch.no_grad()
def _evaluate(model: nn.Module, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
              ignore_index: int, device: torch.device, autocast: bool) -> dict[str, Any]:
    """Metrics of ``forward(x, masks)`` (logits at the masks' size) over ``batches``."""
    was_training = model.training
    model.eval()
    c = num_classes
    conf = torch.zeros(c, c, dtype=torch.int64, device=device)
    for images, masks in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward(images, masks)
        confusion_update(conf, logits.argmax(1), masks, ignore_index)
    model.train(was_training)
    return scores_from_confusion(conf.cpu().numpy())
