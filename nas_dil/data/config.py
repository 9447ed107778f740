"""Data configuration: plain frozen dataclass, JSON round-trips via dataclasses.asdict."""

from __future__ import annotations

from dataclasses import dataclass

from nas_dil.data.errors import DataError

LAYOUTS = ("auto", "folder", "voc", "cityscapes")


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # "synthetic" or a path to a data folder
    layout: str = "auto"  # auto | folder | voc | cityscapes (ignored for synthetic)
    image_size: int = 64  # train crop side (px); synthetic image side
    num_classes: int | None = None  # None: read from the data (synthetic: its fixed count)
    ignore_index: int = 255  # label value that counts for nothing
    n_train: int = 512  # synthetic only: training images
    n_val: int = 128  # synthetic only: validation images
    val_fraction: float = 0.2  # folder layout without a split: share held out for val
    flip: bool = True  # random horizontal flip in training
    seed: int = 0  # data seed: synthetic generation and folder split

    def validate(self) -> None:
        """Raise DataError on values no loader can use (checked before touching any file)."""
        if self.layout not in LAYOUTS:
            raise DataError(f"config: unknown layout {self.layout!r} (expected one of {LAYOUTS})")
        if not 8 <= self.image_size <= 4096:
            raise DataError(f"config: image_size {self.image_size} must be in [8, 4096]")
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
