"""Everything known about a net before training: one function for one net, one for many.

`analytic_attrs(schedule, arch, image_size)` is what the search stores on every trial (plain
JSON), the trial reports and the export certifies; it is `nas_dil.schedule.analyze` of the
stack plus the whole net's cost and RF (`nas_dil.schedule.net_cost`). `analytic_batch` gives
the same numbers as columns for many candidates at once (the hvi sampler's pool, the search's
objective ranges), from the vectorised `score_batch`, `batch_hdc` and `batch_net_cost`.

Keys (units: `nas_dil.schedule.netcost`): ``rf`` the whole net's *usable* RF at the training
crop (image px, the smaller axis: what the trained net can use, never more than the crop; the
search's ``rf`` objective), ``rf_nominal`` its RF by the formula, ``rf_usable_h/w``,
``rf_nominal_h/w`` per axis, ``dead_taps`` the stack's taps that read only padding at the crop
(they never train; ``dead_taps_net`` every conv's; ``dead_layers`` which, not in the batch
form); definitions in docs/theory.md and `nas_dil.schedule.crop`. ``rf_stack`` RF of the
dilated stack alone, ``holes`` / ``coverage`` / ``gridding_free`` of the
stack's 2-D coverage, ``hdc_rule1`` rule 1 on the whole schedule, ``hdc_rule1_groups`` rule 1
within every sawtooth group, ``hdc_rule2``, ``hdc_rule3``, ``hdc`` (rules 1 per group, 2, 3),
``m`` (M_1 … M_n; not in the batch form: rows differ in length), ``macs`` / ``flops`` (2·macs) /
``gflops`` (flops / 1e9) per image at the crop, ``params``; ``erf`` the whole net's effective RF
(image px: the side of the smallest centred window holding 95 % of the count map's path mass,
dead taps at the crop removed; `nas_dil.schedule.erf`). Pure numpy (no torch).

On a torchvision backbone (``arch.backbone != "stem"``) the same keys come from the net's
stored layer table (`_backbone_attrs`; ``nas_dil.models.tables``): the "stack" is then the
*searched part* (the targeted blocks and/or the head stack) and ``dead_taps`` its convs'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from nas_dil.models.config import ArchConfig, ArchTemplate, Place
from nas_dil.models.tables import backbone_table, candidate_schedule, net_table, searched_rows
from nas_dil.schedule import (
    Schedule,
    ScheduleError,
    analyze,
    batch_hdc,
    batch_net_cost,
    hdc_report,
    net_cost,
    score_batch,
)
from nas_dil.schedule.crop import crop_fields
from nas_dil.schedule.erf import batch_erf, net_erf, table_erf
from nas_dil.schedule.layertable import (
    IMAGE,
    dead_taps,
    op_sizes,
    sub_table,
    table_cost,
    table_coverage,
    table_rf,
    usable_rf,
)
from nas_dil.spaces import Candidate, batch_candidate_crop, stem_map

__all__ = ["BATCH_KEYS", "analytic_attrs", "analytic_batch", "image_hw", "stack_maps",
           "trial_schedule"]

# the crop facts (nas_dil.schedule.crop) stored as they are; "rf" is their rf_usable
_CROP_SCALAR = ("rf_nominal_h", "rf_nominal_w", "rf_usable_h", "rf_usable_w", "dead_taps",
                "dead_taps_net")
BATCH_KEYS = ("rf", "rf_nominal", *_CROP_SCALAR, "rf_stack", "holes", "coverage",
              "gridding_free", "hdc_rule1", "hdc_rule1_groups", "hdc_rule2", "hdc_rule3", "hdc",
              "macs", "flops", "gflops", "params", "erf")
# `analytic_batch`'s columns: every key of `analytic_attrs` but the lists ``m``, ``dead_layers``


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(h, w) of a side or an [h, w] pair (a data config's ``image_size``)."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def trial_schedule(cand: Candidate, arch: ArchConfig) -> Schedule:
    """The schedule a trial of ``cand`` builds in ``arch``: the candidate's stack for the stem
    net; on a torchvision backbone its rates as ``arch.target`` reads them, the targeted
    blocks with their own kernels and the head's layers with ``cand.kernel``."""
    if arch.backbone == "stem":
        return cand.schedule
    if not cand.plain:
        raise ScheduleError(f"candidate {cand.key()}: per-axis rates, smoothing and tails are "
                            "for the stem net, not a torchvision backbone")
    return candidate_schedule(cand.rates, cand.kernel, arch)


def _template(arch: Mapping[str, Any]) -> tuple[ArchTemplate, int]:
    """A study's ``[arch]`` (an `ArchTemplate` or its table), plus an optional
    ``num_classes``: the template and the number of classes (ArchConfig's default if none)."""
    n = int(arch.get("num_classes", ArchConfig.num_classes))
    if isinstance(arch, ArchTemplate):
        return arch, n
    return ArchTemplate.of({k: v for k, v in arch.items() if k != "num_classes"}), n


def stack_maps(arch: Mapping[str, Any], output_strides: Sequence[int],
               image_size: int | Sequence[int]) -> dict[int, tuple[int, int]]:
    """(h, w) of the searched stack's feature map at the crop, per output stride: what
    `nas_dil.spaces.Space.live` needs to keep only candidates whose taps land on the image.
    ``arch``: a study's ``[arch]`` (output_stride and width come from the space)."""
    h, w = image_hw(image_size)
    arch = _template(arch)[0]
    backbone = arch.backbone
    if backbone == "stem":
        return {int(o): stem_map(int(o), h, w, arch.value("backbone_stride"))
                for o in output_strides}
    if arch.target != "head":  # the blocks keep their own kernels: per net
        raise ValueError(f"target={arch.target!r}: a space avoids dead taps of a head "
                         "stack only; dead block taps are refused at ask time instead")
    return {int(o): op_sizes(backbone_table(backbone, int(o)), h, w)[-1]
            for o in output_strides}


def _crop_arch(arch: ArchConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The arch fields that move taps (nas_dil.schedule.crop.crop_fields' ``arch``)."""
    get = arch.get if isinstance(arch, Mapping) else lambda k: getattr(arch, k)
    return {"output_stride": get("output_stride"), "backbone_stride": get("backbone_stride"),
            "context": bool(get("context")),
            "context_rates": tuple(get("context_rates") or ())}


def analytic_attrs(schedule: Schedule, arch: ArchConfig,
                   image_size: int | tuple[int, int]) -> dict[str, Any]:
    """Everything known before training the net (``schedule`` stack in ``arch``) on
    ``image_size`` (a side, or (h, w)) images, as plain JSON (keys: module docstring).

    On a torchvision backbone ``schedule`` is the full rate list ``arch.target`` reads
    (``tables.split_schedule``: a Schedule with the targeted blocks' kernels first, or a
    rate list) and every number comes from the net's layer table (`_backbone_attrs`)."""
    h, w = image_hw(image_size)
    if arch.backbone != "stem":
        return _backbone_attrs(schedule, arch, h, w)
    a = analyze(schedule)
    cost = net_cost(h, w, schedule, **arch.cost_kwargs())  # the Schedule: smoothing counts
    crop = crop_fields(schedule, h, w, **_crop_arch(arch))
    return {
        "rf": crop["rf_usable"],  # the objective: what the net can use at the training crop
        "rf_nominal": cost.rf_image,
        **{k: crop[k] for k in _CROP_SCALAR},
        "dead_layers": crop["dead_layers"],
        "rf_stack": a["rf"],
        "holes": a["holes"],
        "coverage": a["coverage"],
        "gridding_free": a["gridding_free"],
        "hdc_rule1": a["hdc_rule1"],
        "hdc_rule1_groups": a["hdc_rule1_groups"],
        "hdc_rule2": a["hdc_rule2"],
        "hdc_rule3": a["hdc_rule3"],
        "hdc": a["hdc"],
        "m": a["m"],
        "macs": cost.macs,
        "flops": cost.flops,
        "gflops": cost.flops / 1e9,
        "params": cost.params,
        "erf": net_erf(schedule, h, w, **_crop_arch(arch), residual=arch.residual),
    }


def _backbone_attrs(schedule: Schedule | Sequence[int], arch: ArchConfig, h: int,
                    w: int) -> dict[str, Any]:
    """`analytic_attrs` of a net on a torchvision backbone, from its stored layer table.

    The *searched part* is the rows from the first targeted block (target "backbone" or
    "both") or the 1×1 reduce (target "head") to the last stack layer or targeted block;
    its coverage (``rf_stack``, ``holes``, …) is nominal, in its own input pixels, with the
    residual identity paths the net has. ``dead_taps`` counts the searched convs' dead 2-D
    taps (the stack's and the targeted blocks' K>1 convs), ``dead_taps_net`` every conv's;
    ``dead_layers`` lists every conv with a dead tap (``searched`` says which). HDC fields
    are those of the full rate list.
    """
    table, s = net_table(schedule, arch)
    cost = table_cost(table, h, w)
    nominal = table_rf(table)  # square kernels, strides, dilations: the same on both axes
    use_h = usable_rf(table, h)
    use_w = use_h if w == h else usable_rf(table, w)
    dead_h = dead_taps(table, h)
    dead_w = dead_h if w == h else dead_taps(table, w)
    sizes = op_sizes(table, h, w)
    rows, searched = searched_rows(table, arch)
    layers: list[dict[str, Any]] = []
    dead_all = dead_searched = 0
    for op in table.convs():
        dh, dw = dead_h.get(op.name, ()), dead_w.get(op.name, ())
        if not (dh or dw):
            continue
        k = op.kernel
        dead = k * k - (k - len(dh)) * (k - len(dw))
        j = op.inputs[0]
        size_in = (h, w) if j == IMAGE else sizes[j]
        layers.append({
            "name": op.name, "kernel": [k, k], "dilation": [op.dilation] * 2,
            "stride": op.stride, "size_in": list(size_in),
            # offsets in the conv's input px, as nas_dil.schedule.crop.TapReport has them
            "dead_h": [i * op.dilation - op.padding for i in dh],
            "dead_w": [i * op.dilation - op.padding for i in dw],
            "dead": dead, "searched": op.name in searched})
        dead_all += dead
        dead_searched += dead if op.name in searched else 0
    cov = table_coverage(sub_table(table, rows))
    hdc = hdc_report(list(s.rates), kernel=s.kernels[0])  # as `analyze` has it
    return {
        "rf": min(use_h, use_w),
        "rf_nominal": nominal,
        "rf_nominal_h": nominal, "rf_nominal_w": nominal,
        "rf_usable_h": use_h, "rf_usable_w": use_w,
        "dead_taps": dead_searched, "dead_taps_net": dead_all,
        "dead_layers": layers,
        "rf_stack": cov.rf,
        "holes": cov.holes,
        "coverage": cov.coverage,
        "gridding_free": cov.gridding_free,
        "hdc_rule1": bool(hdc.rule1.passed),
        "hdc_rule1_groups": bool(hdc.rule1_groups.passed),
        "hdc_rule2": bool(hdc.rule2.passed),
        "hdc_rule3": bool(hdc.rule3.passed),
        "hdc": bool(hdc.passed),
        "m": [int(x) for x in hdc.m],
        "macs": cost.macs,
        "flops": cost.flops,
        "gflops": cost.flops / 1e9,
        "params": cost.params,
        "erf": table_erf(table, h, w),
    }


def analytic_batch(cands: Sequence[Candidate], arch: Mapping[str, Any],
                   image_size: int | Sequence[int]) -> dict[str, np.ndarray]:
    """`analytic_attrs` of every candidate as columns (`BATCH_KEYS`, one row per candidate,
    equal to the scalar values): candidate ``c`` is the net ``ArchTemplate.at(c,
    num_classes)`` with stack ``c.schedule``; each (output_stride, width) pair is validated
    as `ArchConfig`.

    ``arch``: a study's ``[arch]`` (an `ArchTemplate` or its table) plus ``num_classes``.
    """
    h, w = image_hw(image_size)
    tmpl, num_classes = _template(arch)
    return _analytic_batch(cands, tmpl, num_classes, (h, w))


def _analytic_batch(cands: Sequence[Candidate], arch: ArchTemplate, num_classes: int,
                    hw: tuple[int, int]) -> dict[str, np.ndarray]:
    h, w = hw
    if arch.backbone != "stem":
        return _backbone_batch(cands, arch, num_classes, (h, w))
    plain = [i for i, c in enumerate(cands) if c.plain]
    if len(plain) < len(cands):
        # degridding candidates (per-axis rates, smoothing, tails) are scored one by one; the
        # vectorised stack code below knows square, unsmoothed K×K layers only
        out = _batch_of_plain([cands[i] for i in plain], arch, num_classes, (h, w))
        full = {k: np.zeros(len(cands), dtype=v.dtype) for k, v in out.items()}
        for k in full:
            full[k][plain] = out[k]
        for i, c in enumerate(cands):
            if not c.plain:
                one = analytic_attrs(c.schedule, arch.at(c, num_classes), (h, w))
                for k in full:
                    full[k][i] = one[k]
        return full
    return _batch_of_plain(cands, arch, num_classes, (h, w))


def _batch_of_plain(cands: Sequence[Candidate], arch: ArchTemplate, num_classes: int,
                    hw: tuple[int, int]) -> dict[str, np.ndarray]:
    h, w = hw
    n = len(cands)
    out: dict[str, np.ndarray] = {
        "rf_stack": np.zeros(n, dtype=np.int64),
        "holes": np.zeros(n, dtype=np.int64), "coverage": np.zeros(n),
        **{k: np.zeros(n, dtype=bool) for k in ("gridding_free", "hdc_rule1",
                                               "hdc_rule1_groups", "hdc_rule2", "hdc_rule3",
                                               "hdc")}}
    if n == 0:
        out.update(macs=np.zeros(0, dtype=np.int64), params=np.zeros(0, dtype=np.int64))
        out.update(flops=out["macs"], gflops=np.zeros(0), rf=np.zeros(0, dtype=np.int64),
                   rf_nominal=np.zeros(0, dtype=np.int64), erf=np.zeros(0, dtype=np.int64),
                   **{k: np.zeros(0, dtype=np.int64) for k in _CROP_SCALAR})
        return {k: out[k] for k in BATCH_KEYS}
    os_ = np.array([c.output_stride for c in cands], dtype=np.int64)
    width = np.array([c.width for c in cands], dtype=np.int64)
    depth = np.array([c.depth for c in cands], dtype=np.int64)
    kernel = np.array([c.kernel for c in cands], dtype=np.int64)
    # the net around the stack, per (output_stride, width): validated like a trial's arch
    nets = {(o, wd): arch.at(Place(o, wd), num_classes)
            for o, wd in dict.fromkeys(zip(os_.tolist(), width.tolist(), strict=True))}
    base = next(iter(nets.values()))
    bs = np.array([nets[o, wd].backbone_stride for o, wd in zip(os_.tolist(), width.tolist(),
                                                                 strict=True)], dtype=np.int64)
    # the schedule facts, per (depth, kernel) group (the vectorised code wants equal rows)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(cands):
        groups.setdefault((c.depth, c.kernel), []).append(i)
    for (_, k), rows in groups.items():
        idx = np.array(rows)
        rates = np.array([cands[i].rates for i in rows], dtype=np.int64)
        sc, hdc = score_batch(rates, k), batch_hdc(rates, k)
        out["rf_stack"][idx], out["holes"][idx] = sc.rf, sc.holes
        out["coverage"][idx], out["gridding_free"][idx] = sc.coverage, sc.gridding_free
        out["hdc_rule1"][idx], out["hdc_rule1_groups"][idx] = hdc.rule1, hdc.rule1_groups
        out["hdc_rule2"][idx], out["hdc_rule3"][idx] = hdc.rule2, hdc.rule3
        out["hdc"][idx] = hdc.passed
    # the crop facts per net around the stack (its backbone stride follows the output stride)
    # (crop_fields' nominal RF is the formula's: the whole net's RF as net_cost has it)
    for col in ("rf", "rf_nominal", "erf", *_CROP_SCALAR):
        out[col] = np.zeros(n, dtype=np.int64)
    by_net: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(cands):
        by_net.setdefault((c.output_stride, c.width), []).append(i)
    for key, rows in by_net.items():
        crop = batch_candidate_crop([cands[i] for i in rows], h, w, **_crop_arch(nets[key]))
        for col in _CROP_SCALAR:
            out[col][rows] = crop[col]
        out["rf"][rows] = crop["rf_usable"]
        out["rf_nominal"][rows] = crop["rf_nominal"]
        net = nets[key]
        by_stack: dict[tuple[int, int], list[int]] = {}
        for i in rows:
            by_stack.setdefault((cands[i].depth, cands[i].kernel), []).append(i)
        for (_, k), sel in by_stack.items():
            out["erf"][sel] = batch_erf(np.array([cands[i].rates for i in sel]), k, key[0], h, w,
                                        **{a: v for a, v in _crop_arch(net).items()
                                           if a != "output_stride"}, residual=net.residual)
    cost = batch_net_cost(h, w, os_, width, depth, kernel,
                          stem_width=base.stem_width, in_channels=base.in_channels,
                          num_classes=base.num_classes, backbone_stride=bs, norm=base.norm,
                          context=base.context, context_rates=base.context_rates)
    out["macs"], out["params"], out["flops"] = cost.macs, cost.params, cost.flops
    out["gflops"] = cost.flops / 1e9
    return {k: out[k] for k in BATCH_KEYS}


def _backbone_batch(cands: Sequence[Candidate], arch: ArchTemplate, num_classes: int,
                    hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """`analytic_batch` on a torchvision backbone: one `analytic_attrs` per distinct net.

    Not vectorised: a layer table's support is a walk over a DAG of 60-350 rows whose
    dilations each candidate changes (10-50 ms per net, docs/theory.md); rows are cached
    across calls (`_backbone_row`), so a sampler re-scoring its pool pays once."""
    types = {"coverage": float, "gflops": float, "gridding_free": bool, "hdc_rule1": bool,
             "hdc_rule1_groups": bool, "hdc_rule2": bool, "hdc_rule3": bool, "hdc": bool}
    out = {k: np.zeros(len(cands), dtype=types.get(k, np.int64)) for k in BATCH_KEYS}
    for i, c in enumerate(cands):
        row = _backbone_row(c, arch, num_classes, hw)
        for k, v in zip(BATCH_KEYS, row, strict=True):
            out[k][i] = v
    return out


@lru_cache(maxsize=8192)
def _backbone_row(c: Candidate, arch: ArchTemplate, num_classes: int,
                  hw: tuple[int, int]) -> tuple[Any, ...]:
    a = arch.at(c, num_classes)
    one = analytic_attrs(trial_schedule(c, a), a, hw)
    return tuple(one[k] for k in BATCH_KEYS)
