"""Baselines (named seed schedules) as candidates."""

from __future__ import annotations

from nas_dil.search.config import BaselineConfig
from nas_dil.spaces import Candidate, Space

__all__ = ["baseline_candidate"]


def baseline_candidate(b: BaselineConfig, space: Space) -> Candidate:
    """The baseline's rates with its kernel / output stride / width, else the space's first
    choices (kernel 3 when the space allows it)."""
    cfg = space.config
    kernel = b.kernel or (3 if 3 in cfg.kernel else cfg.kernel[0])
    return Candidate(b.rates, kernel, b.output_stride or cfg.output_stride[0],
                     b.width or cfg.width[0])
