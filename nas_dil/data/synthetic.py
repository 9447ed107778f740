"""Procedural segmentation data whose labels need context at several scales.

Every object class is painted from the same colour distribution, so a pixel's own value says
little; what tells the classes apart is the size or shape of the structure around it (see
docs/synthetic_data.md for the design and its calibration against receptive field and
gridding). Random draws come from a CPU torch generator so a seed gives the same images on
any device; rendering runs on the requested device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from nas_dil.data.base import Batch, SegData, check_batch_size, mixed_rng, normalise
from nas_dil.data.config import DataConfig
from nas_dil.data.errors import DataError

CLASS_NAMES = ["background", "small", "large", "bar", "frame"]
LARGE = (30.0, 48.0)
LARGE_FRAME = (24.0, 44.0)
SMALL = (8.0, 14.0)
BAR = (24.0, 48.0)
BAR_ASPECT = (0.12, 0.22)
P_LARGE = 0.9
P_STUFF = 0.5
P_BOTH = 0.0
N_SMALL = 3
N_BARS = 1
N_STROKES = 2
ARC_SPAN = (0.8, 2.5)
NOISE = (0.02, 0.06)
SHADE_RAMP = 0.15
SHADE_BLOTCH = 0.06
TEX_PERIOD = (2.5, 4.5)
TEX_AMP = (0.08, 0.16)
NUM_CLASSES = len(CLASS_NAMES)
CHUNK = 64  # images drawn per generator stream: image i depends only on (seed, split, i)
_SPLIT_KEYS = {"train": 1, "val": 2}
_REF = 64.0  # object sizes are specified for 64 px images and scale with the image side


class _Canvas:
    """Images and labels for one chunk, painted back to front (the last paint wins)."""

    def __init__(self, n: int, size: int, g: torch.Generator, device: torch.device) -> None:
        self.n, self.size, self.g, self.device = n, size, g, device
        self.scale = size / _REF
        ax = torch.arange(size, device=device, dtype=torch.float32) + 0.5
        self.yy = ax.view(1, size, 1).expand(1, size, size)
        self.xx = ax.view(1, 1, size).expand(1, size, size)
        self.bg = self._background()
        self.img = self.bg.clone()
        self.lab = torch.zeros(n, size, size, dtype=torch.int64, device=device)

    # --- random draws (CPU generator, then moved) -------------------------------------
    def uniform(self, lo: float, hi: float, *shape: int) -> Tensor:
        u = torch.rand(self.n, *shape, generator=self.g)
        return (lo + (hi - lo) * u).to(self.device)

    def randint(self, lo: int, hi: int) -> Tensor:
        return torch.randint(lo, hi, (self.n,), generator=self.g).to(self.device)

    def col(self, t: Tensor) -> Tensor:
        """(n,) -> (n,1,1) for broadcasting against (n,H,W) fields."""
        return t.view(-1, 1, 1)

    # --- appearance ----------------------------------------------------------------------
    def shading(self) -> Tensor:
        """(n,3,H,W) smooth brightness ramp plus low-frequency blotches.

        Background and object fills both get it, so that no region is flatter than another.
        """
        n, s = self.n, self.size
        ramp_dir = self.uniform(0.0, 2 * math.pi)
        ramp = self.uniform(-SHADE_RAMP, SHADE_RAMP)
        t = (self.col(torch.cos(ramp_dir)) * (self.xx - s / 2)
             + self.col(torch.sin(ramp_dir)) * (self.yy - s / 2)) / s
        low = torch.randn(n, 3, 4, 4, generator=self.g).to(self.device) * SHADE_BLOTCH
        low = torch.nn.functional.interpolate(low, size=(s, s), mode="bicubic",
                                              align_corners=False)
        return (self.col(ramp) * t).unsqueeze(1) + low

    def _background(self) -> Tensor:
        self.base = self.uniform(0.2, 0.8, 3)  # (n,3)
        return self.base.view(-1, 3, 1, 1) + self.shading()

    def texture(self) -> Tensor:
        """(n,1,H,W) fine stripes: period 2.5-4.5 px, random angle and phase."""
        th = self.uniform(0, math.pi)
        period = self.uniform(*TEX_PERIOD)
        phase = self.uniform(0, 2 * math.pi)
        w = self.col(torch.cos(th)) * self.xx + self.col(torch.sin(th)) * self.yy
        amp = self.uniform(*TEX_AMP)
        return (self.col(amp) * torch.sin(2 * math.pi * w / self.col(period)
                                          + self.col(phase))).unsqueeze(1)

    def fill(self) -> Tensor:
        """Object fill: contrasting colour, shading and the (shared) fine object texture."""
        return self.object_colour().view(-1, 3, 1, 1) + self.shading() + self.texture()

    def object_colour(self) -> Tensor:
        """A colour that contrasts with the background by a random amount in a random hue."""
        d = torch.randn(self.n, 3, generator=self.g).to(self.device)
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-6)
        mag = self.uniform(0.35, 0.65).view(-1, 1)
        c = self.base + d * mag
        # reflect channels pushed out of range back inside so the contrast survives
        c = torch.where(c > 1, 2 - c, c)
        c = torch.where(c < 0, -c, c)
        return c.clamp(0, 1)

    def paint(self, mask: Tensor, cls: int, colour: Tensor | None, label_mask: Tensor | None = None,
              fill: Tensor | None = None) -> None:
        """Paint `colour` (n,3) (or `fill` (n,3,H,W)) where mask; label `cls` where label_mask."""
        m = mask.unsqueeze(1)
        src = fill if fill is not None else colour.view(-1, 3, 1, 1).expand_as(self.img)
        self.img = torch.where(m, src, self.img)
        lm = mask if label_mask is None else label_mask
        self.lab = torch.where(lm, torch.full_like(self.lab, cls), self.lab)

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

    def shape(self, lo: float, hi: float, active: Tensor, margin: float = 0.7,
              aspect: tuple[float, float] = (0.6, 1.0)) -> tuple[Tensor, Tensor]:
        """Ellipse or rotated rectangle, sides in [lo, hi] px at 64 px.

        Returns (area, outline): the filled area and its 1-2 px thick inner border.
        """
        k = self.scale
        a = self.uniform(lo, hi) * k / 2
        b = a * self.uniform(*aspect)
        cx, cy = self.centre(a * margin)
        # half the rectangles axis-aligned: their thin sides can hide in a gridded net's holes
        theta = torch.where(self.uniform(0, 1) < 0.5, 0.0, self.uniform(0, math.pi))
        u, v = self.rotated(cx, cy, theta)
        t = self.col(torch.where(self.uniform(0, 1) < 0.5, 1.0, 2.0))
        a, b = self.col(a), self.col(b)
        is_rect = self.col(self.uniform(0, 1) < 0.5)
        ra, rb = a * 0.89, b * 0.89  # rectangle with about the ellipse's area
        rect = (u.abs() <= ra) & (v.abs() <= rb)
        rect_in = (u.abs() <= ra - t) & (v.abs() <= rb - t)
        ell = (u / a) ** 2 + (v / b) ** 2 <= 1
        ell_in = (u / (a - t)) ** 2 + (v / (b - t)) ** 2 <= 1
        on = self.col(active)
        area = torch.where(is_rect, rect, ell) & on
        inner = torch.where(is_rect, rect_in, ell_in)
        return area, area & ~inner

    def stroke(self, active: Tensor) -> Tensor:
        """Thin (1-2 px) straight segment or open circular arc."""
        k = self.scale
        width = torch.where(self.uniform(0, 1) < 0.5, 1.0, 2.0)
        half = self.col(width * 0.5 + 0.1)
        length = self.uniform(16, 44) * k
        cx, cy = self.centre(torch.full((self.n,), 4.0, device=self.device))
        th = self.uniform(0, 2 * math.pi)
        vx, vy = self.col(length * torch.cos(th)), self.col(length * torch.sin(th))
        px, py = self.xx - self.col(cx), self.yy - self.col(cy)
        t = ((px * vx + py * vy) / (vx * vx + vy * vy)).clamp(0, 1)
        seg = (px - t * vx) ** 2 + (py - t * vy) ** 2 <= half**2
        r = self.col(self.uniform(8, 20) * k)
        dist = torch.sqrt(px * px + py * py)
        ang = torch.remainder(torch.atan2(py, px) - self.col(th), 2 * math.pi)
        span = self.col(self.uniform(*ARC_SPAN))
        arc = ((dist - r).abs() <= half) & (ang <= span)
        is_arc = self.col(self.uniform(0, 1) < 0.5)
        return torch.where(is_arc, arc, seg) & self.col(active)


def _render_chunk(n: int, size: int, g: torch.Generator, device: torch.device
                  ) -> tuple[Tensor, Tensor]:
    cv = _Canvas(n, size, g, device)
    u = cv.uniform
    # background "stuff": half the images have a textured region reaching the image border,
    # so texture alone does not mean object; only a closed outline of texture does
    th = u(0, 2 * math.pi)
    off = u(0.15, 0.45) * size
    d = (cv.col(torch.cos(th)) * (cv.xx - size / 2) + cv.col(torch.sin(th)) * (cv.yy - size / 2)
         + cv.col(2.0 * torch.sin(u(0, 6.3)) ) * torch.sin(cv.xx / 5 + cv.yy / 7))
    stuff = (d > cv.col(off)) & cv.col(u(0, 1) < P_STUFF)
    cv.bg = torch.where(stuff.unsqueeze(1), cv.fill(), cv.bg)
    for _ in range(N_STROKES):
        # open strokes belong to the background (seen through a frame's inside too): up
        # close they look like a frame's outline, so only a closed outline marks a frame
        m = cv.stroke(u(0, 1) < 0.8).unsqueeze(1)
        cv.bg = torch.where(m, cv.object_colour().view(-1, 3, 1, 1), cv.bg)
    cv.img = cv.bg.clone()
    # back to front; the last paint wins, labels included
    big_is_frame = u(0, 1) < 0.5
    both = u(0, 1) < P_BOTH
    area, outline = cv.shape(*LARGE_FRAME, (big_is_frame | both) & (u(0, 1) < P_LARGE))
    cv.paint(area, 4, None, fill=cv.bg)  # a frame's inside looks like background
    cv.paint(outline, 4, cv.object_colour())
    area, _ = cv.shape(*LARGE, (~big_is_frame | both) & (u(0, 1) < P_LARGE))
    cv.paint(area, 2, None, fill=cv.fill())
    for i in range(N_BARS):
        area, _ = cv.shape(*BAR, u(0, 1) < 0.7, margin=0.3, aspect=BAR_ASPECT)
        cv.paint(area, 3, None, fill=cv.fill())
    for i in range(N_SMALL):
        area, _ = cv.shape(*SMALL, u(0, 1) < 0.8)
        cv.paint(area, 1, None, fill=cv.fill())
    noise = torch.randn(n, 3, size, size, generator=g).to(device)
    img = cv.img + noise * cv.uniform(*NOISE).view(-1, 1, 1, 1)
    return img.clamp(0, 1), cv.lab


def render(n: int, size: int, seed: int, split: str, device: torch.device | str = "cpu"
           ) -> tuple[Tensor, Tensor]:
    """n images (n,3,size,size) in [0,1] and labels (n,size,size) int64 for one split."""
    device = torch.device(device)
    imgs, labs = [], []
    for c in range(math.ceil(n / CHUNK)):
        g = torch.Generator().manual_seed(int(mixed_rng(seed, _SPLIT_KEYS[split], c)
                                              .integers(2**62)))
        i, l_ = _render_chunk(CHUNK, size, g, device)
        imgs.append(i)
        labs.append(l_)
    return torch.cat(imgs)[:n], torch.cat(labs)[:n]


class SyntheticData(SegData):
    """All images rendered at load and kept on the device (a few MB at 64 px)."""

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
        x, self.train_y = render(cfg.n_train, cfg.image_size, cfg.seed, "train", self.device)
        self.train_x = normalise(x)
        x, self.val_y = render(cfg.n_val, cfg.image_size, cfg.seed, "val", self.device)
        self.val_x = normalise(x)

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
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
