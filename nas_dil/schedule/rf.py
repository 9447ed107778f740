"""Receptive field of a dilated stack, per layer and total, with strides (jumps).

RF = 1 + Σ_i (K_i - 1) · r_i · J_i, with J_i the product of the strides of all earlier
layers. Values are per axis, in the stack's input pixels unless a function says otherwise.
"""

from __future__ import annotations

import numpy as np

from nas_dil.schedule.types import Schedule

__all__ = [
    "effective_rates",
    "jumps",
    "layer_spans",
    "receptive_field",
    "rf_hw",
    "rf_in_image",
    "rf_per_layer",
    "total_stride",
]


def jumps(s: Schedule) -> np.ndarray:
    """J_i: distance in stack-input pixels between neighbouring units entering layer i."""
    strides = np.asarray(s.strides, dtype=np.int64)
    return np.concatenate(([1], np.cumprod(strides)[:-1])).astype(np.int64)


def effective_rates(s: Schedule) -> np.ndarray:
    """r_i · J_i: each layer's tap spacing measured in stack-input pixels."""
    return np.asarray(s.rates, dtype=np.int64) * jumps(s)


def layer_spans(s: Schedule) -> np.ndarray:
    """What each layer adds to the RF along the height: (K-1)·r·J, plus 2(r-1)·J for a
    smoothed layer (its (2r-1)-wide pre-filter). ``s.axis("w")`` gives the width's."""
    k = np.asarray(s.kernels, dtype=np.int64)
    r = np.asarray(s.rates, dtype=np.int64)
    pre = np.asarray([2 * (r_i - 1) if s.smoothed(i) else 0 for i, r_i in enumerate(s.rates)],
                     dtype=np.int64)
    return ((k - 1) * r + pre) * jumps(s)


def rf_per_layer(s: Schedule) -> np.ndarray:
    """RF after each layer (along the height, stack-input pixels)."""
    return 1 + np.cumsum(layer_spans(s))


def receptive_field(s: Schedule) -> int:
    """RF along the height; equal on both axes unless ``s.rates_w`` is set (see `rf_hw`)."""
    return int(rf_per_layer(s)[-1])


def rf_hw(s: Schedule) -> tuple[int, int]:
    """RF along (height, width)."""
    return receptive_field(s), receptive_field(s.axis("w"))


def total_stride(s: Schedule) -> int:
    return int(np.prod(np.asarray(s.strides, dtype=np.int64)))


def rf_in_image(stack_rf: int, stem_stride: int, stem_rf: int) -> int:
    """RF in image pixels of a stack that sits on a stem of output stride ``stem_stride``.

    The stack's input pixels are ``stem_stride`` image pixels apart and each already sees
    ``stem_rf`` image pixels, so RF_img = stem_rf + (stack_rf - 1) · stem_stride.
    """
    if stack_rf < 1 or stem_stride < 1 or stem_rf < 1:
        raise ValueError(f"{stack_rf=}, {stem_stride=}, {stem_rf=}: all must be >= 1")
    return int(stem_rf + (stack_rf - 1) * stem_stride)
