"""Data configuration: plain frozen dataclass, JSON round-trips via dataclasses.asdict.

Ranges are declared on the fields (`nas_dil._check.bounded`) and checked by `validate`, the
one data check every door runs before touching a file (a study file when it is parsed,
`load_data`, `nas-dil data check`); what needs the files (classes in the masks) is the
loader's."""

from __future__ import annotations

from dataclasses import dataclass

from nas_dil._check import SEED, bounded, check_fields
from nas_dil.data.errors import DataError

LAYOUTS = ("auto", "folder", "voc", "cityscapes")
MAX_CLASSES = 2**16  # the label values a 16-bit mask can hold
SYNTHETIC_BYTES = 20  # per pixel of a synthetic image kept in memory: 3 float32 + an int64 label
MAX_SYNTHETIC_BYTES = 32 * 2**30  # synthetic images are drawn at load and kept in memory


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # "synthetic" or a path to a data folder
    layout: str = "auto"  # auto | folder | voc | cityscapes (ignored for synthetic)
    image_size: int | tuple[int, ...] = 64  # train crop side, or [h, w] (px); synthetic: side
    num_classes: int | None = bounded(None, ge=2, le=MAX_CLASSES, integer=True)  # None: read
    # from the data (synthetic: its fixed count)
    ignore_index: int = bounded(255, ge=-(2**31), lt=2**31)  # label value that counts for
    # nothing
    n_train: int = bounded(512, ge=1, le=10**8)  # synthetic only: training images
    n_val: int = bounded(128, ge=1, le=10**8)  # synthetic only: validation images
    val_fraction: float = bounded(0.2, gt=0, lt=1)  # folder layout without a split: share
    # held out for val
    flip: bool = True  # random horizontal flip in training
    scale_min: float = bounded(1.0, ge=0.05, le=8.0)  # random scale in training: factor drawn
    scale_max: float = bounded(1.0, ge=0.05, le=8.0)  # in [scale_min, scale_max] (1, 1: no
    # scaling), applied before the crop
    val_subset: int | None = bounded(None, ge=1, le=10**8, integer=True)  # evaluate on this
    # many val images (seeded pick); None: all
    val_size: int | None = bounded(None, ge=8, le=8192, integer=True)  # resize val images to
    # this longer side (px); None: full size
    workers: int | None = bounded(None, ge=0, le=64, integer=True)  # DataLoader processes;
    # None: from the trial's cpus
    cache: str = ""  # "": decode from the files; "auto" or a folder: node-local uint8 cache
    seed: int = bounded(0, bound=SEED)  # data seed: synthetic generation, folder split,
    # val_subset pick

    def __post_init__(self) -> None:
        # [h, w] from TOML/JSON arrives as a list: keep a tuple so configs compare equal
        if isinstance(self.image_size, list):
            object.__setattr__(self, "image_size", tuple(self.image_size))

    @property
    def crop_hw(self) -> tuple[int, int]:
        """The training crop as (h, w): an int image_size is a square."""
        s = self.image_size
        if isinstance(s, int):
            return (s, s)
        return (int(s[0]), int(s[1]))

    def validate(self) -> None:
        """Raise DataError on values no loader can use (checked before touching any file)."""
        if not isinstance(self.layout, str) or self.layout not in LAYOUTS:
            raise DataError(f"data: unknown layout {self.layout!r} (expected one of {LAYOUTS})")
        s = self.image_size
        ok_pair = (isinstance(s, tuple) and len(s) == 2
                   and all(isinstance(v, int) and not isinstance(v, bool) for v in s))
        if not (isinstance(s, int) and not isinstance(s, bool)) and not ok_pair:
            raise DataError(f"data: image_size {s!r} must be an int or [h, w]")
        if not all(8 <= v <= 4096 for v in self.crop_hw):
            raise DataError(f"data: image_size {s!r} must be in [8, 4096]")
        if self.source == "synthetic" and not isinstance(s, int):
            raise DataError(f"data: image_size {s!r}: synthetic images are square (an int)")
        check_fields(self, DataError, "data")  # every range, NaN and inf refused
        if self.num_classes is not None and 0 <= self.ignore_index < self.num_classes:
            raise DataError(
                f"data: ignore_index {self.ignore_index} is a real class "
                f"(num_classes {self.num_classes})"
            )
        if not self.scale_min <= self.scale_max:
            raise DataError(f"data: scale_min {self.scale_min} > scale_max {self.scale_max}")
        if self.source == "synthetic":  # drawn at load and kept in memory: bound it
            need = (self.n_train + self.n_val) * self.crop_hw[0] * self.crop_hw[1] * (
                SYNTHETIC_BYTES)
            if need > MAX_SYNTHETIC_BYTES:
                raise DataError(
                    f"data: n_train {self.n_train} + n_val {self.n_val} synthetic images of "
                    f"{s}² px need {need / 2**30:.3g} GiB in memory (at most "
                    f"{MAX_SYNTHETIC_BYTES // 2**30} GiB)")
