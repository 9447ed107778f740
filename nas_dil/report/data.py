"""Compute the report: `build_report(study) -> ReportData`, plain dataclasses, no drawing.

Everything a figure or table shows is in ``ReportData``; ``render`` only draws it. Trials are
read through the storage contract of ``nas_dil.search`` (user attrs ``candidate``, ``miou``,
``rf``, ``gflops``, ``holes``, ``hdc_rule*``, ``miou_curve``, ``baseline`` …, and Optuna's
constraint system attrs, values ≤ 0 feasible).

- Pareto front: non-dominated COMPLETE trials over the study's objectives, among the feasible
  ones only (see ``nas_dil.pareto``); the knee is marked on it.
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nas_dil.errors import UserError
from nas_dil.pareto import (
    REFERENCE,
    hypervolume_series,
    knee_index,
    pareto_mask,
    reference_point,
    signs,
    to_losses,
)
from nas_dil.report.coverage_plot import CoverageMapData, coverage_map_data
from nas_dil.report.source import Objective, StudySource, open_study
from nas_dil.search.records import StudyMeta, TrialRecord

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "CurveData",
    "HeatMap",
    "HypervolumeData",
    "NoCompleteTrialError",
    "ParetoRow",
    "ReportData",
    "ScatterData",
    "build_report",
    "feasible",
    "pareto_trials",
    "trial_schedule",
]


class NoCompleteTrialError(UserError, ValueError):
    """The study has no trial to report on (empty, or nothing COMPLETE)."""


@dataclass(frozen=True)
class ParetoRow:
    """One row of the Pareto table."""

    number: int  # Optuna trial number
    schedule: str  # "1,2,5"
    kernel: int | None
    output_stride: int | None
    width: int | None
    values: dict[str, float]  # objective name -> value
    rf: float | None  # image px, whole net
    rf_stack: float | None  # the stack's own RF (its input px)
    holes: int | None  # 2-D holes of the stack's coverage
    coverage: float | None
    gridding_free: bool | None
    gflops: float | None
    params: int | None
    miou: float | None
    hdc_rule1: bool | None  # HDC rule 1 (M_2 <= K) on the whole schedule
    hdc_rule1_groups: bool | None  # HDC rule 1 within each sawtooth group
    hdc_rule2: bool | None
    hdc_rule3: bool | None
    hdc: bool | None
    baseline: str | None  # seed baseline name
    knee: bool
    weights: str | None  # recorded weights path (relative to the output folder)


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
    scatters: list[ScatterData]
    hypervolume: HypervolumeData | None  # None when no trial is feasible
    curves: list[CurveData]
    heatmaps: list[HeatMap]
    baselines: dict[str, int] = field(default_factory=dict)  # name -> trial number


KNEE_RULE = ("knee: each objective normalised to [0, 1] over the Pareto front (1 = best), the "
             "point closest to the utopia point (1, …, 1)")


def feasible(t: FrozenTrial) -> bool:
    """Optuna's rule: every constraint value ≤ 0 (no constraints: feasible)."""
    return all(float(v) <= 0.0 for v in t.constraints.values())


def _num(t: FrozenTrial, key: str, objectives: Sequence[Objective] = ()) -> float | None:
    v = t.user_attrs.get(key)
    if v is None and t.values is not None:
        for o, val in zip(objectives, t.values, strict=False):
            if o.name == key:
                v = val
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _bool(v: Any) -> bool | None:
    return bool(v) if isinstance(v, bool | np.bool_) else None


def trial_schedule(t: FrozenTrial) -> tuple[str, int | None, int | None, int | None]:
    """(rates "1,2,5", kernel, output_stride, width) from the trial's ``candidate`` attr."""
    c = t.user_attrs.get("candidate")
    if not isinstance(c, dict):
        return "?", None, None, None
    rates = c.get("rates") or []
    return (",".join(str(r) for r in rates) or "?", _int(c.get("kernel")),
            _int(c.get("output_stride")), _int(c.get("width")))


def _label(t: FrozenTrial) -> str:
    rates, k, os_, w = trial_schedule(t)
    base = t.user_attrs.get("baseline")
    tail = f" ({base})" if base else ""
    return f"#{t.number} [{rates}] K{k} OS{os_} w{w}{tail}"


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def pareto_trials(complete: Sequence[FrozenTrial],
                  objectives: Sequence[Objective]) -> list[FrozenTrial]:
    """Non-dominated feasible trials among ``complete`` (all COMPLETE), in trial order."""
    cand = [t for t in complete if feasible(t) and t.values is not None]
    if not cand:
        return []
    mask = pareto_mask([t.values for t in cand], [o.direction for o in objectives])
    return [t for t, m in zip(cand, mask, strict=True) if m]


def _heatmap(t: FrozenTrial) -> HeatMap | None:
    from nas_dil.spaces import Candidate

    try:
        cand = Candidate.from_dict(t.user_attrs["candidate"])
    except (KeyError, UserError):
        return None
    return HeatMap(t.number, ",".join(map(str, cand.rates)), coverage_map_data(cand.schedule))


def _pareto_row(t: FrozenTrial, objectives: Sequence[Objective], knee: bool) -> ParetoRow:
    rec = TrialRecord.from_frozen(t)  # older attribute names read as today's
    a = rec.to_attrs()
    rates, k, os_, w = trial_schedule(t)
    return ParetoRow(
        number=t.number, schedule=rates, kernel=k, output_stride=os_, width=w,
        values={o.name: float(v) for o, v in zip(objectives, t.values or (), strict=True)},
        rf=_num(t, "rf", objectives), rf_stack=_num(t, "rf_stack"),
        holes=_int(a.get("holes")), coverage=_num(t, "coverage"),
        gridding_free=_bool(a.get("gridding_free")),
        gflops=_num(t, "gflops", objectives), params=_int(a.get("params")),
        miou=_num(t, "miou", objectives),
        hdc_rule1=_bool(a.get("hdc_rule1")), hdc_rule1_groups=_bool(a.get("hdc_rule1_groups")),
        hdc_rule2=_bool(a.get("hdc_rule2")),
        hdc_rule3=_bool(a.get("hdc_rule3")), hdc=_bool(a.get("hdc")),
        baseline=rec.baseline or None, knee=knee,
        weights=rec.weights if isinstance(rec.weights, str) else None,
    )


def _scatter(name: str, title: str, x_key: str, x_label: str, color_key: str | None,
             trials: Sequence[FrozenTrial], objectives: Sequence[Objective],
             front: set[int], knee: int | None) -> ScatterData:
    rows = []
    for t in trials:
        x, y = _num(t, x_key, objectives), _num(t, "miou", objectives)
        if x is None or y is None:
            continue
        c = _num(t, color_key, objectives) if color_key else None
        rows.append((t, x, y, c))
    colors = [c for *_, c in rows]
    return ScatterData(
        name=name, title=title, x_label=x_label, y_label="mIoU",
        color_label="RF (image px)" if color_key else None,
        x=[x for _, x, _, _ in rows], y=[y for _, _, y, _ in rows],
        color=[float("nan") if c is None else c for c in colors] if color_key else None,
        numbers=[t.number for t, *_ in rows], labels=[_label(t) for t, *_ in rows],
        pareto=[t.number in front for t, *_ in rows],
        feasible=[feasible(t) for t, *_ in rows],
        baseline=[t.user_attrs.get("baseline") or None for t, *_ in rows],
        knee=[t.number == knee for t, *_ in rows],
    )


def _curve(t: FrozenTrial, front: set[int]) -> CurveData | None:
    curve = t.user_attrs.get("miou_curve")
    if not isinstance(curve, list) or not curve:
        if not t.intermediate_values:
            return None
        curve = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
    vals = [float(v) for v in curve if isinstance(v, int | float) and not isinstance(v, bool)]
    if not vals:
        return None
    return CurveData(t.number, t.state.name, vals, _label(t), t.number in front,
                     t.user_attrs.get("baseline") or None)


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


def _hypervolume(complete: Sequence[FrozenTrial], objectives: Sequence[Objective],
                 ref: Sequence[float] | None,
                 meta: StudyMeta | None = None) -> HypervolumeData | None:
    feas = [t for t in complete if feasible(t)]
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
    series = hypervolume_series(to_losses([t.values for t in ordered], dirs),
                                ref_arr * sg, include=[feasible(t) for t in ordered])
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
    trials = sorted(src.study.get_trials(deepcopy=False), key=lambda t: t.number)
    states = dict(Counter(t.state.name for t in trials))
    if not trials:
        raise NoCompleteTrialError(f"{src.location}: study {src.name!r} has no trials yet")
    complete = sorted(_complete(src.study), key=lambda t: t.number)
    if not complete:
        seen = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        raise NoCompleteTrialError(
            f"{src.location}: study {src.name!r} has no COMPLETE trial yet ({seen})"
        )
    front = pareto_trials(complete, objectives)
    knee: int | None = None
    if front:
        knee = front[knee_index(to_losses([t.values for t in front],
                                          [o.direction for o in objectives]))].number
    first = objectives[0]
    rows = sorted((_pareto_row(t, objectives, t.number == knee) for t in front),
                  key=lambda r: (first.sign * r.values[first.name], r.number))
    front_ids = {t.number for t in front}
    scatters = [
        _scatter("miou_vs_gflops", "mIoU vs GFLOPs (colour: RF)", "gflops", "GFLOPs per image",
                 "rf", complete, objectives, front_ids, knee),
        _scatter("miou_vs_rf", "mIoU vs receptive field", "rf", "RF (image px)", None,
                 complete, objectives, front_ids, knee),
    ]
    from optuna.trial import TrialState

    curves = [c for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
              if (c := _curve(t, front_ids)) is not None]
    heatmaps = [h for t in front if (h := _heatmap(t)) is not None]
    baselines = {str(t.user_attrs["baseline"]): t.number for t in trials
                 if t.user_attrs.get("baseline")}
    return ReportData(
        study_name=src.name,
        objectives=objectives,
        meta=src.meta.to_dict(),
        n_trials=len(trials),
        states=states,
        n_feasible=sum(feasible(t) for t in complete),
        pareto=rows,
        knee=knee,
        knee_rule=KNEE_RULE,
        scatters=scatters,
        hypervolume=_hypervolume(complete, objectives, ref_point, src.meta),
        curves=curves,
        heatmaps=heatmaps,
        baselines=baselines,
    )
