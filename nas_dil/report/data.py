"""Compute the report: `build_report(study) -> ReportData`, plain dataclasses, no drawing.

Everything a figure or table shows is in ``ReportData``; ``render`` only draws it. Trials are
read through the storage contract of ``nas_dil.search`` (user attrs ``candidate``, ``miou``,
``rf``, ``gflops``, ``holes``, ``hdc_rule*``, ``miou_curve``, ``baseline`` …, and Optuna's
constraint system attrs, values ≤ 0 feasible).

- Pareto front: non-dominated COMPLETE trials over the study's objectives, among the feasible
  ones only (see ``nas_dil.pareto``); the knee is marked on it. The knee is never a trial
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
    pareto_mask,
    reference_point,
    signs,
    to_losses,
)
from nas_dil.report.coverage_plot import CoverageMapData, coverage_map_data
from nas_dil.report.source import Objective, StudySource, open_study
from nas_dil.search.records import StudyMeta, TrialRecord, merge_looks

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "Column",
    "CurveData",
    "HeatMap",
    "HypervolumeData",
    "NoCompleteTrialError",
    "ParetoRow",
    "ParetoTable",
    "RFFacts",
    "ReportData",
    "ScatterData",
    "build_report",
    "dead_taps",
    "feasible",
    "knee_trial",
    "pareto_table",
    "pareto_trials",
    "rf_facts",
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
    rf: float | None  # the stored ``rf`` (usable RF; nominal in older studies), image px
    rf_usable: float | None  # whole net, image px, smaller axis (None: not recorded)
    rf_nominal: float | None  # the formula's RF, image px (older studies: their ``rf``)
    crop: tuple[int, int] | None  # the training crop (h, w)
    dead_taps: int | None  # the stack's taps dead at the crop (None: not recorded)
    dead_layers: tuple[str, ...]  # the stack's layers with dead taps, "stack.3 r9: 8 dead"
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
    looks: int | None = None  # training seeds averaged (`[sampler] repeats`); None: one
    miou_std: float | None = None  # their mIoU's std (n - 1)


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


@dataclass(frozen=True)
class RFFacts:
    """A trial's RF against its training crop (its analytic attrs, `nas_dil.models.analytic`).

    Studies written before the usable RF was recorded (no ``rf_nominal`` attr) stored the
    nominal RF as ``rf``: there ``usable`` and ``dead_taps`` are None (unknown), and every rule
    that avoids dead taps counts them as 0.
    """

    usable: float | None  # image px, smaller axis: the ``rf`` objective (None: not recorded)
    nominal: float | None  # every tap, the formula's RF, image px
    crop: tuple[int, int] | None  # (h, w) of the training crop
    dead_taps: int | None  # the stack's taps that read only padding at the crop
    dead_layers: tuple[str, ...]  # the stack's layers with dead taps

    def per_crop(self, rf: float | None) -> float | None:
        """``rf`` over the crop's smaller side (the usable RF's axis): at most 1 for usable."""
        return None if rf is None or self.crop is None else rf / min(self.crop)


def _crop(v: Any) -> tuple[int, int] | None:
    """(h, w) of a data config's ``image_size`` (a side or [h, w]); None if neither."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v, v
    if isinstance(v, list | tuple) and len(v) == 2 and all(_int(x) for x in v):
        return int(v[0]), int(v[1])
    return None


def _dead_layer(d: Any) -> str | None:
    if not isinstance(d, dict) or not str(d.get("name", "")).startswith("stack."):
        return None
    dil = d.get("dilation") or []
    rate = (f"r{dil[0]}" if len(dil) == 2 and dil[0] == dil[1] else
            f"r({','.join(map(str, dil))})")
    return f"{d['name']} {rate}: {d.get('dead', '?')} dead"


def rf_facts(attrs: Any, fallback_crop: Any = None) -> RFFacts:
    """The RF facts of a trial's attributes (``FrozenTrial.user_attrs`` or
    ``TrialRecord.to_attrs()``); ``fallback_crop``: the study's ``image_size`` for trials
    that carry no ``trial_config``."""
    tc = attrs.get("trial_config")
    data = tc.get("data") if isinstance(tc, dict) else None
    crop = _crop(data.get("image_size") if isinstance(data, dict) else None) or _crop(
        fallback_crop)
    rf = attrs.get("rf")
    rf = float(rf) if isinstance(rf, int | float) and not isinstance(rf, bool) else None
    if "rf_nominal" not in attrs:  # written before the usable RF: ``rf`` is the nominal one
        return RFFacts(None, rf, crop, None, ())
    nominal = attrs.get("rf_nominal")
    layers = attrs.get("dead_layers")
    return RFFacts(
        usable=rf,
        nominal=float(nominal) if isinstance(nominal, int | float) else None,
        crop=crop, dead_taps=_int(attrs.get("dead_taps")),
        dead_layers=tuple(x for d in (layers if isinstance(layers, list) else ())
                          if (x := _dead_layer(d)) is not None))


def dead_taps(t: FrozenTrial) -> int:
    """The stack's taps that were dead in ``t``'s training (not recorded: 0)."""
    return _int(t.user_attrs.get("dead_taps")) or 0


def _with_dead(trials: Sequence[FrozenTrial]) -> str:
    return ", ".join(f"#{t.number} ({dead_taps(t)})" for t in trials)


def knee_trial(front: Sequence[FrozenTrial],
               objectives: Sequence[Objective]) -> tuple[FrozenTrial | None, str | None]:
    """(the knee, a note) of a Pareto front: `knee_index` over the front trials whose taps all
    trained (no dead taps at the crop), normalised over those. The note names the front
    trials left out; with none left the knee is None and the note says so in one line."""
    if not front:
        return None, None
    live = [t for t in front if dead_taps(t) == 0]
    dead = [t for t in front if dead_taps(t) > 0]
    if not live:
        return None, (f"no knee: every Pareto trial had dead taps at its training crop (taps "
                      f"that read only padding never trained): {_with_dead(dead)}")
    k = live[knee_index(to_losses([t.values for t in live], [o.direction for o in objectives]))]
    note = None if not dead else (
        f"not the knee, dead taps at the training crop (they never trained): {_with_dead(dead)}")
    return k, note


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
    dead = f", {dead_taps(t)} dead taps" if dead_taps(t) else ""
    looks = t.user_attrs.get("looks")
    seeds = f", mIoU mean of {looks} seeds" if looks else ""
    return f"#{t.number} [{rates}] K{k} OS{os_} w{w}{tail}{dead}{seeds}"


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def pareto_trials(complete: Sequence[FrozenTrial],
                  objectives: Sequence[Objective]) -> list[FrozenTrial]:
    """Non-dominated feasible trials among ``complete`` (all COMPLETE), in trial order; the
    looks at one candidate (repeats with other seeds) count once, as their mean
    (`merge_looks`: the trial kept is a merged copy)."""
    cand = [t for t in merge_looks(complete, objectives)
            if feasible(t) and t.values is not None]
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


def _pareto_row(t: FrozenTrial, objectives: Sequence[Objective], knee: bool,
                fallback_crop: Any = None) -> ParetoRow:
    rec = TrialRecord.from_frozen(t)  # older attribute names read as today's
    a = rec.to_attrs()
    rates, k, os_, w = trial_schedule(t)
    rf = rf_facts(a, fallback_crop)
    return ParetoRow(
        number=t.number, schedule=rates, kernel=k, output_stride=os_, width=w,
        values={o.name: float(v) for o, v in zip(objectives, t.values or (), strict=True)},
        rf=_num(t, "rf", objectives), rf_usable=rf.usable, rf_nominal=rf.nominal,
        crop=rf.crop, dead_taps=rf.dead_taps, dead_layers=rf.dead_layers,
        rf_stack=_num(t, "rf_stack"),
        holes=_int(a.get("holes")), coverage=_num(t, "coverage"),
        gridding_free=_bool(a.get("gridding_free")),
        gflops=_num(t, "gflops", objectives), params=_int(a.get("params")),
        miou=_num(t, "miou", objectives),
        hdc_rule1=_bool(a.get("hdc_rule1")), hdc_rule1_groups=_bool(a.get("hdc_rule1_groups")),
        hdc_rule2=_bool(a.get("hdc_rule2")),
        hdc_rule3=_bool(a.get("hdc_rule3")), hdc=_bool(a.get("hdc")),
        baseline=rec.baseline or None, knee=knee,
        weights=rec.weights if isinstance(rec.weights, str) else None,
        looks=_int(a.get("looks")), miou_std=_num(t, "miou_std"),
    )


# -- the Pareto table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    key: str  # a ParetoRow field ("rf_crop": derived), or "values.<name>" for a foreign objective
    label: str
    direction: str | None = None  # "maximize"/"minimize": this column is that objective
    doc: str = ""  # what it shows, one line (the table's legend)


@dataclass(frozen=True)
class ParetoTable:
    """The Pareto table as shown: each objective once, then what explains it."""

    columns: list[Column]
    rows: list[list[Any]]  # parallel to ``columns``: str, int, float, bool or None (unknown)
    numbers: list[int]  # the trial of each row
    knee: list[bool]
    dead: list[bool]  # the row's trial had dead taps at its training crop
    notes: list[str]  # one line each, shown with the table


_IDENTITY = [Column("number", "trial"), Column("schedule", "schedule", doc="dilation rates"),
             Column("kernel", "K"), Column("output_stride", "OS"), Column("width", "width")]
# every quantity a row shows, in the order shown after the objectives; an objective's column
# moves up to the objectives' place
_QUANTITIES = [
    Column("miou", "mIoU", doc="mean IoU on the val split after training"),
    Column("rf", "RF px usable / nominal", doc=(
        "whole net, image px: usable = what the trained net can use at its training crop "
        "(smaller axis; the rf objective), nominal = every tap, by the formula")),
    Column("gflops", "GFLOPs", doc="per image at the training crop"),
    Column("rf_crop", "× crop usable / nominal",
           doc="each RF over the training crop's smaller side (usable is at most 1)"),
    Column("crop", "crop px", doc="the training crop, h×w"),
    Column("dead_taps", "dead taps", doc=(
        "the stack's taps that read only padding at the training crop: they never trained")),
    Column("params", "params", doc="trainable parameters"),
    Column("rf_stack", "RF stack", doc="the dilated stack's own RF (its input px)"),
    Column("holes", "holes", doc="2-D holes of the stack's coverage (gridding)"),
    Column("coverage", "coverage"),
    Column("hdc_rule1", "HDC r1"), Column("hdc_rule1_groups", "HDC r1 groups"),
    Column("hdc_rule2", "HDC r2"), Column("hdc_rule3", "HDC r3"), Column("hdc", "HDC"),
    Column("gridding_free", "gridding-free"), Column("baseline", "baseline"),
    Column("looks", "seeds", doc=("training seeds the row's mIoU averages (sampler repeats), "
                                  "± their std")),
]


def _g(v: float | None, fmt: str = "{:.4g}") -> str:
    return "?" if v is None else fmt.format(v)


def _cell(r: ParetoRow, key: str, nominal_only: bool) -> Any:
    if key.startswith("values."):
        return r.values.get(key.split(".", 1)[1])
    if key == "rf":
        if nominal_only:
            return r.rf_nominal
        return f"{_g(r.rf_usable)} / {_g(r.rf_nominal)}"
    if key == "rf_crop":
        facts = RFFacts(r.rf_usable, r.rf_nominal, r.crop, r.dead_taps, r.dead_layers)
        nominal = facts.per_crop(r.rf_nominal)
        if nominal_only:
            return nominal
        return f"{_g(facts.per_crop(r.rf_usable), '{:.2f}')} / {_g(nominal, '{:.2f}')}"
    if key == "crop":
        return None if r.crop is None else (
            str(r.crop[0]) if r.crop[0] == r.crop[1] else f"{r.crop[0]}×{r.crop[1]}")
    if key == "coverage":
        return None if r.coverage is None else f"{100 * r.coverage:.1f} %"
    if key == "looks":
        return "1" if not r.looks else f"{r.looks} (± {_g(r.miou_std, '{:.3f}')})"
    return getattr(r, key)


def pareto_table(rows: Sequence[ParetoRow], objectives: Sequence[Objective],
                 knee_note: str | None = None) -> ParetoTable:
    """The table of ``rows``: identity, the objectives (each once, in the study's order), then
    every other quantity. A study that never recorded the usable RF shows its (nominal) RF
    as such."""
    nominal_only = bool(rows) and all(r.rf_usable is None for r in rows)
    by_key = {c.key: c for c in _QUANTITIES}
    if not any((r.looks or 0) > 1 for r in rows):  # no repeats: no column
        del by_key["looks"]
    if nominal_only:
        by_key["rf"] = Column("rf", "RF px (nominal)", doc=(
            "whole net, image px, every tap by the formula (this study did not record the "
            "usable RF: its rf objective is the nominal RF)"))
        by_key["rf_crop"] = Column("rf_crop", "nominal × crop",
                                   doc="the nominal RF over the training crop's smaller side")
    obj_cols = [replace(by_key[o.name], direction=o.direction) if o.name in by_key else
                Column(f"values.{o.name}", o.name, o.direction) for o in objectives]
    taken = {c.key for c in obj_cols}
    columns = [*_IDENTITY, *obj_cols, *(c for c in by_key.values() if c.key not in taken)]
    notes = []
    dead = [r for r in rows if (r.dead_taps or 0) > 0]
    if dead:
        notes.append("dead taps at the training crop (they read only padding, never trained, "
                     "and wake up untrained at a larger input), never the knee: " + "; ".join(
                         f"#{r.number} ({', '.join(r.dead_layers) or f'{r.dead_taps} taps'})"
                         for r in dead))
    if knee_note and not any(r.knee for r in rows):  # the one line saying why there is none
        notes.append(knee_note)
    unknown = [r.number for r in rows if r.rf_usable is None]
    if unknown:
        which = "this study" if len(unknown) == len(rows) else "trials " + ", ".join(
            f"#{n}" for n in unknown)
        notes.append(f"{which} did not record the usable RF nor dead taps (written by an "
                     "older nas-dil): their rf is the nominal RF, '?' is unknown")
    return ParetoTable(
        columns=columns,
        rows=[[_cell(r, c.key, nominal_only) for c in columns] for r in rows],
        numbers=[r.number for r in rows], knee=[r.knee for r in rows],
        dead=[(r.dead_taps or 0) > 0 for r in rows], notes=notes)


def _scatter(name: str, title: str, x_key: str, x_label: str, color_key: str | None,
             trials: Sequence[FrozenTrial], objectives: Sequence[Objective],
             front: set[int], knee: int | None, color_label: str | None = None) -> ScatterData:
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
        color_label=color_label if color_key else None,
        x=[x for _, x, _, _ in rows], y=[y for _, _, y, _ in rows],
        color=[float("nan") if c is None else c for c in colors] if color_key else None,
        numbers=[t.number for t, *_ in rows], labels=[_label(t) for t, *_ in rows],
        pareto=[t.number in front for t, *_ in rows],
        feasible=[feasible(t) for t, *_ in rows],
        baseline=[t.user_attrs.get("baseline") or None for t, *_ in rows],
        knee=[t.number == knee for t, *_ in rows],
        dead=[dead_taps(t) > 0 for t, *_ in rows],
    )


def _crop_mark(trials: Sequence[FrozenTrial], fallback: Any) -> tuple[float, str] | None:
    """The crop's smaller side when every trial trained on the same crop (no RF can use
    more), as an x mark for the RF scatter."""
    crops = {rf_facts(t.user_attrs, fallback).crop for t in trials}
    crop = crops.pop() if len(crops) == 1 else None
    if crop is None:
        return None
    h, w = crop
    return float(min(h, w)), f"training crop {h}×{w} px (the usable RF's limit)"


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
    if any(t.user_attrs.get("look_of") for t in ordered):  # repeats: each prefix merged
        series = []
        for k in range(1, len(ordered) + 1):
            seen = [t for t in merge_looks(ordered[:k], objectives) if feasible(t)]
            series.append(hypervolume(to_losses([t.values for t in seen], dirs), ref_arr * sg)
                          if seen else 0.0)
    else:
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
    knee_t, knee_note = knee_trial(front, objectives)
    knee = None if knee_t is None else knee_t.number
    first = objectives[0]
    crop = src.meta.data.get("image_size") if isinstance(src.meta.data, dict) else None
    rows = sorted((_pareto_row(t, objectives, t.number == knee, crop) for t in front),
                  key=lambda r: (first.sign * r.values[first.name], r.number))
    front_ids = {t.number for t in front}
    # the x axis says which RF it is: usable at the crop, or (older studies) nominal
    usable = any("rf_nominal" in t.user_attrs for t in complete)
    rf_name = "usable RF at the training crop" if usable else "nominal RF"
    points = merge_looks(complete, objectives)  # a candidate once, at its looks' mean
    scatters = [
        _scatter("miou_vs_gflops", f"mIoU vs GFLOPs (colour: {rf_name})", "gflops",
                 "GFLOPs per image", "rf", points, objectives, front_ids, knee,
                 f"{rf_name} (image px)"),
        replace(_scatter("miou_vs_rf", f"mIoU vs {rf_name}", "rf", f"{rf_name} (image px)",
                         None, points, objectives, front_ids, knee),
                x_mark=_crop_mark(complete, crop) if usable else None),
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
        knee_note=knee_note,
        table=pareto_table(rows, objectives, knee_note),
        scatters=scatters,
        hypervolume=_hypervolume(complete, objectives, ref_point, src.meta),
        curves=curves,
        heatmaps=heatmaps,
        baselines=baselines,
        dead_taps={t.number: dead_taps(t) for t in complete if dead_taps(t)},
    )
