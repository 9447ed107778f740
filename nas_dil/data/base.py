"""What every data set offers the trainer, plus the helpers both kinds share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

# ImageNet statistics: the usual choice, and harmless for the synthetic images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Batch = tuple[Tensor, Tensor]


def mixed_rng(*keys: int) -> np.random.Generator:
    """A numpy generator whose stream depends on every key (seed, epoch, ...) jointly."""
    return np.random.default_rng(np.random.SeedSequence([k & 0xFFFFFFFF for k in keys]))


def normalise(images: Tensor) -> Tensor:
    """(B,3,H,W) float in [0,1] -> ImageNet-normalised float32."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=torch.float32)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=torch.float32)
    return (images.float() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


class SegData(ABC):
    """A loaded segmentation data set; synthetic and folder data both implement this."""

    num_classes: int
    ignore_index: int
    class_names: list[str]
    n_train: int
    n_val: int
    device: torch.device
    loads_lazily: bool = False  # decoded batch by batch in worker processes (folder data)

    @abstractmethod
    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
        """Shuffled (deterministic in (seed, epoch)) and augmented (random crop to image_size,
        flip) batches: images float32 (B,3,H,W) normalised, masks int64 (B,H,W), on the
        data's device. The last partial batch is yielded too."""

    @abstractmethod
    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        """Fixed order, no augmentation; real data at full size (equal sizes batched)."""

    def label_counts(self) -> np.ndarray:
        """Pixels per class (num_classes,) over the training split's labels, ignore_index
        left out: counted over one deterministic pass of its batches (in-memory data: every
        label exactly); folder data counts its masks at full size (cached, `check`)."""
        counts = torch.zeros(self.num_classes, dtype=torch.int64)
        for _, masks in self.train_batches(64, 0, 0):
            m = masks[(masks >= 0) & (masks < self.num_classes)].cpu()
            counts += torch.bincount(m, minlength=self.num_classes)
        return counts.numpy()

    def configure(self, workers: int | None = None, pin_memory: bool | None = None,
                  max_batch_pixels: int | None = None) -> None:
        """How batches load: worker processes (from the trial's CPUs), pinned memory (CUDA),
        and the cap on pixels in a validation batch. In-memory data ignores all three."""
        return None

    def close(self) -> None:
        """Stop any worker processes (they restart on the next batch)."""
        return None

    @abstractmethod
    def describe(self) -> dict:
        """JSON-able summary: source, layout, counts, num_classes, image_size, seed."""
