"""Data configuration: plain frozen dataclass, JSON round-trips via dataclasses.asdict."""

from __future__ import annotations

from dataclasses import dataclass

from nas_dil.data.errors import DataError

LAYOUTS = ("auto", "folder", "voc", "cityscapes")


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # "synthetic" or a path to a data folder
    layout: str = "auto"  # auto | folder | voc | cityscapes (ignored for synthetic)
    image_size: int | tuple[int, ...] = 64  # train crop side, or [h, w] (px); synthetic: side
    num_classes: int | None = None  # None: read from the data (synthetic: its fixed count)
    ignore_index: int = 255  # label value that counts for nothing
    n_train: int = 512  # synthetic only: training images
    n_val: int = 128  # synthetic only: validation images
    val_fraction: float = 0.2  # folder layout without a split: share held out for val
    flip: bool = True  # random horizontal flip in training
    scale_min: float = 1.0  # random scale in training: factor drawn in [scale_min, scale_max]
    scale_max: float = 1.0  # (1, 1: no scaling), applied before the crop
    val_subset: int | None = None  # evaluate on this many val images (seeded pick); None: all
    val_size: int | None = None  # resize val images to this longer side (px); None: full size
    workers: int | None = None  # DataLoader processes; None: from the trial's cpus
    cache: str = ""  # "": decode from the files; "auto" or a folder: node-local uint8 cache
    seed: int = 0  # data seed: synthetic generation, folder split, val_subset pick

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
        if self.layout not in LAYOUTS:
            raise DataError(f"config: unknown layout {self.layout!r} (expected one of {LAYOUTS})")
        s = self.image_size
        ok_pair = (isinstance(s, tuple) and len(s) == 2
                   and all(isinstance(v, int) and not isinstance(v, bool) for v in s))
        if not (isinstance(s, int) and not isinstance(s, bool)) and not ok_pair:
            raise DataError(f"config: image_size {s!r} must be an int or [h, w]")
        if not all(8 <= v <= 4096 for v in self.crop_hw):
            raise DataError(f"config: image_size {s!r} must be in [8, 4096]")
        if self.source == "synthetic" and not isinstance(s, int):
            raise DataError(f"config: image_size {s!r}: synthetic images are square (an int)")
        if self.num_classes is not None and self.num_classes < 2:
            raise DataError(f"config: num_classes {self.num_classes} must be >= 2")
        if self.num_classes is not None and 0 <= self.ignore_index < self.num_classes:
            raise DataError(
                f"config: ignore_index {self.ignore_index} is a real class "
                f"(num_classes {self.num_classes})"
            )
        if self.n_train < 1 or self.n_val < 1:
            raise DataError(f"config: n_train {self.n_train} and n_val {self.n_val} must be >= 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise DataError(f"config: val_fraction {self.val_fraction} must be in (0, 1)")
        if not 0.05 <= self.scale_min <= self.scale_max <= 8.0:
            raise DataError(f"config: scale_min {self.scale_min}, scale_max {self.scale_max}: "
                            "need 0.05 <= scale_min <= scale_max <= 8")
        if self.val_subset is not None and self.val_subset < 1:
            raise DataError(f"config: val_subset {self.val_subset} must be >= 1")
        if self.val_size is not None and not 8 <= self.val_size <= 8192:
            raise DataError(f"config: val_size {self.val_size} must be in [8, 8192]")
        if self.workers is not None and not 0 <= self.workers <= 64:
            raise DataError(f"config: workers {self.workers} must be in [0, 64]")
