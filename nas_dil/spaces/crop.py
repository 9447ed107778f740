"""Dead taps and usable RF of candidates at a training crop: what a search asks before training.

Thin over ``nas_dil.schedule.crop``: a `Candidate` knows its stack (rates, per-axis rates,
smoothing, tail); the architecture fields that move taps (output_stride comes from the
candidate; backbone_stride, context, context_rates from the study's arch) pass as keywords,
so ``**ArchConfig.cost_kwargs()`` works as is (fields that move no tap are ignored).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from nas_dil.schedule.cost import conv_out_size
from nas_dil.schedule.crop import batch_crop, crop_fields, max_live_rate
from nas_dil.schedule.netcost import stem_plan
from nas_dil.spaces.candidate import Candidate

__all__ = ["CROP_FIELDS", "batch_candidate_crop", "candidate_crop_fields", "dead_fraction",
           "dead_tap_reason", "live_rate_cap"]

# the per-candidate numbers `batch_candidate_crop` returns (one array each)
CROP_FIELDS = ("dead_taps", "dead_taps_net", "rf_nominal", "rf_nominal_h", "rf_nominal_w",
               "rf_live_h", "rf_live_w", "rf_usable", "rf_usable_h", "rf_usable_w")


def _arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """The arch fields that move taps; the candidate's own output stride wins."""
    return {k: arch[k] for k in ("backbone_stride", "context", "context_rates") if k in arch}


def candidate_crop_fields(c: Candidate, h: int, w: int, **arch: Any) -> dict[str, Any]:
    """``crop_fields`` of one candidate on an h×w crop (plain JSON; see schedule/crop.py)."""
    return crop_fields(c.schedule, h, w, output_stride=c.output_stride, **_arch(arch))


def dead_tap_reason(fields: Mapping[str, Any]) -> str:
    """One line for an infeasible trial: which searched convs have dead taps, and why (the
    stack's; on a torchvision backbone the layers flagged ``searched``)."""
    h, w = fields["crop"]
    parts = []
    for d in fields["dead_layers"]:
        if not d.get("searched", d["name"].startswith("stack.")):
            continue
        dil = "×".join(map(str, dict.fromkeys(d["dilation"])))
        parts.append(f"{d['name']} (dilation {dil} on a {d['size_in'][0]}×{d['size_in'][1]} "
                     f"map: {d['dead']} of {d['kernel'][0] * d['kernel'][1]} taps)")
    return (f"{fields['dead_taps']} dead taps at {h}×{w} (they read only padding, so they "
            f"would never train): " + ", ".join(parts))


def batch_candidate_crop(cands: Sequence[Candidate], h: int, w: int,
                         **arch: Any) -> dict[str, np.ndarray]:
    """`CROP_FIELDS` for many candidates: one array per field, in ``cands``' order.

    Groups the candidates by (kernel, output stride, layers, smoothing) and scores each group
    with ``batch_crop``; equal to `candidate_crop_fields` element by element."""
    a = _arch(arch)
    n = len(cands)
    out = {f: np.zeros(n, dtype=np.int64) for f in CROP_FIELDS}
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, c in enumerate(cands):
        sm = tuple(c.schedule.smooth) or (False,) * c.n_layers
        groups.setdefault((c.kernel, c.output_stride, c.n_layers, sm), []).append(i)
    for (k, os_, _, sm), idx in groups.items():
        rows = np.asarray([cands[i].rates + cands[i].tail for i in idx], dtype=np.int64)
        rows_w = np.asarray([(cands[i].rates_w or cands[i].rates) + cands[i].tail for i in idx],
                            dtype=np.int64)
        b = batch_crop(rows, k, os_, h, w, rates_w=rows_w, smooth=sm, **a)
        sel = np.asarray(idx)
        for f in ("dead_taps", "dead_taps_net", "rf_nominal_h", "rf_nominal_w", "rf_live_h",
                  "rf_live_w", "rf_usable_h", "rf_usable_w"):
            out[f][sel] = getattr(b, f)
    out["rf_nominal"] = np.minimum(out["rf_nominal_h"], out["rf_nominal_w"])
    out["rf_usable"] = np.minimum(out["rf_usable_h"], out["rf_usable_w"])
    return out


def dead_fraction(cands: Iterable[Candidate], h: int, w: int, **arch: Any) -> float:
    """Share of ``cands`` with dead stack taps at h×w (for a "most of the space is dead"
    warning: score a draw of the space)."""
    cs = list(cands)
    if not cs:
        return 0.0
    return float((batch_candidate_crop(cs, h, w, **arch)["dead_taps"] > 0).mean())


def live_rate_cap(kernel: int, output_stride: int, h: int, w: int,
                  backbone_stride: int | None = None) -> tuple[int | None, int | None]:
    """(cap_h, cap_w): a stack at this output stride on an h×w crop has no dead tap iff every
    rate along the height is <= cap_h and along the width <= cap_w (None: no cap, K = 1).
    What a space needs to avoid dead taps: keep only rates (tails included) under the cap."""
    caps = []
    for side in (h, w):
        for st in stem_plan(output_stride, backbone_stride):
            side = conv_out_size(side, 3, st.stride, st.dilation)
        caps.append(max_live_rate(kernel, side))
    return caps[0], caps[1]
