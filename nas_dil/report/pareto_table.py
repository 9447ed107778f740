"""The Pareto table: one `ParetoRow` per front candidate (what the report knows about it) and
`pareto_table`, the table as shown (each objective once, then what explains it, with notes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from nas_dil.search.records import Objective, RFFacts

__all__ = ["Column", "ParetoRow", "ParetoTable", "pareto_table"]


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
    within_noise: int | None = None  # a dominated trial at no worse cost within the noise


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
    Column("within_noise", "within noise", doc=(
        "its mIoU lead over this dominated trial, at no worse cost, is below the seed noise")),
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
    if key == "within_noise":
        return None if r.within_noise is None else f"≈ #{r.within_noise}"
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
    if not any(r.within_noise is not None for r in rows):
        del by_key["within_noise"]
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
