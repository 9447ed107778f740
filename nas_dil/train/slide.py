"""Sliding-window inference: the logits of an image from overlapping windows, averaged where
they overlap (mmsegmentation's ``slide`` test mode).

Windows step by ``stride`` and the last one along an axis is shifted back to end at the
image's border (no image padding: every window is real pixels); each window's logits are
added into the full-size canvas at its place (mmseg pads them to the canvas) and the sum is
divided by how many windows cover each pixel. An image no larger than the window along an
axis is one window along it, so an image the window covers gives exactly the whole-image
logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["default_stride", "slide_logits", "windows"]


def default_stride(window: tuple[int, ...]) -> tuple[int, int]:
    """2/3 of the window, rounded up (mmseg's Cityscapes 769 / 513)."""
    return math.ceil(window[0] * 2 / 3), math.ceil(window[1] * 2 / 3)


def windows(size: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) of each window along an axis of ``size`` px."""
    if size <= window:
        return [(0, size)]
    n = math.ceil((size - window) / stride) + 1
    starts = [min(i * stride, size - window) for i in range(n)]
    return [(s, s + window) for s in starts]


def slide_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 window: tuple[int, ...], stride: tuple[int, ...] | None = None
                 ) -> torch.Tensor:
    """(B, C, H, W) float32 logits of images ``x`` (B, 3, H, W) from ``forward`` (logits at
    its input's size) on ``window`` [h, w] windows ``stride`` apart (default 2/3 window)."""
    sh, sw = stride if stride is not None else default_stride(window)
    h, w = x.shape[-2:]
    out: torch.Tensor | None = None
    count = torch.zeros(1, 1, h, w, device=x.device)
    for y0, y1 in windows(h, window[0], sh):
        for x0, x1 in windows(w, window[1], sw):
            logits = forward(x[..., y0:y1, x0:x1]).float()
            if out is None:
                out = torch.zeros(x.shape[0], logits.shape[1], h, w, device=x.device)
            out[..., y0:y1, x0:x1] += logits
            count[..., y0:y1, x0:x1] += 1
    assert out is not None  # at least one window per axis
    return out / count
