"""Compute the report: `build_report(study) -> ReportData`, plain dataclasses, no drawing.

Everything a figure or table shows is in ``ReportData``; ``render`` only draws it. Trials are
read once, decoded (`StudySource.trials`: `nas_dil.search.records.StoredTrial`, feasible by
Optuna's stored constraints, values <= 0), and the looks at one candidate (``[sampler]
repeats``) merged into one `CandidateResult` (`nas_dil.search.looks`).

- Pareto front: `looks.feasible_front`, the non-dominated feasible candidates over the study's
  objectives; the knee is marked on it. The knee is never a trial
  with dead taps at its training crop (taps that read only padding: they never trained;
  ``knee_trial``); when every front trial has some there is no knee, and a note says why.
- The Pareto table (``ParetoTable``): each objective once (marked with its direction), the
  RF as usable / nominal px and both over the crop, the crop, the dead taps.
- Scatters: every COMPLETE trial, mIoU vs GFLOPs coloured by RF, and mIoU vs RF; each point
  flagged Pareto / baseline / feasible.
- Hypervolume after each trial (feasible COMPLETE trials so far) with its reference point.
- mIoU curves per evaluation of COMPLETE and PRUNED trials (pruned ones flagged).
- One coverage count map per Pareto schedule (``coverage_plot.coverage_map_data``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from nas_dil.errors import UserError
from nas_dil.pareto import (
    REFERENCE,
    hypervolume,
    hypervolume_series,
    knee_index,
    reference_point,
    signs,
    to_losses,
)
from nas_dil.report.coverage_plot import CoverageMapData, coverage_map_data
from nas_dil.report.pareto_table import Column, ParetoRow, ParetoTable, pareto_table
from nas_dil.report.source import Objective, StudySource, open_study
from nas_dil.search.looks import CandidateResult, feasible_front, merge_looks
from nas_dil.search.records import StoredTrial, StudyMeta, TrialRecord, as_number

if TYPE_CHECKING:
    import optuna

__all__ = [
    "Column",
    "CurveData",
    "HeatMap",
    "HypervolumeData",
    "NoCompleteTrialError",
    "ParetoRow",
    "ParetoTable",
    "ReportData",
    "ScatterData",
    "build_report",
    "knee_trial",
    "pareto_table",
]


class NoCompleteTrialError(UserError, ValueError):
    """The study has no trial to report on (empty, or nothing COMPLETE)."""


@dataclass(frozen=True)
class ScatterData:
    """One scatter of COMPLETE trials; lists are parallel."""

    name: str  # file stem, e.g. "miou_vs_gflops"
    title: str
    x_label: str
    y_label: str
    color_label: str | None
    x: list[float]
    y: list[float]
    color: list[float] | None
    numbers: list[int]
    labels: list[str]  # hover text
    pareto: list[bool]
    feasible: list[bool]
    baseline: list[str | None]
    knee: list[bool]
    dead: list[bool]  # dead taps at the training crop (never trained)
    x_mark: tuple[float, str] | None = None  # a vertical line: (x, label), e.g. the crop side


@dataclass(frozen=True)
class HypervolumeData:
    numbers: list[int]  # trial numbers in order
    values: list[float]  # hypervolume of the feasible COMPLETE trials up to each number
    normalized: list[float]  # values / volume of the ideal–reference box
    objectives: list[str]
    directions: list[str]
    reference_point: list[float]  # study orientation
    ideal_point: list[float]
    rule: str  # how the reference point was chosen, one line


@dataclass(frozen=True)
class CurveData:
    number: int
    state: str  # "COMPLETE" or "PRUNED"
    miou: list[float]  # after each evaluation (epoch)
    label: str
    pareto: bool
    baseline: str | None


@dataclass(frozen=True)
class HeatMap:
    number: int
    schedule: str
    data: CoverageMapData


@dataclass(frozen=True)
class ReportData:
    study_name: str
    objectives: list[Objective]
    meta: dict[str, Any]  # the "nas_dil" study attr (version, data, space, …)
    n_trials: int
    states: dict[str, int]  # state name -> count
    n_feasible: int  # COMPLETE and feasible
    pareto: list[ParetoRow]  # sorted by the first objective, best first
    knee: int | None  # trial number of the knee
    knee_rule: str
    knee_note: str | None  # front trials left out of the knee (dead taps), or why none
    table: ParetoTable  # the Pareto table as shown (rows parallel to ``pareto``)
    scatters: list[ScatterData]
    hypervolume: HypervolumeData | None  # None when no trial is feasible
    curves: list[CurveData]
    heatmaps: list[HeatMap]
    baselines: dict[str, int] = field(default_factory=dict)  # name -> trial number
    dead_taps: dict[int, int] = field(default_factory=dict)  # COMPLETE trial -> its dead taps


KNEE_RULE = ("knee: each objective normalised to [0, 1] over the Pareto trials without dead "
             "taps (1 = best), the point closest to the utopia point (1, …, 1)")


def _with_dead(front: Sequence[CandidateResult]) -> str:
    return ", ".join(f"#{r.number} ({r.record.dead_taps})" for r in front)


def knee_trial(front: Sequence[CandidateResult], objectives: Sequence[Objective]
               ) -> tuple[CandidateResult | None, str | None]:
    """(the knee, a note) of a Pareto front: `knee_index` over the front candidates whose taps
    all trained (no dead taps at the crop), normalised over those. The note names the front
    trials left out; with none left the knee is None and the note says so in one line."""
    if not front:
        return None, None
    live = [r for r in front if r.record.dead_taps == 0]
    dead = [r for r in front if r.record.dead_taps > 0]
    if not live:
        return None, (f"no knee: every Pareto trial had dead taps at its training crop (taps "
                      f"that read only padding never trained): {_with_dead(dead)}")
    dirs = [o.direction for o in objectives]
    k = live[knee_index(to_losses([r.values or () for r in live], dirs))]
    note = None if not dead else (
        f"not the knee, dead taps at the training crop (they never trained): {_with_dead(dead)}")
    return k, note


def _label(number: int, rec: TrialRecord, looks: int = 1) -> str:
    rates, k, os_, w = rec.schedule_facts()
    tail = f" ({rec.baseline})" if rec.baseline else ""
    dead = f", {rec.dead_taps} dead taps" if rec.dead_taps else ""
    seeds = f", mIoU mean of {looks} seeds" if looks > 1 else ""
    return f"#{number} [{rates}] K{k} OS{os_} w{w}{tail}{dead}{seeds}"


def _heatmap(r: CandidateResult) -> HeatMap | None:
    from nas_dil.spaces import Candidate

    if not isinstance(r.record.candidate, dict):
        return None
    try:
        cand = Candidate.from_dict(r.record.candidate)
    except (KeyError, UserError):
        return None
    return HeatMap(r.number, ",".join(map(str, cand.rates)), coverage_map_data(cand.schedule))


def _pareto_row(r: CandidateResult, objectives: Sequence[Objective], knee: bool,
                fallback_crop: object = None) -> ParetoRow:
    rec = r.record
    rates, k, os_, w = rec.schedule_facts()
    rf = rec.rf_facts(fallback_crop)
    return ParetoRow(
        number=r.number, schedule=rates, kernel=k, output_stride=os_, width=w,
        values={o.name: float(v) for o, v in zip(objectives, r.values or (), strict=True)},
        rf=r.number_of("rf", objectives), rf_usable=rf.usable, rf_nominal=rf.nominal,
        crop=rf.crop, dead_taps=rf.dead_taps, dead_layers=rf.dead_layers,
        rf_stack=r.number_of("rf_stack"),
        holes=rec.integer("holes"), coverage=r.number_of("coverage"),
        gridding_free=rec.flag("gridding_free"),
        gflops=r.number_of("gflops", objectives), params=rec.integer("params"),
        miou=r.number_of("miou", objectives),
        hdc_rule1=rec.flag("hdc_rule1"), hdc_rule1_groups=rec.flag("hdc_rule1_groups"),
        hdc_rule2=rec.flag("hdc_rule2"), hdc_rule3=rec.flag("hdc_rule3"), hdc=rec.flag("hdc"),
        baseline=rec.baseline or None, knee=knee,
        weights=rec.weights if isinstance(rec.weights, str) else None,
        looks=r.n_looks if r.n_looks > 1 else None, miou_std=as_number(r.std.get("miou")),
    )


def _scatter(name: str, title: str, x_key: str, x_label: str, color_key: str | None,
             points: Sequence[CandidateResult], objectives: Sequence[Objective],
             front: set[int], knee: int | None, color_label: str | None = None) -> ScatterData:
    rows = []
    for r in points:
        x, y = r.number_of(x_key, objectives), r.number_of("miou", objectives)
        if x is None or y is None:
            continue
        c = r.number_of(color_key, objectives) if color_key else None
        rows.append((r, x, y, c))
    colors = [c for *_, c in rows]
    return ScatterData(
        name=name, title=title, x_label=x_label, y_label="mIoU",
        color_label=color_label if color_key else None,
        x=[x for _, x, _, _ in rows], y=[y for _, _, y, _ in rows],
        color=[float("nan") if c is None else c for c in colors] if color_key else None,
        numbers=[r.number for r, *_ in rows],
        labels=[_label(r.number, r.record, r.n_looks) for r, *_ in rows],
        pareto=[r.number in front for r, *_ in rows],
        feasible=[r.feasible for r, *_ in rows],
        baseline=[r.record.baseline or None for r, *_ in rows],
        knee=[r.number == knee for r, *_ in rows],
        dead=[r.record.dead_taps > 0 for r, *_ in rows],
    )


def _crop_mark(trials: Sequence[StoredTrial], fallback: object) -> tuple[float, str] | None:
    """The crop's smaller side when every trial trained on the same crop (no RF can use
    more), as an x mark for the RF scatter."""
    crops = {t.record.rf_facts(fallback).crop for t in trials}
    crop = crops.pop() if len(crops) == 1 else None
    if crop is None:
        return None
    h, w = crop
    return float(min(h, w)), f"training crop {h}×{w} px (the usable RF's limit)"


def _curve(t: StoredTrial, front: set[int]) -> CurveData | None:
    curve = t.record.result.get("miou_curve")
    if not isinstance(curve, list) or not curve:
        if not t.intermediate:
            return None
        curve = list(t.intermediate)
    vals = [float(v) for v in curve if isinstance(v, int | float) and not isinstance(v, bool)]
    if not vals:
        return None
    return CurveData(t.number, t.state.upper(), vals, _label(t.number, t.record),
                     t.number in front, t.record.baseline or None)


def _space_reference(objectives: Sequence[Objective],
                     meta: StudyMeta) -> tuple[np.ndarray, float] | None:
    """The search's own reference point, from the ranges it stored (None if absent).

    The search normalises each objective over the whole space (best → 0, worst → 1) and puts
    the reference at 1.1; in the study's units that is best + 1.1·(worst − best), and dividing
    by the product of the ranges gives the very figure its progress line shows.
    """
    hv = meta.hypervolume
    ranges = hv.get("ranges")
    if not isinstance(ranges, dict) or any(o.name not in ranges for o in objectives):
        return None
    best = np.array([float(ranges[o.name]["best"]) for o in objectives])
    worst = np.array([float(ranges[o.name]["worst"]) for o in objectives])
    unit = float(np.prod(np.abs(worst - best)))
    if unit <= 0:  # an objective that cannot vary: no space-wide box
        return None
    return best + float(hv.get("reference", REFERENCE)) * (worst - best), unit


def _hypervolume(complete: Sequence[StoredTrial], objectives: Sequence[Objective],
                 ref: Sequence[float] | None,
                 meta: StudyMeta | None = None) -> HypervolumeData | None:
    feas = [t for t in complete if t.feasible]
    if not feas:
        return None
    dirs = [o.direction for o in objectives]
    sg = signs(dirs)
    vals = np.array([t.values for t in feas], dtype=np.float64)
    space_ref = _space_reference(objectives, meta or StudyMeta()) if ref is None else None
    unit: float | None = None
    if space_ref is not None:
        ref_arr, unit = space_ref
        rule = ("reference point: per objective, the worst value over the search space pushed "
                "10 % of its range further (as the search's progress line; normalised = "
                "hypervolume / product of the ranges)")
    elif ref is None:
        ref_arr = reference_point(to_losses(vals, dirs)) * sg
        rule = ("reference point: per objective, the worst feasible value pushed 10 % of the "
                "range further")
    else:
        ref_arr = np.asarray(ref, dtype=np.float64)
        if ref_arr.shape != (len(objectives),):
            raise UserError(f"reference point {list(ref)}: need {len(objectives)} values")
        rule = "reference point: given"
    ideal = (vals * sg).min(axis=0) * sg
    box = unit or float(np.prod(np.maximum((ref_arr - ideal) * sg, 0.0)))
    ordered = sorted(complete, key=lambda t: t.number)
    if any(t.record.look_of for t in ordered):  # repeats: each prefix merged
        series = []
        for k in range(1, len(ordered) + 1):
            seen = [r.values or () for r in merge_looks(ordered[:k], objectives) if r.feasible]
            series.append(hypervolume(to_losses(seen, dirs), ref_arr * sg) if seen else 0.0)
    else:
        series = hypervolume_series(to_losses([t.values or () for t in ordered], dirs),
                                    ref_arr * sg, include=[t.feasible for t in ordered])
    return HypervolumeData(
        numbers=[t.number for t in ordered], values=series,
        normalized=[v / box if box > 0 else 0.0 for v in series],
        objectives=[o.name for o in objectives], directions=dirs,
        reference_point=[float(v) for v in ref_arr], ideal_point=[float(v) for v in ideal],
        rule=rule,
    )


def build_report(
    source: str | os.PathLike[str] | optuna.Study | StudySource,
    study: str | None = None,
    *,
    ref_point: Sequence[float] | None = None,
) -> ReportData:
    """Everything the report shows, from a study (output folder, storage, or Study object).

    Raises ``NoCompleteTrialError`` (a ``UserError``) for a study with no trial or no COMPLETE
    trial, and ``StudySourceError`` for a storage that is not a nas-dil study.
    """
    src = open_study(source, study)
    objectives = list(src.objectives)
    trials = src.trials()
    states = dict(Counter(t.state.upper() for t in trials))
    if not trials:
        raise NoCompleteTrialError(f"{src.location}: study {src.name!r} has no trials yet")
    complete = [t for t in trials if t.state == "complete"]
    if not complete:
        seen = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        raise NoCompleteTrialError(
            f"{src.location}: study {src.name!r} has no COMPLETE trial yet ({seen})"
        )
    points = merge_looks(complete, objectives)  # a candidate once, at its looks' mean
    front = feasible_front(points, objectives)
    knee_r, knee_note = knee_trial(front, objectives)
    knee = None if knee_r is None else knee_r.number
    first = objectives[0]
    crop = src.meta.data.get("image_size") if isinstance(src.meta.data, dict) else None
    rows = sorted((_pareto_row(r, objectives, r.number == knee, crop) for r in front),
                  key=lambda r: (first.sign * r.values[first.name], r.number))
    front_ids = {r.number for r in front}
    # the x axis says which RF it is: usable at the crop, or (older studies) nominal
    usable = any("rf_nominal" in t.record.analytic for t in complete)
    rf_name = "usable RF at the training crop" if usable else "nominal RF"
    scatters = [
        _scatter("miou_vs_gflops", f"mIoU vs GFLOPs (colour: {rf_name})", "gflops",
                 "GFLOPs per image", "rf", points, objectives, front_ids, knee,
                 f"{rf_name} (image px)"),
        replace(_scatter("miou_vs_rf", f"mIoU vs {rf_name}", "rf", f"{rf_name} (image px)",
                         None, points, objectives, front_ids, knee),
                x_mark=_crop_mark(complete, crop) if usable else None),
    ]
    curves = [c for t in trials if t.state in ("complete", "pruned")
              if (c := _curve(t, front_ids)) is not None]
    heatmaps = [h for r in front if (h := _heatmap(r)) is not None]
    baselines = {str(t.record.baseline): t.number for t in trials if t.record.baseline}
    return ReportData(
        study_name=src.name,
        objectives=objectives,
        meta=src.meta.to_dict(),
        n_trials=len(trials),
        states=states,
        n_feasible=sum(t.feasible for t in complete),
        pareto=rows,
        knee=knee,
        knee_rule=KNEE_RULE,
        knee_note=knee_note,
        table=pareto_table(rows, objectives, knee_note),
        scatters=scatters,
        hypervolume=_hypervolume(complete, objectives, ref_point, src.meta),
        curves=curves,
        heatmaps=heatmaps,
        baselines=baselines,
        dead_taps={t.number: t.record.dead_taps for t in complete if t.record.dead_taps},
    )
