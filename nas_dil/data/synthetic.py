"""Procedural segmentation data whose labels can only be read from a mark far away.

Every image holds one big near-grey object on a textured near-grey background. The object's
class is written nowhere but in a small saturated mark (1-2 px) at its middle: most of its
pixels are 15-30 px from the mark, beyond a small receptive field, and a gridded stack, which
combines only every g-th feature, often misses a mark that small. docs/synthetic_data.md
explains the design and records its calibration against receptive field and gridding.

Random draws come from a CPU torch generator (the same numbers on every device); rendering
runs on the requested device, so a GPU build can differ from a CPU one only by float rounding
on shape edges.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nas_dil.data.base import Batch, SegData, check_batch_size, mixed_rng, normalise
from nas_dil.data.config import DataConfig
from nas_dil.data.errors import DataError

CLASS_NAMES = ["background", "red_mark", "green_mark", "blue_mark"]
NUM_CLASSES = len(CLASS_NAMES)

# Sizes are in px for a 64 px image and scale with the image side.
OBJ_SIDE = (40.0, 60.0)  # one big object per image: from its middle the edge is 15-30 px away
OBJ_ASPECT = (0.75, 1.0)  # short side / long side
MARK_OFF = 0.5  # the mark's distance from the middle, in short half sides
MARK_HALF = 4.0  # half side of the class mark: 6-7 px at 48, big enough to learn in 384 steps
# The mark's colour names the class; fills and background are near-grey, so the mark is the
# only saturated thing in an image and the only place the class can be read.
MARK_COLOURS = ((0.95, 0.1, 0.1), (0.1, 0.85, 0.1), (0.15, 0.2, 0.95))
GREY = (0.25, 0.75)  # background grey level
TINT = 0.04  # per-channel tint of a grey region
CONTRAST = (0.2, 0.35)  # |object fill grey level - background's|
SHADE_RAMP = 0.08  # brightness ramp across a region
SHADE_BLOTCH = 0.03  # low-frequency blotches in a region
TEX_PERIOD = (2.5, 4.0)  # px; fine stripes on the background only: it is textured and
TEX_AMP = (0.08, 0.14)  # objects are flat, so inside/outside is a local question
NOISE = (0.01, 0.03)  # per-pixel Gaussian noise std, drawn per image
_REF = 64.0  # the image side the sizes above are given for
_SPLIT_KEYS = {"train": 1, "val": 2}


def chunk_size(size: int) -> int:
    """Images per generator stream: image i depends only on (seed, split, size, i), and a
    chunk's float fields stay near 4 MB each whatever the image side."""
    return max(1, min(64, 2**20 // (size * size)))


class _Canvas:
    """Random draws and pixel grids for the first n images of a chunk. Every draw is made for
    the whole chunk and then cut to n, so an image does not depend on how many of its chunk
    are rendered."""

    def __init__(self, n: int, chunk: int, size: int, g: torch.Generator,
                 device: torch.device) -> None:
        self.n, self.chunk, self.size, self.g, self.device = n, chunk, size, g, device
        self.scale = size / _REF
        ax = torch.arange(size, device=device, dtype=torch.float32) + 0.5
        self.yy = ax.view(1, size, 1).expand(1, size, size)
        self.xx = ax.view(1, 1, size).expand(1, size, size)

    def uniform(self, lo: float, hi: float, *shape: int) -> Tensor:
        u = torch.rand(self.chunk, *shape, generator=self.g)[: self.n]
        return (lo + (hi - lo) * u).to(self.device)

    def normal(self, *shape: int) -> Tensor:
        return torch.randn(self.chunk, *shape, generator=self.g)[: self.n].to(self.device)

    def coin(self, p: float) -> Tensor:
        return self.uniform(0, 1) < p

    @staticmethod
    def col(t: Tensor) -> Tensor:
        """(n,) -> (n,1,1), to broadcast against (n,H,W) fields."""
        return t.view(-1, 1, 1)

    def grey(self, level: Tensor) -> Tensor:
        """(n,3,H,W): a near-grey region of the given (n,) level with shading."""
        tint = self.uniform(-TINT, TINT, 3)
        return (level.view(-1, 1) + tint).view(-1, 3, 1, 1) + self.shading()

    def shading(self) -> Tensor:
        """(n,3,H,W) brightness ramp plus low-frequency blotches, for every region alike."""
        s = self.size
        ramp_dir = self.uniform(0.0, 2 * math.pi)
        ramp = self.uniform(-SHADE_RAMP, SHADE_RAMP)
        t = (self.col(torch.cos(ramp_dir)) * (self.xx - s / 2)
             + self.col(torch.sin(ramp_dir)) * (self.yy - s / 2)) / s
        low = self.normal(3, 4, 4) * SHADE_BLOTCH
        low = F.interpolate(low, size=(s, s), mode="bicubic", align_corners=False)
        return (self.col(ramp) * t).unsqueeze(1) + low

    def texture(self) -> Tensor:
        """(n,1,H,W) fine stripes of random period, angle and phase."""
        th = self.uniform(0, math.pi)
        period = self.uniform(*TEX_PERIOD)
        phase = self.uniform(0, 2 * math.pi)
        w = self.col(torch.cos(th)) * self.xx + self.col(torch.sin(th)) * self.yy
        amp = self.uniform(*TEX_AMP)
        wave = torch.sin(2 * math.pi * w / self.col(period) + self.col(phase))
        return (self.col(amp) * wave).unsqueeze(1)

    def shape(self) -> tuple[Tensor, Tensor, Tensor]:
        """A rotated ellipse or rectangle inside the image: (area mask, mark x, mark y)."""
        a = self.uniform(*OBJ_SIDE) * self.scale / 2
        b = a * self.uniform(*OBJ_ASPECT)
        s = self.size
        # the centre keeps the object (nearly) inside, so the mark is far from most of it
        lo, room = a.clamp_max(s / 2), (s - 2 * a).clamp_min(0)
        cx = lo + self.uniform(0.0, 1.0) * room
        cy = lo + self.uniform(0.0, 1.0) * room
        th = self.uniform(0, math.pi)
        c, sn = self.col(torch.cos(th)), self.col(torch.sin(th))
        dx, dy = self.xx - self.col(cx), self.yy - self.col(cy)
        u, v = c * dx + sn * dy, -sn * dx + c * dy
        a, b = self.col(a), self.col(b)
        rect = (u.abs() <= a * 0.89) & (v.abs() <= b * 0.89)  # about the ellipse's area
        ell = (u / a) ** 2 + (v / b) ** 2 <= 1
        area = torch.where(self.col(self.coin(0.5)), rect, ell)
        # the mark sits off the middle, along the short axis, on a random side: the far
        # edge is then 1 + MARK_OFF half sides away
        off = b.flatten() * MARK_OFF * torch.where(self.coin(0.5), 1.0, -1.0)
        return area, cx - off * torch.sin(th), cy + off * torch.cos(th)


def _render_chunk(n: int, chunk: int, size: int, g: torch.Generator, device: torch.device
                  ) -> tuple[Tensor, Tensor]:
    cv = _Canvas(n, chunk, size, g, device)
    level = cv.uniform(*GREY)
    img = cv.grey(level) + cv.texture()
    area, mx, my = cv.shape()
    # the fill's grey level differs from the background's by CONTRAST, reflected into range
    d = cv.uniform(*CONTRAST) * torch.where(cv.coin(0.5), 1.0, -1.0)
    fill = level + d
    fill = torch.where((fill > 0.9) | (fill < 0.1), level - d, fill)
    img = torch.where(area.unsqueeze(1), cv.grey(fill), img)
    cls = torch.randint(1, NUM_CLASSES, (chunk,), generator=g)[:n].to(device)
    lab = torch.where(area, cv.col(cls), torch.zeros_like(area, dtype=torch.int64))
    half = max(0.5, MARK_HALF * cv.scale)
    mark = ((cv.xx - cv.col(mx)).abs() <= half) & ((cv.yy - cv.col(my)).abs() <= half)
    colours = torch.tensor(MARK_COLOURS, device=device)[cls - 1]  # (n,3)
    img = torch.where(mark.unsqueeze(1), colours.view(-1, 3, 1, 1), img)
    noise = cv.normal(3, size, size)
    img = img + noise * cv.uniform(*NOISE).view(-1, 1, 1, 1)
    return img.clamp(0, 1), lab


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Drawing is hundreds of small ops: on a busy CPU, threads waiting on each other make
    it ~50x slower than one thread (5 s instead of 0.1 s for a small set)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def render(n: int, size: int, seed: int, split: str, device: torch.device | str = "cpu"
           ) -> tuple[Tensor, Tensor]:
    """n images (n,3,size,size) in [0,1] and labels (n,size,size) int64 of one split."""
    device = torch.device(device)
    with _one_cpu_thread(device):
        return _render(n, size, seed, split, device)


def _render(n: int, size: int, seed: int, split: str, device: torch.device
            ) -> tuple[Tensor, Tensor]:
    chunk = chunk_size(size)
    imgs, labs = [], []
    for c in range(math.ceil(n / chunk)):
        stream = int(mixed_rng(seed, _SPLIT_KEYS[split], c).integers(2**62))
        g = torch.Generator().manual_seed(stream)
        img, lab = _render_chunk(min(chunk, n - c * chunk), chunk, size, g, device)
        imgs.append(img)
        labs.append(lab)
    return torch.cat(imgs), torch.cat(labs)


class SyntheticData(SegData):
    """Every image drawn at load and kept on the device (about 50 MB at the defaults)."""

    def __init__(self, cfg: DataConfig, device: torch.device | str = "cpu") -> None:
        if cfg.num_classes is not None and cfg.num_classes != NUM_CLASSES:
            raise DataError(f"synthetic: has {NUM_CLASSES} classes, config asks for "
                            f"num_classes {cfg.num_classes}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.num_classes = NUM_CLASSES
        self.ignore_index = cfg.ignore_index
        self.class_names = list(CLASS_NAMES)
        self.n_train, self.n_val = cfg.n_train, cfg.n_val
        size = cfg.image_size
        if not isinstance(size, int):  # DataConfig.validate refuses this before we get here
            raise DataError(f"config: image_size {size!r}: synthetic images are square (an int)")
        x, self.train_y = render(cfg.n_train, size, cfg.seed, "train", self.device)
        self.train_x = normalise(x)
        x, self.val_y = render(cfg.n_val, size, cfg.seed, "val", self.device)
        self.val_x = normalise(x)

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
        """Images are already image_size square, so augmentation is the flip alone."""
        check_batch_size(batch_size)
        rng = mixed_rng(seed, epoch, 11)
        order = rng.permutation(self.n_train)
        flips = rng.random(self.n_train) < 0.5 if self.cfg.flip else np.zeros(self.n_train, bool)
        for start in range(0, self.n_train, batch_size):
            idx = torch.as_tensor(order[start:start + batch_size], device=self.device)
            f = torch.as_tensor(flips[start:start + batch_size], device=self.device)
            x, y = self.train_x[idx], self.train_y[idx]
            x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
            y = torch.where(f.view(-1, 1, 1), y.flip(-1), y)
            yield x, y

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        for start in range(0, self.n_val, batch_size):
            yield self.val_x[start:start + batch_size], self.val_y[start:start + batch_size]

    def describe(self) -> dict:
        return {
            "source": "synthetic", "layout": "synthetic", "n_train": self.n_train,
            "n_val": self.n_val, "num_classes": self.num_classes,
            "class_names": list(self.class_names), "ignore_index": self.ignore_index,
            "image_size": self.cfg.image_size, "seed": self.cfg.seed,
        }
