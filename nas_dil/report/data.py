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
  flagged Pareto / baseline / feasible. The RF is the one the study searches (its RF
  objective: ``rf``, ``rf_nominal``, ``rf_stack`` or ``erf``; ``rf`` when it has none) and the
  axis says so; an axis on which every trial has the same value is not drawn as a line: the
  points spread over their trial numbers and the figure states the constant.
- Seed noise (`looks.pooled_noise`): a point with two looks or more carries ± its std; a
  front member whose mIoU lead over a dominated candidate at no worse cost is below the noise
  is marked "within noise" (`looks.within_noise`); the knee is flagged when a front
  neighbour's mIoU is within the noise of its own.
- Chance level (`chance_miou`): the mIoU of predicting the val split's majority class
  everywhere (from the study's data description), a line on the mIoU axes; `warnings` say when
  the best mIoU is within 2× of it or the front's mIoU spread is below the noise.
- Hypervolume after each trial (feasible COMPLETE trials so far) with its reference point.
- mIoU curves per evaluation of COMPLETE and PRUNED trials (pruned ones flagged).
- One coverage count map per Pareto schedule (``coverage_plot.coverage_map_data``).

Over 500 lines on purpose: every figure's data is built here from one set of decoded
candidate results (compute, then render); the plot functions stay thin.
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
from nas_dil.search.looks import (
    CandidateResult,
    feasible_front,
    merge_looks,
    pooled_noise,
    within_noise,
)
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
    "chance_miou",
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
    y_err: list[float | None] = field(default_factory=list)  # ± mIoU std (>= 2 looks)
    within_noise: list[bool] = field(default_factory=list)  # front, but within the noise
    y_marks: tuple[tuple[float, str], ...] = ()  # horizontal lines: (mIoU, label), chance
    constant: str | None = None  # "every trial: RF = 48 px": x is then the trial number


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
    noise: float | None = None  # pooled seed std of mIoU (None: unknown, no repeated looks)
    noise_note: str = ""  # one line: the noise and what it is pooled over, or why unknown
    chance: float | None = None  # mIoU of predicting the majority val class (None: unknown)
    chance_note: str | None = None  # one line: how the chance level was computed
    knee_close: str | None = None  # the knee is not distinguishable from these, one line
    within_noise: dict[int, int] = field(default_factory=dict)  # front trial -> dominated one
    warnings: list[str] = field(default_factory=list)  # near chance, spread below the noise


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
                fallback_crop: object = None, close: int | None = None) -> ParetoRow:
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
        within_noise=close,
    )


def _scatter(name: str, title: str, x_key: str, x_label: str, color_key: str | None,
             points: Sequence[CandidateResult], objectives: Sequence[Objective],
             front: set[int], knee: int | None, color_label: str | None = None,
             close: dict[int, int] | None = None) -> ScatterData:
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
        y_err=[as_number(r.std.get("miou")) if r.n_looks > 1 else None for r, *_ in rows],
        within_noise=[r.number in (close or {}) for r, *_ in rows],
    )


# the RF a study can search, as its axis names it: (what it is, its unit), and for short
_RF_SHORT = {"rf": "usable RF", "rf_nominal": "nominal RF", "rf_stack": "stack RF",
             "erf": "effective RF"}
_RF_AXES = {
    "rf": ("usable RF at the training crop", "image px"),
    "rf_nominal": ("nominal RF (every tap, by the formula)", "image px"),
    "rf_stack": ("RF of the searched layers", "their input px"),
    "erf": ("effective RF (95 % of the path-count map)", "image px"),
}


def rf_objective(objectives: Sequence[Objective]) -> str:
    """The RF the study searches: its first RF objective (``rf`` when it has none)."""
    return next((o.name for o in objectives if o.name in _RF_AXES), "rf")


def _constant(s: ScatterData, what: str, unit: str) -> ScatterData:
    """A scatter whose x is one value for every trial: spread over the trial numbers instead
    of a vertical line, the constant stated in the title and on the axis."""
    if len(s.x) < 2 or len(set(s.x)) > 1:
        return s
    note = f"every trial: {what} = {s.x[0]:g} {unit}"
    return replace(s, x=[float(n) for n in s.numbers], x_label=f"trial number ({note})",
                   title=f"{s.title} ({note})", x_mark=None, constant=note)


def chance_miou(data: object) -> tuple[float, str] | None:
    """(mIoU of predicting the majority class everywhere, how) from a data description's
    ``val_class_pixels``; None when the study did not record them. The majority class scores
    IoU = its share of the labelled val pixels, every other class present scores 0, and a
    class absent from the labels is left out of the mean (`nas_dil.train.metrics`)."""
    counts = data.get("val_class_pixels") if isinstance(data, dict) else None
    if not isinstance(counts, list) or not counts:
        return None
    px = [int(c) for c in counts if isinstance(c, int | float) and not isinstance(c, bool)]
    present = [c for c in px if c > 0]
    if len(px) != len(counts) or not present:
        return None
    share = max(present) / sum(present)
    names = data.get("class_names") if isinstance(data, dict) else None
    top = px.index(max(present))
    name = (f" {names[top]!r}" if isinstance(names, list) and top < len(names) else
            f" {top}")
    return share / len(present), (
        f"chance level {share / len(present):.3f}: predicting the majority class{name} "
        f"everywhere (IoU = its share of the labelled val pixels, {share:.3f}; the other "
        f"{len(present) - 1} classes in the labels score 0)")


def _noise_note(noise: float | None, points: Sequence[CandidateResult]) -> str:
    n = sum(1 for r in points if r.n_looks > 1 and "miou" in r.std)
    if noise is None:
        return ("seed noise unknown: no candidate was trained with two seeds or more "
                "([sampler] repeats); differences in mIoU cannot be judged against it")
    return (f"seed noise (pooled mIoU std over {n} candidate(s) with two seeds or more): "
            f"{noise:.4f}")


def _knee_close(knee: CandidateResult | None, front: Sequence[CandidateResult],
                objectives: Sequence[Objective], noise: float | None) -> str | None:
    """One line when a front neighbour's mean mIoU is within the noise of the knee's."""
    if knee is None or noise is None:
        return None
    k = knee.number_of("miou", objectives)
    if k is None:
        return None
    near = sorted((abs(v - k), r.number, v) for r in front if r.number != knee.number
                  if (v := r.number_of("miou", objectives)) is not None and abs(v - k) < noise)
    if not near:
        return None
    which = ", ".join(f"#{n} (mIoU {v:.4f}, Δ {d:.4f})" for d, n, v in near)
    return (f"the knee #{knee.number} (mIoU {k:.4f}) is not distinguishable from {which}: "
            f"the difference is below the seed noise {noise:.4f}")


def _warnings(points: Sequence[CandidateResult], front: Sequence[CandidateResult],
              objectives: Sequence[Objective], noise: float | None,
              chance: float | None) -> list[str]:
    out = []
    ys = [y for r in points if (y := r.number_of("miou", objectives)) is not None]
    if chance is not None and ys and max(ys) <= 2 * chance:
        out.append(f"near chance level: the best mIoU {max(ys):.4f} is within 2× of the "
                   f"chance level {chance:.4f} (predicting the majority class everywhere); "
                   "the trials have not learned the task, and their ranking and front are "
                   "noise")
    fy = [y for r in front if (y := r.number_of("miou", objectives)) is not None]
    if noise is not None and len(fy) > 1 and max(fy) - min(fy) < noise:
        out.append(f"the Pareto front's mIoU spread {max(fy) - min(fy):.4f} is below the seed "
                   f"noise {noise:.4f}: its members are not distinguishable by mIoU")
    return out


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
    pooled = pooled_noise(points)
    noise = None if pooled is None else pooled.std
    close = within_noise(front, points, objectives, noise)
    rows = sorted((_pareto_row(r, objectives, r.number == knee, crop, close.get(r.number))
                   for r in front),
                  key=lambda r: (first.sign * r.values[first.name], r.number))
    front_ids = {r.number for r in front}
    # the x axis is the RF the study searches and says which: usable at the crop (older
    # studies: nominal), the stack's own, or the effective RF
    usable = any("rf_nominal" in t.record.analytic for t in complete)
    rf_key = rf_objective(objectives)
    rf_name, rf_unit = _RF_AXES[rf_key]
    if rf_key == "rf" and not usable:
        rf_name = "nominal RF"
    searched = ("the study's RF objective" if any(o.name == rf_key for o in objectives)
                else "not an objective of this study")
    rf_label = f"{rf_name} ({rf_unit}; {rf_key}: {searched})"
    ch = chance_miou(src.meta.data)
    marks = () if ch is None else ((ch[0], f"chance level {ch[0]:.3f}"),)
    rf_scatter = _scatter("miou_vs_rf", f"mIoU vs {rf_name}", rf_key, rf_label, None, points,
                          objectives, front_ids, knee, close=close)
    mark = _crop_mark(complete, crop) if usable and rf_key in ("rf", "erf") else None
    if mark is not None and rf_key == "erf":  # the ERF is not bounded by the crop
        mark = (mark[0], mark[1].split(" (")[0] + " (ERF mass beyond it falls off the image)")
    rf_scatter = replace(rf_scatter, x_mark=mark)
    scatters = [
        replace(_constant(_scatter("miou_vs_gflops", f"mIoU vs GFLOPs (colour: {rf_name})",
                                   "gflops", "GFLOPs per image", rf_key, points, objectives,
                                   front_ids, knee, rf_label, close), "GFLOPs", "per image"),
                y_marks=marks),
        replace(_constant(rf_scatter, _RF_SHORT[rf_key] if usable or rf_key != "rf"
                          else "nominal RF", rf_unit), y_marks=marks),
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
        noise=noise,
        noise_note=_noise_note(noise, points),
        chance=None if ch is None else ch[0],
        chance_note=None if ch is None else ch[1],
        knee_close=_knee_close(knee_r, front, objectives, noise),
        within_noise=close,
        warnings=_warnings(points, front, objectives, noise, None if ch is None else ch[0]),
    )
