"""Trial configuration: what to train (arch, data) and how (budget, optimiser, device).

Frozen dataclasses, plain JSON: ``TrialConfig.from_dict(json.loads(json.dumps(c.to_dict())))``
rebuilds an equal config. Torch-free.

Each number's range is declared on its field (``bounded(…)``, `nas_dil._check`) and checked
in ``__post_init__``, NaN and inf refused: the one check for a config built in Python, read
from a study file's ``[train]`` table or filled from ``nas-dil train``'s flags.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nas_dil._check import bounded, check_fields
from nas_dil.data.config import DataConfig
from nas_dil.errors import UserError
from nas_dil.models.config import TV_BACKBONES, ArchConfig
from nas_dil.train.codec import CodecError, parse_codec

__all__ = ["FREEZE", "LR_SCHEDULES", "OPTIMIZERS", "TrainConfig", "TrialConfig",
           "TrialConfigError", "check_aux", "check_freeze", "check_recipe"]

FREEZE = ("none", "backbone")  # TrainConfig.freeze: what stays fixed while a trial trains
OPTIMIZERS = ("adamw", "sgd")  # TrainConfig.optimizer (nas_dil.train.recipe builds them)
LR_SCHEDULES = ("cosine", "poly")  # TrainConfig.lr_schedule: the rate after warm-up
INVERSE_FREQUENCY = "inverse_frequency"  # TrainConfig.class_weights computed from the data


class TrialConfigError(UserError, ValueError):
    """A trial or training setting that cannot work; the message shows the value."""


@dataclass(frozen=True)
class TrainConfig:
    """How one trial trains. Exactly one budget (epochs, steps or seconds) is set."""

    epochs: int | None = bounded(6, ge=1, le=10**6)  # budget in passes over the training split
    steps: int | None = bounded(None, ge=1, le=10**9, integer=True)  # budget in optimiser steps
    # (evaluates every `eval_every_steps`)
    seconds: float | None = bounded(None, gt=0, le=10**7, integer=False)  # budget in wall
    # seconds of training (not deterministic; at most ~16 weeks)
    eval_every_steps: int = bounded(100, ge=1, le=10**9)  # with a steps/seconds budget: steps
    # between evaluations
    batch_size: int = bounded(16, ge=1, le=2**16)  # images per step
    val_batch_size: int = bounded(32, ge=1, le=2**16)  # images per evaluation batch
    lr: float = bounded(3e-3, gt=0)  # peak learning rate (after warm-up; decays to 0 over the
    # budget)
    weight_decay: float = bounded(1e-4, ge=0)  # the optimiser's weight decay (AdamW: decoupled)
    warmup_steps: int = bounded(0, ge=0, le=10**9)  # linear warm-up steps
    device: str = "auto"  # "auto" (cuda if there is one), "cpu", "cuda", "cuda:1", …
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU, where it would be slower)
    channels_last: bool = True  # NHWC on CUDA (faster convs); ignored on CPU
    cudnn_benchmark: bool = True  # let cuDNN pick conv algorithms on CUDA
    threads: int | None = bounded(None, ge=1, le=4096, integer=True)  # torch CPU threads
    # (None: from cpus, else torch's default)
    cpus: int | None = bounded(None, ge=1, le=4096, integer=True)  # CPUs this trial may use
    # (a search passes Ray's num_cpus): torch threads and DataLoader workers are split from
    # it; None: the CPUs this process may run on (and torch's default thread count)
    max_batch_pixels: int = bounded(16 * 512 * 512, ge=1, le=2**40)  # cap on batch_size × H × W
    # (memory guard)
    check_finite_every: int = bounded(20, ge=1, le=10**9)  # steps between NaN/Inf checks (each
    # check syncs the GPU)
    freeze: str = "none"  # "backbone": train only the head on the frozen backbone's features,
    # computed once and cached on disk (nas_dil.train.features); needs a torchvision backbone
    # and arch.target "head". "none": the whole net trains
    freeze_views: int = bounded(4, ge=1, le=256)  # freeze: augmented views of the training
    # set cached (epoch e reads view e mod freeze_views; more views: more augmentation, a
    # larger cache)
    freeze_cache: str = "pca512-int8"  # freeze: how the cache stores the features
    # (nas_dil.train.codec), decoded back to every channel for the head: "pca<k>" the top k
    # principal components of the training features, "int8" per-channel int8, "pca<k>-int8"
    # both, "full" every channel at float16. pca512-int8: 1/8 of full's bytes for ResNet-50,
    # mIoU within 0.01 of full (docs/benchmarks.md §18); "pca256-int8" (1/16) for VOC-aug
    # scale
    # -- the recipe (nas_dil.train.recipe); each key enters to_dict() only when set, so trial
    # keys of studies from before recipes existed stay equal
    optimizer: str = "adamw"  # "adamw" or "sgd"
    momentum: float = bounded(0.9, ge=0, lt=1)  # sgd: momentum (DeepLab's 0.9)
    nesterov: bool = False  # sgd: Nesterov momentum (needs momentum > 0)
    lr_schedule: str = "cosine"  # the rate after warm-up: "cosine" to 0, or "poly":
    # lr × (1 - t)^poly_power over the budget's fraction t (DeepLab's)
    poly_power: float = bounded(0.9, gt=0, le=100)  # poly: the power
    class_weights: tuple[float, ...] | str | None = None  # per-class loss weights, or
    # "inverse_frequency": N / (K × n_c) from the training labels' pixel counts n_c (K: the
    # classes present, N: their pixels)
    label_smoothing: float = bounded(0.0, ge=0, lt=1)  # cross-entropy label smoothing
    aux_weight: float = bounded(0.0, ge=0, le=100)  # > 0: an auxiliary FCN head on an earlier
    # backbone stage adds its loss × aux_weight (mmseg's 0.4); torchvision backbones, whole
    # net trained; the head is dropped after training (not in the net's forward, params or
    # export)
    slide: tuple[int, ...] | None = None  # evaluate in sliding windows of [h, w] px, logits
    # averaged where they overlap (mmseg's slide inference); None: whole images
    slide_stride: tuple[int, ...] | None = None  # slide: window step [h, w] px (None: 2/3 of
    # the window, rounded up)

    def __post_init__(self) -> None:
        budgets = [b for b in (self.epochs, self.steps, self.seconds) if b is not None]
        if len(budgets) != 1:
            raise TrialConfigError(
                f"train: set exactly one budget, got epochs={self.epochs}, steps={self.steps}, "
                f"seconds={self.seconds}"
            )
        check_fields(self, TrialConfigError, "train")  # every range, NaN and inf refused
        if self.freeze not in FREEZE:
            raise TrialConfigError(f"train: freeze={self.freeze!r}: must be one of "
                                   f"{', '.join(FREEZE)}")
        try:
            parse_codec(self.freeze_cache, "train: freeze_cache")
        except CodecError as e:
            raise TrialConfigError(str(e)) from None
        if not isinstance(self.device, str) or (self.device != "auto" and not (
                self.device == "cpu" or self.device.startswith("cuda"))):
            raise TrialConfigError(f"train: device={self.device!r}: use auto, cpu or cuda[:N]")
        check_recipe(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON. The freeze fields only when freezing, the recipe's only when set: the
        configs (and so the trial keys and study identities) of studies from before either
        existed stay equal."""
        d = asdict(self)
        if self.freeze == "none":
            del d["freeze"], d["freeze_views"], d["freeze_cache"]
        for name in _recipe_unset(self):
            del d[name]
        return d


_RECIPE_KEYS = ("optimizer", "momentum", "nesterov", "lr_schedule", "poly_power",
                "class_weights", "label_smoothing", "aux_weight", "slide", "slide_stride")
_RECIPE_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.name in _RECIPE_KEYS}


def _recipe_unset(tc: TrainConfig) -> list[str]:
    """The recipe keys a config leaves out: those at their default, except that the
    optimiser's and schedule's own settings are recorded with them once they are chosen."""
    keep: tuple[str, ...] = {"sgd": ("momentum", "nesterov")}.get(tc.optimizer, ())
    keep += ("poly_power",) if tc.lr_schedule == "poly" else ()
    return [k for k, v in _RECIPE_DEFAULTS.items() if getattr(tc, k) == v and k not in keep]


def _pair(v: object) -> bool:
    return (isinstance(v, tuple) and len(v) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v))


def check_recipe(tc: TrainConfig) -> None:
    """The recipe's names and lists (lists from TOML/JSON become tuples, so configs compare
    equal); its numbers' ranges are declared on the fields (`_check.bounded`)."""
    for name in ("class_weights", "slide", "slide_stride"):
        if isinstance(getattr(tc, name), list):
            object.__setattr__(tc, name, tuple(getattr(tc, name)))
    cw = tc.class_weights
    if tc.optimizer not in OPTIMIZERS or tc.lr_schedule not in LR_SCHEDULES:
        raise TrialConfigError(f"train: optimizer={tc.optimizer!r}, lr_schedule="
                               f"{tc.lr_schedule!r}: use one of {OPTIMIZERS} and {LR_SCHEDULES}")
    if tc.nesterov and not tc.momentum > 0:  # its range is the field's (check_fields)
        raise TrialConfigError(f"train: nesterov={tc.nesterov!r} needs momentum > 0, got "
                               f"momentum={tc.momentum!r}")
    if cw is not None and cw != INVERSE_FREQUENCY and not (
            isinstance(cw, tuple) and len(cw) >= 2 and all(
                isinstance(w, int | float) and not isinstance(w, bool) and 0 <= w < math.inf
                for w in cw)
            and sum(cw) > 0):
        raise TrialConfigError(f"train: class_weights={cw!r}: a list of finite weights >= 0 "
                               f"(one per class, not all 0) or {INVERSE_FREQUENCY!r}")
    if (tc.slide is not None and not _pair(tc.slide)) or (tc.slide_stride is not None and not (
            tc.slide is not None and _pair(tc.slide_stride))):
        raise TrialConfigError(f"train: slide={tc.slide!r}, slide_stride={tc.slide_stride!r}: "
                               "[h, w] windows and steps in px (>= 1; a stride needs a slide)")


def check_freeze(freeze: str, backbone: str, target: str) -> None:
    """Freezing the backbone needs one (a torchvision trunk) and a searched head on top of it:
    with the stem or searched backbone rates the frozen part would change per trial."""
    if freeze == "none":
        return
    if backbone == "stem" or target != "head":
        raise TrialConfigError(
            f"train: freeze={freeze!r} needs a torchvision backbone and arch.target='head' "
            f"(got backbone={backbone!r}, target={target!r}): only a head on a fixed "
            "backbone trains on cached features")


def check_aux(tc: TrainConfig, backbone: str) -> None:
    """The auxiliary head and sliding windows act on the whole net's images: they need a
    torchvision backbone (aux) and the whole net trained (both)."""
    if tc.aux_weight > 0 and (backbone not in TV_BACKBONES or tc.freeze != "none"):
        raise TrialConfigError(
            f"train: aux_weight={tc.aux_weight} needs a torchvision backbone "
            f"({', '.join(TV_BACKBONES)}) and freeze='none' (got backbone={backbone!r}, "
            f"freeze={tc.freeze!r})")
    if tc.slide is not None and tc.freeze != "none":
        raise TrialConfigError(f"train: slide={list(tc.slide)} evaluates images, but "
                               f"freeze={tc.freeze!r} evaluates cached features")


def _from(cls: type, d: dict[str, Any], where: str) -> Any:
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise TrialConfigError(f"{where}: expected a table, got {d!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise TrialConfigError(
            f"{where}: unknown keys {unknown}; known: {', '.join(sorted(known))}"
        )
    try:
        return cls(**d)
    except TypeError as e:
        raise TrialConfigError(f"{where}: {e}") from None


@dataclass(frozen=True)
class TrialConfig:
    """Everything but the schedule and the seed: (config, schedule, seed) → metrics."""

    arch: ArchConfig = field(default_factory=ArchConfig)  # net around the dilated stack
    data: DataConfig = field(default_factory=DataConfig)  # where images come from
    train: TrainConfig = field(default_factory=TrainConfig)  # budget and optimiser

    def __post_init__(self) -> None:
        check_freeze(self.train.freeze, self.arch.backbone, self.arch.target)
        check_aux(self.train, self.arch.backbone)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "data": asdict(self.data),
                "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        unknown = sorted(set(d) - {"arch", "data", "train"})
        if unknown:
            raise TrialConfigError(f"trial config: unknown keys {unknown}")
        arch = d.get("arch", {})
        return cls(
            arch=arch if isinstance(arch, ArchConfig) else ArchConfig.from_dict(dict(arch)),
            data=_from(DataConfig, d.get("data", {}), "data"),
            train=_from(TrainConfig, d.get("train", {}), "train"),
        )
