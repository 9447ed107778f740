"""One training trial: a pure function (TrialConfig, schedule, seed) → TrialOutcome.

`run_trial` sets the trial up (device, threads, data, the `Regime` of its mode), trains it
with the one training loop (`fit.fit`) and returns its metrics (`TrialResult`) and its
trained net. Failure is a result the caller handles, not a crash: a NaN/Inf loss raises
TrialDiverged with the step, an out-of-memory raises TrialOOM with the batch and resolution.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from nas_dil.data import SegData, load_data
from nas_dil.models import count_params
from nas_dil.models.analytic import analytic_attrs
from nas_dil.schedule import Schedule
from nas_dil.train.config import TrainConfig, TrialConfig, TrialConfigError
from nas_dil.train.fit import (
    EvalCallback,
    ProgressCallback,
    TrialDiverged,
    TrialFailed,
    TrialOOM,
    evaluate,
    fit,
)
from nas_dil.train.memory import PeakMemory
from nas_dil.train.regime import regime_for

__all__ = [
    "EvalCallback",
    "TrialDiverged",
    "TrialFailed",
    "TrialOOM",
    "TrialOutcome",
    "TrialResult",
    "cpu_plan",
    "evaluate",
    "resolve_device",
    "run_trial",
]

# the analytic attributes a TrialResult carries (`models.analytic.analytic_attrs` keys)
_ANALYTIC = ("macs", "flops", "rf", "rf_nominal", "dead_taps", "rf_stack", "holes",
             "gridding_free", "hdc")


@dataclass
class TrialResult:
    """Metrics of one trial; `to_dict()` is plain JSON."""

    miou: float  # final mIoU on the val split
    per_class_iou: list[float | None]  # None: class absent from truth and prediction
    pixel_acc: float
    miou_curve: list[float]  # mIoU after each evaluation
    loss_curve: list[float]  # mean training loss between evaluations
    epochs: float  # passes over the training split done
    steps: int  # optimiser steps done
    train_images: int  # images seen in training
    wall_time_s: float  # whole trial, data loading and evaluation included
    train_time_s: float  # training steps only
    images_per_s: float  # train_images / train_time_s
    peak_mem_bytes: int  # the trial's own peak: CUDA max allocated, or the process's peak
    # RSS during the trial (`memory.PeakMemory`)
    peak_mem_kind: str  # "cuda_allocated", "process_rss" or "process_rss_lifetime"
    params: int
    macs: int  # per image at the training resolution (multiply-accumulates)
    flops: int  # 2 × macs
    rf: int  # whole net's usable RF at the training crop (image px, smaller axis)
    rf_nominal: int  # whole net's RF by the formula (image px), whatever the crop supplies
    dead_taps: int  # the stack's taps that read only padding at the crop (never trained)
    rf_stack: int  # the dilated stack's own RF (its input pixels)
    holes: int  # 2-D holes of the stack's coverage
    gridding_free: bool
    hdc: bool  # HDC rules 1 (per group), 2, 3
    stopped_early: bool  # the callback asked to stop
    device: str
    node: str  # host name the trial ran on
    seed: int
    schedule: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrialConfigError(f"train: device={name!r} but this machine has no CUDA device")
    return dev


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_plan(cpus: int | None, threads: int | None, cuda: bool, lazy_data: bool,
             workers: int | None) -> tuple[int | None, int]:
    """(torch threads, DataLoader workers) for a trial given `cpus` CPUs.

    Trials on one node each get their own CPUs (Ray's num_cpus), so their threads and workers
    together stay within them: more threads than CPUs on a busy machine is much slower
    (measured: 2 torch threads on a loaded 2-core machine, 12× slower than 1). Decoding
    workers only serve data loaded lazily; on CUDA most CPUs decode, on CPU most compute.
    ``threads`` / ``workers`` given explicitly win. torch threads None: leave torch's default
    (neither cpus nor threads given).
    """
    n = cpus or available_cpus()
    if not lazy_data:
        w = 0
    elif workers is not None:
        w = workers
    elif cuda:
        w = max(0, min(n - 1, 8))
    else:
        w = 0 if n < 2 else max(1, n // 4)
    if threads is not None:
        return threads, w
    if cpus is None:
        return None, w
    return max(1, n - w), w


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial: its metrics and its trained net."""

    result: TrialResult
    model: nn.Module  # the whole net (also when only its head trained: see `regime`)


def run_trial(
    cfg: TrialConfig,
    schedule: Schedule | str,
    seed: int = 0,
    callback: EvalCallback | None = None,
    data: SegData | None = None,
    progress: ProgressCallback | None = None,
    feature_cache: str | os.PathLike[str] | bool | None = None,
    known: Mapping[str, Any] | None = None,
) -> TrialOutcome:
    """Train `schedule` under `cfg` from `seed`; return its metrics and trained net.

    `data` may be passed in to reuse a loaded data set (it must match `cfg.data`).
    `callback(eval_index, miou, partial)` after each evaluation may stop the trial;
    `progress(step, total_steps, info)` is called after each step (for progress bars).
    With ``train.freeze = "backbone"`` only the head trains, on the backbone's features
    cached under `feature_cache` (`features.cache_root`; ``False``: recomputed at every step,
    the benchmark's reference), see `regime.regime_for`. `known`: the analytic attributes of
    (schedule, arch, crop) when the caller has them (`analytic_attrs` otherwise).
    Raises TrialDiverged / TrialOOM (both TrialFailed); config errors are TrialConfigError.
    """
    t_start = time.perf_counter()
    s = Schedule.coerce(schedule)
    tc = cfg.train
    device = resolve_device(tc.device)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = tc.cudnn_benchmark
    memory = PeakMemory(device)
    crop = cfg.data.crop_hw
    _check_batch_pixels(tc, crop)
    if data is None:
        data = load_data(cfg.data, device)
    threads, workers = cpu_plan(tc.cpus, tc.threads, device.type == "cuda", data.loads_lazily,
                                cfg.data.workers)
    if threads is not None:
        torch.set_num_threads(threads)
    data.configure(workers=workers, pin_memory=device.type == "cuda",
                   max_batch_pixels=tc.max_batch_pixels)
    cfg = replace(cfg, arch=replace(cfg.arch, num_classes=data.num_classes))
    regime = regime_for(cfg, s, data, seed, device, feature_cache)
    f = fit(regime, tc, seed, val_batch_size=_val_batch_size(tc, data, crop), crop_hw=crop,
            callback=callback, progress=progress)
    a = analytic_attrs(s, cfg.arch, crop) if known is None else known
    return TrialOutcome(TrialResult(
        miou=f.last["miou"], per_class_iou=f.last["per_class_iou"],
        pixel_acc=f.last["pixel_acc"], miou_curve=f.miou_curve, loss_curve=f.loss_curve,
        epochs=f.images / max(1, data.n_train), steps=f.steps, train_images=f.images,
        wall_time_s=time.perf_counter() - t_start, train_time_s=f.train_time_s,
        images_per_s=f.images / f.train_time_s if f.train_time_s > 0 else 0.0,
        peak_mem_bytes=memory.peak(), peak_mem_kind=memory.kind,
        params=count_params(regime.model), **{k: a[k] for k in _ANALYTIC},
        stopped_early=f.stopped, device=str(device), node=platform.node(), seed=seed,
        schedule=s.to_dict(), config=cfg.to_dict(),
    ), regime.model)


def _check_batch_pixels(tc: TrainConfig, crop: tuple[int, int]) -> None:
    size_h, size_w = crop
    px = tc.batch_size * size_h * size_w
    if px > tc.max_batch_pixels:
        raise TrialConfigError(
            f"train: batch_size {tc.batch_size} × {size_h}×{size_w} = {px} pixels exceeds "
            f"max_batch_pixels {tc.max_batch_pixels}"
        )


def _val_batch_size(tc: TrainConfig, data: SegData, crop: tuple[int, int]) -> int:
    if data.loads_lazily:
        return tc.val_batch_size
    # in-memory val images are crop-sized: capped like training
    return max(1, min(tc.val_batch_size, tc.max_batch_pixels // (crop[0] * crop[1])))
