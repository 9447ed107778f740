"""Trial configuration: what to train (arch, data) and how (budget, optimiser, device).

Frozen dataclasses, plain JSON: ``TrialConfig.from_dict(json.loads(json.dumps(c.to_dict())))``
rebuilds an equal config. Torch-free.

Each number's range is declared on its field (``bounded(…)``, `nas_dil._check`) and checked
in ``__post_init__``, NaN and inf refused: the one check for a config built in Python, read
from a study file's ``[train]`` table or filled from ``nas-dil train``'s flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nas_dil._check import bounded, check_fields
from nas_dil.data.config import DataConfig
from nas_dil.errors import UserError
from nas_dil.models.config import ArchConfig

__all__ = ["FREEZE", "TrainConfig", "TrialConfig", "TrialConfigError", "check_freeze"]

FREEZE = ("none", "backbone")  # TrainConfig.freeze: what stays fixed while a trial trains


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
    lr: float = bounded(3e-3, gt=0)  # AdamW learning rate (cosine decay to 0 over the budget)
    weight_decay: float = bounded(1e-4, ge=0)  # AdamW weight decay
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
        if not isinstance(self.device, str) or (self.device != "auto" and not (
                self.device == "cpu" or self.device.startswith("cuda"))):
            raise TrialConfigError(f"train: device={self.device!r}: use auto, cpu or cuda[:N]")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON. The freeze fields only when freezing: the configs (and so the trial
        keys and study identities) of studies from before freezing existed stay equal."""
        d = asdict(self)
        if self.freeze == "none":
            del d["freeze"], d["freeze_views"]
        return d


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
