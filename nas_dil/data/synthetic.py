"""Procedural segmentation data whose labels need context at several scales.

Every object is painted from one colour, shading and texture distribution, so a pixel's own
value says little: what tells the classes apart is the size or shape of the structure around
it, and one class is marked only by a thin (1-2 px) outline. docs/synthetic_data.md explains
the design and records its calibration against receptive field and gridding.

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

CLASS_NAMES = ["background", "small", "large", "frame"]
NUM_CLASSES = len(CLASS_NAMES)
SMALL, LARGE, FRAME = 1, 2, 3  # label values

# Sizes are sides in px for a 64 px image and scale with the image side.
SMALL_SIDE = (8.0, 14.0)  # solid blobs seen whole by any receptive field
LARGE_SIDE = (32.0, 52.0)  # solid blobs: from the middle, the edge is 10-26 px away
FRAME_SIDE = (28.0, 48.0)  # thin outlines around background, 8-24 px from the middle
N_SMALL = 3  # small-blob slots per image (each filled with p=0.8)
P_BIG = 0.9  # chance a chosen big shape (large blob, frame) is drawn
P_BOTH = 0.6  # chance an image gets both big shapes rather than one of them
P_STUFF = 0.5  # chance of a textured background region reaching the image border
N_STROKES = 2  # open thin strokes in the background (p=0.8 each)
ARC_SPAN = (0.8, 2.5)  # radians of an open arc: never closes into a frame
NOISE = (0.01, 0.04)  # per-pixel Gaussian noise std, drawn per image
SHADE_RAMP = 0.15  # brightness ramp across a region
SHADE_BLOTCH = 0.06  # low-frequency colour blotches in a region
TEX_PERIOD = (2.5, 4.5)  # px, fine stripes on objects and on background stuff
TEX_AMP = (0.08, 0.16)  # stripe amplitude
_REF = 64.0  # the image side the sizes above are given for
_SPLIT_KEYS = {"train": 1, "val": 2}


def chunk_size(size: int) -> int:
    """Images per generator stream: image i depends only on (seed, split, size, i), and a
    chunk's float fields stay near 4 MB each whatever the image side."""
    return max(1, min(64, 2**20 // (size * size)))


class _Canvas:
    """The first n images of a chunk and their labels, painted back to front (the last paint
    wins). Every draw is made for the whole chunk and then cut to n, so an image does not
    depend on how many of its chunk are rendered."""

    def __init__(self, n: int, chunk: int, size: int, g: torch.Generator,
                 device: torch.device) -> None:
        self.n, self.chunk, self.size, self.g, self.device = n, chunk, size, g, device
        self.scale = size / _REF
        ax = torch.arange(size, device=device, dtype=torch.float32) + 0.5
        self.yy = ax.view(1, size, 1).expand(1, size, size)
        self.xx = ax.view(1, 1, size).expand(1, size, size)
        self.base = self.uniform(0.2, 0.8, 3)  # (n,3) background colour
        self.bg = self.base.view(-1, 3, 1, 1) + self.shading()
        self.img = self.bg
        self.lab = torch.zeros(n, size, size, dtype=torch.int64, device=device)

    # --- random draws (CPU generator, then moved) ---------------------------------------
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

    # --- appearance -----------------------------------------------------------------------
    def shading(self) -> Tensor:
        """(n,3,H,W) brightness ramp plus low-frequency blotches, for every region alike, so
        that no class is flatter than another."""
        s = self.size
        ramp_dir = self.uniform(0.0, 2 * math.pi)
        ramp = self.uniform(-SHADE_RAMP, SHADE_RAMP)
        t = (self.col(torch.cos(ramp_dir)) * (self.xx - s / 2)
             + self.col(torch.sin(ramp_dir)) * (self.yy - s / 2)) / s
        low = self.normal(3, 4, 4) * SHADE_BLOTCH
        low = F.interpolate(low, size=(s, s), mode="bicubic", align_corners=False)
        return (self.col(ramp) * t).unsqueeze(1) + low

    def under(self, mask: Tensor | None) -> Tensor:
        """(n,3) mean colour of the picture under mask so far (the background colour where
        mask is None or empty)."""
        if mask is None:
            return self.base
        m = mask.unsqueeze(1).float()
        area = m.sum((2, 3))
        mean = (self.img * m).sum((2, 3)) / area.clamp_min(1)
        return torch.where(area > 0, mean, self.base)

    def object_colour(self, mask: Tensor | None = None) -> Tensor:
        """(n,3): the colour under mask moved by 0.35-0.65 in a random direction, so that an
        object stands out from whatever it covers, by the same margin for every class."""
        d = self.normal(3)
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-6)
        c = self.under(mask) + d * self.uniform(0.35, 0.65).view(-1, 1)
        # reflect channels pushed out of range back inside, so the contrast survives
        c = torch.where(c > 1, 2 - c, c)
        c = torch.where(c < 0, -c, c)
        return c.clamp(0, 1)

    def texture(self) -> Tensor:
        """(n,1,H,W) fine stripes of random period, angle and phase."""
        th = self.uniform(0, math.pi)
        period = self.uniform(*TEX_PERIOD)
        phase = self.uniform(0, 2 * math.pi)
        w = self.col(torch.cos(th)) * self.xx + self.col(torch.sin(th)) * self.yy
        amp = self.uniform(*TEX_AMP)
        wave = torch.sin(2 * math.pi * w / self.col(period) + self.col(phase))
        return (self.col(amp) * wave).unsqueeze(1)

    def fill(self, mask: Tensor | None = None) -> Tensor:
        """(n,3,H,W) object fill: contrasting colour, shading and the shared texture."""
        colour = self.object_colour(mask).view(-1, 3, 1, 1)
        return colour + self.shading() + self.texture()

    def paint(self, mask: Tensor, cls: int, src: Tensor) -> None:
        """Paint src ((n,3) colour or (n,3,H,W) image) where mask, and label it cls."""
        if src.dim() == 2:
            src = src.view(-1, 3, 1, 1).expand_as(self.img)
        self.img = torch.where(mask.unsqueeze(1), src, self.img)
        self.lab = torch.where(mask, torch.full_like(self.lab, cls), self.lab)

    # --- geometry -------------------------------------------------------------------------
    def centre(self, margin: Tensor) -> tuple[Tensor, Tensor]:
        s = self.size
        cx = self.uniform(0.0, 1.0) * (s - 2 * margin) + margin
        cy = self.uniform(0.0, 1.0) * (s - 2 * margin) + margin
        return cx, cy

    def rotated(self, cx: Tensor, cy: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        c, s = self.col(torch.cos(theta)), self.col(torch.sin(theta))
        dx, dy = self.xx - self.col(cx), self.yy - self.col(cy)
        return c * dx + s * dy, -s * dx + c * dy

    def shape(self, side: tuple[float, float], active: Tensor) -> tuple[Tensor, Tensor]:
        """Ellipse or rectangle (aspect 0.6-1) with its long side in `side`.

        Returns (area, outline): the filled area and its 1-2 px thick inner border.
        """
        a = self.uniform(*side) * self.scale / 2
        b = a * self.uniform(0.6, 1.0)
        cx, cy = self.centre(a * 0.7)
        # half are axis-aligned: a thin side along a row or column can fall wholly into a
        # gridded net's holes, where a rotated one would still cross some sampled pixels
        theta = torch.where(self.coin(0.5), 0.0, self.uniform(0, math.pi))
        u, v = self.rotated(cx, cy, theta)
        t = self.col(torch.where(self.coin(0.5), 1.0, 2.0))
        a, b = self.col(a), self.col(b)
        is_rect = self.col(self.coin(0.5))
        ra, rb = a * 0.89, b * 0.89  # a rectangle of about the ellipse's area
        rect = (u.abs() <= ra) & (v.abs() <= rb)
        rect_in = (u.abs() <= ra - t) & (v.abs() <= rb - t)
        ell = (u / a) ** 2 + (v / b) ** 2 <= 1
        ell_in = (u / (a - t)) ** 2 + (v / (b - t)) ** 2 <= 1
        area = torch.where(is_rect, rect, ell) & self.col(active)
        return area, area & ~torch.where(is_rect, rect_in, ell_in)

    def stroke(self, active: Tensor) -> Tensor:
        """Thin (1-2 px) straight segment or open circular arc."""
        k = self.scale
        half = self.col(torch.where(self.coin(0.5), 1.0, 2.0) * 0.5 + 0.1)
        length = self.uniform(16, 44) * k
        cx, cy = self.centre(torch.full((self.n,), 4.0 * k, device=self.device))
        th = self.uniform(0, 2 * math.pi)
        vx, vy = self.col(length * torch.cos(th)), self.col(length * torch.sin(th))
        px, py = self.xx - self.col(cx), self.yy - self.col(cy)
        t = ((px * vx + py * vy) / (vx * vx + vy * vy)).clamp(0, 1)
        seg = (px - t * vx) ** 2 + (py - t * vy) ** 2 <= half**2
        r = self.col(self.uniform(8, 20) * k)
        dist = torch.sqrt(px * px + py * py)
        ang = torch.remainder(torch.atan2(py, px) - self.col(th), 2 * math.pi)
        arc = ((dist - r).abs() <= half) & (ang <= self.col(self.uniform(*ARC_SPAN)))
        return torch.where(self.col(self.coin(0.5)), arc, seg) & self.col(active)


def _render_chunk(n: int, chunk: int, size: int, g: torch.Generator, device: torch.device
                  ) -> tuple[Tensor, Tensor]:
    cv = _Canvas(n, chunk, size, g, device)
    k = cv.scale
    # Background "stuff": a textured region reaching the image border, so that texture
    # alone does not mean "object"; only a closed boundary around it does.
    th = cv.uniform(0, 2 * math.pi)
    off = cv.uniform(0.15, 0.45) * size
    wave = cv.col(2.0 * k * torch.sin(cv.uniform(0, 6.3))) * torch.sin((cv.xx / 5 + cv.yy / 7) / k)
    d = cv.col(torch.cos(th)) * (cv.xx - size / 2) + cv.col(torch.sin(th)) * (cv.yy - size / 2)
    stuff = (d + wave > cv.col(off)) & cv.col(cv.coin(P_STUFF))
    cv.bg = torch.where(stuff.unsqueeze(1), cv.fill(), cv.bg)
    for _ in range(N_STROKES):
        # Open strokes are background (seen through a frame's inside too): up close they
        # look like a frame's outline, so only an outline that closes marks a frame.
        m = cv.stroke(cv.coin(0.8)).unsqueeze(1)
        cv.bg = torch.where(m, cv.object_colour().view(-1, 3, 1, 1), cv.bg)
    cv.img = cv.bg
    # big shapes first, small blobs on top; the last paint wins, labels included
    frame_only = cv.coin(0.5)
    both = cv.coin(P_BOTH)
    area, outline = cv.shape(FRAME_SIDE, (frame_only | both) & cv.coin(P_BIG))
    cv.paint(area, FRAME, cv.bg)  # a frame's inside looks like background ...
    cv.paint(outline, FRAME, cv.object_colour(outline))  # ... only its thin outline marks it
    area, _ = cv.shape(LARGE_SIDE, (~frame_only | both) & cv.coin(P_BIG))
    cv.paint(area, LARGE, cv.fill(area))
    for _ in range(N_SMALL):
        area, _ = cv.shape(SMALL_SIDE, cv.coin(0.8))
        cv.paint(area, SMALL, cv.fill(area))
    noise = cv.normal(3, size, size)
    img = cv.img + noise * cv.uniform(*NOISE).view(-1, 1, 1, 1)
    return img.clamp(0, 1), cv.lab


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
