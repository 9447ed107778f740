"""One training trial: a pure function (TrialConfig, schedule, seed) → TrialResult.

Failure is a result the caller handles, not a crash: a NaN/Inf loss raises TrialDiverged with
the step, a CUDA out-of-memory raises TrialOOM with the batch and resolution.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from nas_dil.data import SegData, load_data
from nas_dil.data.base import Batch
from nas_dil.models import build_model, count_params
from nas_dil.models.analytic import analytic_attrs
from nas_dil.models.config import ArchConfig
from nas_dil.schedule import Schedule
from nas_dil.train.config import TrainConfig, TrialConfig, TrialConfigError
from nas_dil.train.metrics import confusion_update, scores_from_confusion

if TYPE_CHECKING:  # torchvision is an extra: the frozen paths import it when they run
    from nas_dil.models.backbones import BackboneSegNet

__all__ = [
    "EvalCallback",
    "TrialDiverged",
    "TrialFailed",
    "TrialOOM",
    "TrialResult",
    "cpu_plan",
    "evaluate",
    "feature_key",
    "frozen_backbone",
    "frozen_net",
    "resolve_device",
    "run_trial",
]

# callback(epoch_or_eval_index, miou, partial_result) -> True to stop the trial early
EvalCallback = Callable[[int, float, dict[str, Any]], bool | None]


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
    peak_mem_bytes: int  # CUDA: max allocated; CPU: the process's peak RSS
    peak_mem_kind: str  # "cuda_allocated" or "process_rss"
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


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


@torch.no_grad()
def evaluate(model: nn.Module, data: SegData, batch_size: int, device: torch.device,
             autocast: bool) -> dict[str, Any]:
    """Confusion-matrix metrics over the whole val split."""
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


def _lr_at(step: int, total: int | None, tc: TrainConfig) -> float:
    if tc.warmup_steps and step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    if not total:  # seconds budget: the total is unknown, keep the rate flat
        return tc.lr
    frac = min(1.0, (step - tc.warmup_steps) / max(1, total - tc.warmup_steps))
    return 0.5 * tc.lr * (1 + math.cos(math.pi * frac))


def _peak_mem(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_rss"


def run_trial(
    cfg: TrialConfig,
    schedule: Schedule | str,
    seed: int = 0,
    callback: EvalCallback | None = None,
    data: SegData | None = None,
    progress: Callable[[int, int | None, dict[str, Any]], None] | None = None,
    keep_model: dict[str, Any] | None = None,
    feature_cache: str | os.PathLike[str] | bool | None = None,
) -> TrialResult:
    """Train `schedule` under `cfg` from `seed`; return its metrics.

    `data` may be passed in to reuse a loaded data set (it must match `cfg.data`).
    `progress(step, total_steps, info)` is called after each step (for progress bars).
    `keep_model`, when a dict, receives the trained model under "model" (for export).
    With ``train.freeze = "backbone"`` only the head trains, on the backbone's features
    cached under `feature_cache` (None: `features.default_root()`), built there first if no
    valid cache of their key exists; the kept model is still the whole net (backbone weights
    as ``arch.weights`` gave them, BatchNorm statistics untouched). ``feature_cache=False``
    recomputes the frozen backbone at every step instead (the benchmark's reference).
    Raises TrialDiverged / TrialOOM (both TrialFailed); config errors are TrialConfigError.
    """
    t_start = time.perf_counter()
    s = Schedule.coerce(schedule)
    tc = cfg.train
    device = resolve_device(tc.device)
    is_cuda = device.type == "cuda"
    torch.manual_seed(seed)
    if is_cuda:
        torch.backends.cudnn.benchmark = tc.cudnn_benchmark
        torch.cuda.reset_peak_memory_stats(device)
    size_h, size_w = cfg.data.crop_hw
    px = tc.batch_size * size_h * size_w
    if px > tc.max_batch_pixels:
        raise TrialConfigError(
            f"train: batch_size {tc.batch_size} × {size_h}×{size_w} = {px} pixels exceeds "
            f"max_batch_pixels {tc.max_batch_pixels}"
        )

    if data is None:
        data = load_data(cfg.data, device)
    threads, workers = cpu_plan(tc.cpus, tc.threads, is_cuda, data.loads_lazily,
                                cfg.data.workers)
    if threads is not None:
        torch.set_num_threads(threads)
    data.configure(workers=workers, pin_memory=is_cuda, max_batch_pixels=tc.max_batch_pixels)
    arch = replace(cfg.arch, num_classes=data.num_classes)
    cfg = replace(cfg, arch=arch)
    frozen = tc.freeze == "backbone"
    cached = frozen and feature_cache is not False
    if frozen:
        net = frozen_net(s, arch, seed).to(device)
        model: nn.Module = net
        if cached:
            feats = _features(net, cfg, data, seed, feature_cache)
    else:
        model = build_model(s, arch=arch).to(device)
    autocast = is_cuda and tc.amp
    if is_cuda and tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained = [p for n, p in model.named_parameters()
               if not (frozen and n.startswith("backbone."))]
    opt = torch.optim.AdamW(trained, lr=tc.lr, weight_decay=tc.weight_decay)

    def to_dev(it: Iterator[Batch]) -> Iterator[Batch]:
        for x, y in it:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    if frozen:
        def forward(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
            if not cached:  # images: the frozen backbone recomputed at every step
                with torch.no_grad():
                    x = net.backbone(x)
            # the head's logits up-sampled to the label size, as BackboneSegNet.forward does
            return F.interpolate(net.forward_features(x), size=masks.shape[-2:],
                                 mode="bilinear", align_corners=False)
    else:
        def forward(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
            return model(x)

    if cached:
        def train_batches(epoch: int) -> Iterator[Batch]:
            return to_dev(feats.train_batches(tc.batch_size, epoch, seed))

        def val_batches() -> Iterator[Batch]:
            return to_dev(feats.val_batches(val_bs))
    else:
        def train_batches(epoch: int) -> Iterator[Batch]:
            return data.train_batches(tc.batch_size, epoch, seed)

        def val_batches() -> Iterator[Batch]:
            return data.val_batches(val_bs)

    def set_train() -> None:
        model.train()
        if frozen:  # frozen means eval mode too: BatchNorm statistics stay as loaded
            net.backbone.eval()

    known = analytic_attrs(s, arch, (size_h, size_w))  # everything known before training
    steps_per_epoch = max(1, math.ceil(data.n_train / tc.batch_size))
    total_steps = tc.steps if tc.steps else (tc.epochs * steps_per_epoch if tc.epochs else None)
    eval_every = steps_per_epoch if tc.epochs else tc.eval_every_steps

    miou_curve: list[float] = []
    loss_curve: list[float] = []
    step = images_seen = 0
    train_time = 0.0
    stopped = False
    last: dict[str, Any] = {}
    pending = torch.zeros((), device=device)  # running loss sum since the last evaluation
    pending_n = 0
    window: list[torch.Tensor] = []  # losses since the last finiteness check
    deadline = time.perf_counter() + tc.seconds if tc.seconds else None

    def check_finite() -> None:
        if not window:
            return
        vals = torch.stack(window).float().cpu()
        bad = (~torch.isfinite(vals)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise TrialDiverged(step - len(window) + i + 1, float(vals[i]))
        window.clear()

    def run_eval() -> bool:
        nonlocal last, pending, pending_n
        check_finite()
        loss_curve.append(float(pending) / max(1, pending_n))
        pending = torch.zeros((), device=device)
        pending_n = 0
        last = _evaluate(model, forward, val_batches(), data.num_classes, data.ignore_index,
                         device, autocast)
        set_train()
        miou_curve.append(last["miou"])
        if callback is not None:
            partial = {"miou_curve": list(miou_curve), "loss_curve": list(loss_curve),
                       "step": step, **last}
            return bool(callback(len(miou_curve), last["miou"], partial))
        return False

    set_train()
    epoch = 0
    h, w = size_h, size_w
    val_bs = tc.val_batch_size
    if not data.loads_lazily:  # in-memory val images are crop-sized: cap like training
        val_bs = max(1, min(val_bs, tc.max_batch_pixels // (size_h * size_w)))
    try:
        done = False
        while not done:
            t0 = time.perf_counter()
            for images, masks in train_batches(epoch):
                h, w = images.shape[-2:]
                if is_cuda and tc.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, total_steps, tc)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = forward(images, masks)
                    loss = F.cross_entropy(logits.float(), masks, ignore_index=data.ignore_index)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                images_seen += images.shape[0]
                d = loss.detach()
                pending = pending + d
                pending_n += 1
                window.append(d)
                if len(window) >= tc.check_finite_every:
                    check_finite()
                if progress is not None:
                    progress(step, total_steps, {"loss": d})
                out_of_time = deadline is not None and time.perf_counter() >= deadline
                if (tc.steps and step >= tc.steps) or out_of_time:
                    done = True
                    break
                if not tc.epochs and step % eval_every == 0:
                    if is_cuda:
                        torch.cuda.synchronize(device)
                    train_time += time.perf_counter() - t0
                    stopped = run_eval()
                    t0 = time.perf_counter()
                    if stopped:
                        done = True
                        break
            if is_cuda:
                torch.cuda.synchronize(device)
            train_time += time.perf_counter() - t0
            epoch += 1
            if done:
                break
            if tc.epochs:
                stopped = run_eval()
                if stopped or epoch >= tc.epochs:
                    done = True
        if not last or (pending_n and not stopped):
            run_eval()  # the final evaluation when the budget ended mid-way
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if isinstance(e, TrialFailed) or not _is_oom(e):
            raise
        if is_cuda:
            torch.cuda.empty_cache()
        raise TrialOOM(tc.batch_size, h, w, str(device), str(e).splitlines()[0][:120]) from None

    peak, kind = _peak_mem(device)
    if keep_model is not None:
        keep_model["model"] = model
    return TrialResult(
        miou=last["miou"],
        per_class_iou=last["per_class_iou"],
        pixel_acc=last["pixel_acc"],
        miou_curve=miou_curve,
        loss_curve=loss_curve,
        epochs=images_seen / max(1, data.n_train),
        steps=step,
        train_images=images_seen,
        wall_time_s=time.perf_counter() - t_start,
        train_time_s=train_time,
        images_per_s=images_seen / train_time if train_time > 0 else 0.0,
        peak_mem_bytes=peak,
        peak_mem_kind=kind,
        params=count_params(model),
        macs=known["macs"],
        flops=known["flops"],
        rf=known["rf"],
        rf_nominal=known["rf_nominal"],
        dead_taps=known["dead_taps"],
        rf_stack=known["rf_stack"],
        holes=known["holes"],
        gridding_free=known["gridding_free"],
        hdc=known["hdc"],
        stopped_early=stopped,
        device=str(device),
        node=platform.node(),
        seed=seed,
        schedule=s.to_dict(),
        config=cfg.to_dict(),
    )




def frozen_net(schedule: Schedule, arch: ArchConfig, seed: int) -> BackboneSegNet:
    """The net of a frozen-backbone trial, its backbone frozen (no gradients).

    Seeded here, just before it is built, so the backbone (built first, before the head) has
    the same weights in every trial of a seed, also with ``weights = "none"``: the cache a
    driver builds ahead (`frozen_backbone`) is the one the trials find.
    """
    torch.manual_seed(seed)
    model = cast("BackboneSegNet", build_model(schedule, arch=arch))
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    return model


def frozen_backbone(arch: ArchConfig, seed: int) -> nn.Module:
    """The frozen backbone every trial of (arch, seed) gets (whatever its head)."""
    return frozen_net(Schedule.coerce([1]), arch, seed).backbone


def feature_key(arch: ArchConfig, data: SegData, backbone: nn.Module, views: int,
                seed: int) -> Any:
    """The `features.FeatureKey` of a frozen backbone's features on ``data``."""
    from nas_dil.train.features import FeatureKey, state_digest

    return FeatureKey.of(data, arch.backbone, state_digest(backbone), arch.output_stride,
                         None, views, seed)


def _features(model: BackboneSegNet, cfg: TrialConfig, data: SegData, seed: int,
              root: str | os.PathLike[str] | bool | None) -> Any:
    from nas_dil.train.features import default_root, open_or_build

    if not isinstance(root, str | os.PathLike) or str(root) in ("", "auto"):
        root = None

    key = feature_key(cfg.arch, data, model.backbone, cfg.train.freeze_views, seed)
    return open_or_build(default_root() if root is None else Path(root), key, model.backbone,
                         data, batch_size=cfg.train.batch_size)
