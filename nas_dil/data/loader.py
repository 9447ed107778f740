"""Lazy decoding of folder data through a torch `Dataset` + `DataLoader`.

A sample is decoded from its files (or read from the node-local cache) when a batch needs it
and dropped after, so memory does not grow with the data set. Worker processes come from a
forkserver (spawn where there is none): forking a process that runs Ray's threads, as a Ray
task's is, can deadlock; the forkserver preloads this module so a worker starts in ~0.1 s.

What a worker returns is plain data: uint8 images (B,H,W,3) and int32 masks (B,H,W), or the
one-line message of a bad file, which the main process raises as DataError (an exception
crossing the process boundary would be re-wrapped with a worker traceback).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nas_dil.data.base import IMAGENET_MEAN, mixed_rng
from nas_dil.data.check import check_labels, mask_array, read_image, read_mask
from nas_dil.data.errors import DataError

# padding colour for crops larger than the image: the mean, i.e. zero after normalisation
PAD_RGB = np.array([round(255 * m) for m in IMAGENET_MEAN], dtype=np.uint8)

# A batch key: ("t", index, seed, epoch) for a training crop, ("v", index) for val.
Key = tuple[Any, ...]


@dataclass(frozen=True)
class Item:
    stem: str
    image_path: Path
    mask_path: Path


@dataclass(frozen=True)
class Augment:
    crop_hw: tuple[int, int]  # training crop (h, w)
    flip: bool
    scale: tuple[float, float]  # random scale range
    val_size: int | None  # longer side of val images (None: as decoded)


def val_shape(h: int, w: int, val_size: int | None) -> tuple[int, int]:
    """(h, w) of a val image after the val_size resize (longer side = val_size)."""
    if val_size is None:
        return h, w
    f = val_size / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


class SegDataset(torch.utils.data.Dataset):
    """Both splits of one folder data set; an item is looked up by a Key (see module doc)."""

    def __init__(self, train: Sequence[Item], val: Sequence[Item], aug: Augment,
                 num_classes: int, ignore_index: int, cache: Any = None) -> None:
        self.train, self.val = list(train), list(val)
        self.aug, self.num_classes, self.ignore_index = aug, num_classes, ignore_index
        self.cache = cache  # a DecodedCache (memory-mapped), or None: decode from the files

    def __len__(self) -> int:
        return len(self.train) + len(self.val)

    def _decoded(self, split: str, i: int) -> tuple[Image.Image | np.ndarray, np.ndarray, Path]:
        item = (self.train if split == "t" else self.val)[i]
        if self.cache is not None:
            img, mask = self.cache.get(split, i)
            return img, mask, item.mask_path
        mask = mask_array(read_mask(item.mask_path), item.mask_path)
        img = read_image(item.image_path)
        if (img.size[1], img.size[0]) != mask.shape:  # a header that lied about the size
            raise DataError(f"{item.image_path} is {img.size[0]}x{img.size[1]} but "
                            f"{item.mask_path} is {mask.shape[1]}x{mask.shape[0]}")
        return img, mask, item.mask_path

    def __getitem__(self, key: Key) -> tuple[np.ndarray, np.ndarray] | str:
        try:
            img, mask, mask_path = self._decoded(key[0], key[1])
            check_labels(mask, self.num_classes, self.ignore_index, mask_path)
            if key[0] == "t":
                return self._train_crop(img, mask, mixed_rng(key[2], key[3], key[1], 13))
            mh, mw = mask.shape  # 2-D: mask_array / the cache give (h, w)
            h, w = val_shape(mh, mw, self.aug.val_size)
            if (h, w) != mask.shape:
                img, mask = _resize(img, mask, h, w)
            return np.asarray(img, dtype=np.uint8), mask.astype(np.int32, copy=False)
        except DataError as e:
            return str(e)

    def _train_crop(self, img: Image.Image | np.ndarray, mask: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random scale, then a random crop_hw window (padded with the mean colour and
        ignore_index where the image is smaller), then a random flip."""
        lo, hi = self.aug.scale
        f = float(rng.uniform(lo, hi)) if hi > lo else lo
        if f != 1.0:
            h, w = mask.shape
            img, mask = _resize(img, mask, max(1, round(h * f)), max(1, round(w * f)))
        ch, cw = self.aug.crop_hw
        h, w = mask.shape
        # a negative offset places the image inside a larger, padded window
        y0 = int(rng.integers(min(0, h - ch), max(0, h - ch) + 1))
        x0 = int(rng.integers(min(0, w - cw), max(0, w - cw) + 1))
        sy, sx = max(y0, 0), max(x0, 0)
        ey, ex = min(y0 + ch, h), min(x0 + cw, w)
        # only the window's pixels become an array (a decoded image is cropped, not copied)
        window = (img.crop((sx, sy, ex, ey)) if isinstance(img, Image.Image)
                  else img[sy:ey, sx:ex])
        if (ey - sy, ex - sx) == (ch, cw):
            out = np.asarray(window, dtype=np.uint8)
            lab = mask[sy:ey, sx:ex].astype(np.int32)
        else:
            out = np.empty((ch, cw, 3), np.uint8)
            out[:] = PAD_RGB
            lab = np.full((ch, cw), self.ignore_index, np.int32)
            out[sy - y0:ey - y0, sx - x0:ex - x0] = np.asarray(window, dtype=np.uint8)
            lab[sy - y0:ey - y0, sx - x0:ex - x0] = mask[sy:ey, sx:ex]
        if self.aug.flip and rng.random() < 0.5:
            out, lab = out[:, ::-1], lab[:, ::-1]
        return out, lab


def _resize(img: Image.Image | np.ndarray, mask: np.ndarray, h: int, w: int
            ) -> tuple[Image.Image, np.ndarray]:
    """Bilinear image, nearest-neighbour mask (labels are never blended)."""
    im = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
    im = im.resize((w, h), Image.Resampling.BILINEAR)
    m = Image.fromarray(mask.astype(np.int32, copy=False), mode="I")
    return im, np.asarray(m.resize((w, h), Image.Resampling.NEAREST), dtype=np.int32)


def collate(items: list[tuple[np.ndarray, np.ndarray] | str]
            ) -> tuple[torch.Tensor, torch.Tensor] | str:
    """Stack a batch; the first bad file's message instead, if any."""
    for it in items:
        if isinstance(it, str):
            return it
    pairs: list[tuple[np.ndarray, np.ndarray]] = items  # type: ignore[assignment]
    in_worker = torch.utils.data.get_worker_info() is not None
    out = []
    for k in (0, 1):
        first = pairs[0][k]
        dtype = torch.from_numpy(np.empty(0, first.dtype)).dtype
        t = torch.empty((len(pairs), *first.shape), dtype=dtype)
        if in_worker:  # stack straight into shared memory: the batch is not copied again
            t.share_memory_()
        arr = t.numpy()
        for i, p in enumerate(pairs):
            arr[i] = p[k]
        out.append(t)
    return out[0], out[1]


class Plan:
    """The batch sampler: yields the key lists set by the last `set()` (DataLoader iterates
    it in the main process, so a persistent loader can serve a new plan each epoch)."""

    def __init__(self) -> None:
        self.batches: list[list[Key]] = []

    def set(self, batches: list[list[Key]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def mp_context() -> Any:
    """forkserver where the platform has it (preloading this module), else spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context("spawn")


def _end_with(owner: int, worker_id: int) -> None:
    """A worker's init: end this worker when ``owner`` (the process that trains) ends.

    The worker's parent is the forkserver, not the owner: torch's own watchdog looks at the
    parent, and the forkserver waits for every holder of its pipe, the workers included, to
    end; so when the owner died (SIGTERM, SIGKILL, a killed Ray worker) both lived on. A
    daemon thread waits on the owner (a pidfd where Linux has one, else polls) and exits."""
    def watch() -> None:
        try:
            fd = os.pidfd_open(owner)
        except (AttributeError, OSError):  # no pidfd (macOS, old kernels): poll
            fd = None
        if fd is not None:
            select.select([fd], [], [])  # readable once the owner has exited
        else:
            while _alive(owner):
                time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch, name="nas-dil-owner-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


class Loader:
    """A persistent DataLoader over `SegDataset` fed batch plans; batches come out as bad-file
    checked (uint8 images, int32 masks) CPU tensors, pinned when asked. Its workers end with
    the process that made it (`_end_with`)."""

    def __init__(self, dataset: SegDataset, workers: int, pin_memory: bool) -> None:
        self.plan = Plan()
        self.workers, self.pin_memory = workers, pin_memory
        kw: dict[str, Any] = {}
        if workers > 0:
            kw = {"multiprocessing_context": mp_context(), "persistent_workers": True,
                  "prefetch_factor": 2, "worker_init_fn": partial(_end_with, os.getpid())}
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.plan, num_workers=workers, collate_fn=collate,
            pin_memory=pin_memory, **kw)

    def run(self, batches: list[list[Key]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.plan.set(batches)
        for out in self.loader:
            if isinstance(out, str):
                raise DataError(out)
            yield out

    def close(self) -> None:
        it = getattr(self.loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.loader._iterator = None
