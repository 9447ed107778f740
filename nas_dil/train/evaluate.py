"""Evaluate a trained net on a data set: mIoU, per-class IoU, pixel accuracy, with optional
multi-scale and flip test-time augmentation and sliding windows (what `nas-dil eval` runs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nas_dil.data import SegData
from nas_dil.train.config import TrialConfigError
from nas_dil.train.metrics import confusion_update, scores_from_confusion
from nas_dil.train.slide import default_stride, slide_logits

__all__ = ["evaluate_model", "parse_scales"]


def parse_scales(text: str) -> tuple[float, ...]:
    """'0.75,1,1.25' -> (0.75, 1.0, 1.25); one line naming the bad part otherwise."""
    parts = [p.strip() for p in text.split(",")]
    out = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise TrialConfigError(f"--scales {text!r}: {p!r} is not a number") from None
        if not 0.1 <= v <= 4.0:
            raise TrialConfigError(f"--scales {text!r}: {v} is outside [0.1, 4]")
        out.append(v)
    return tuple(out)


@torch.no_grad()
def evaluate_model(model: nn.Module, data: SegData, *, device: torch.device,
                   scales: Sequence[float] = (1.0,), flip: bool = False, batch_size: int = 8,
                   autocast: bool = False, slide: tuple[int, int] | None = None,
                   stride: tuple[int, int] | None = None,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Scores over data's val split. Each scale's logits (the image resized by it, logits
    back at full size) and, with flip, those of the mirrored image are averaged as
    probabilities; with ``slide`` [h, w] each comes from sliding windows ``stride`` apart
    (`slide.slide_logits`: logits averaged where windows overlap); `progress(n_images)` after
    each batch."""
    model.eval()
    c = data.num_classes
    conf = torch.zeros(c, c, dtype=torch.int64, device=device)
    n_images = 0

    def run(x: torch.Tensor) -> torch.Tensor:
        return model(x) if slide is None else slide_logits(model, x, slide, stride)

    for images, masks in data.val_batches(batch_size):
        h, w = images.shape[-2:]
        prob = torch.zeros(images.shape[0], c, h, w, device=device)
        for s in scales:
            x = images if s == 1.0 else F.interpolate(
                images, size=(max(8, round(h * s)), max(8, round(w * s))), mode="bilinear",
                align_corners=False)
            for mirrored in ((False, True) if flip else (False,)):
                xi = x.flip(-1) if mirrored else x
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = run(xi).float()
                if mirrored:
                    logits = logits.flip(-1)
                if logits.shape[-2:] != (h, w):
                    logits = F.interpolate(logits, size=(h, w), mode="bilinear",
                                           align_corners=False)
                prob += logits.softmax(1)
        confusion_update(conf, prob.argmax(1), masks, data.ignore_index)
        n_images += images.shape[0]
        if progress is not None:
            progress(images.shape[0])
    scores = scores_from_confusion(conf.cpu().numpy())
    return {**scores, "images": n_images, "scales": list(scales), "flip": flip,
            "slide": None if slide is None else {
                "window": list(slide), "stride": list(stride or default_stride(slide))},
            "class_names": list(data.class_names)}
