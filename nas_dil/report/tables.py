"""Tables: every trial with every recorded field (`trials_dataframe`), and the Pareto table.

Columns of ``trials_dataframe``, in order: ``number``, ``state``, one ``values_<objective>``
per objective, ``feasible``, ``pareto``, ``constraints`` (name -> value), ``datetime_start``,
``datetime_complete``, ``duration_s``, ``params_<name>`` for Optuna parameters, then every
user attr; nested dicts are flattened with dots (``candidate.rates``, ``arch.width``,
``trial_config.train.steps``), lists stay lists (JSON text in the CSV files).

``rf`` is the usable RF at the training crop and ``rf_nominal`` the formula's; ``dead_taps``
counts the stack's taps that read only padding at the crop (never trained). A trial written
before these were recorded has its (nominal) ``rf`` copied into ``rf_nominal`` and an empty
``dead_taps`` (unknown). The Pareto table (``pareto_dataframe``) has the same facts per row
(``rf_usable``, empty when not recorded, ``rf_nominal``, ``crop``, ``dead_taps``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_dil.report.data import ReportData
from nas_dil.report.source import StudySource, open_study
from nas_dil.search.looks import feasible_front, merge_looks

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = ["pareto_dataframe", "trials_dataframe", "write_csv"]


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def trials_dataframe(
    source: str | os.PathLike[str] | optuna.Study | StudySource, study: str | None = None
) -> pd.DataFrame:
    """One row per trial of a nas-dil study (any state), every recorded field.

    ``source``: a search's output folder, its ``study.db``, a storage URL or an open Study.
    An empty study gives an empty frame with the fixed columns.
    """
    import pandas as pd

    src = open_study(source, study)
    objs = src.objectives
    trials = src.trials()
    complete = [t for t in trials if t.state == "complete"]
    front = {r.number for r in feasible_front(merge_looks(complete, objs), objs)}
    fixed = ["number", "state", *(f"values_{o.name}" for o in objs), "feasible", "pareto",
             "constraints", "datetime_start", "datetime_complete", "duration_s"]
    rows: list[dict[str, Any]] = []
    for t in trials:
        start, end = t.datetime_start, t.datetime_complete
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.upper(),
            **{f"values_{o.name}": (t.values[i] if t.values is not None else None)
               for i, o in enumerate(objs)},
            "feasible": t.feasible,
            "pareto": t.number in front,
            "constraints": dict(t.constraints),
            "datetime_start": start,
            "datetime_complete": end,
            "duration_s": (end - start).total_seconds() if start and end else None,
        }
        for k, v in t.params.items():
            row[f"params_{k}"] = v
        flat: dict[str, Any] = {}
        for k, v in t.attrs.items():  # today's names
            _flatten(k, v, flat)
        if "rf_nominal" not in flat and "rf" in flat:  # older study: its rf is the nominal one
            flat["rf_nominal"] = flat["rf"]
        for k, v in flat.items():
            row.setdefault(k, v)
        if "rf" in row:
            row.setdefault("dead_taps", None)
        rows.append(row)
    df = pd.DataFrame(rows)
    extra = [c for c in df.columns if c not in fixed]
    return df.reindex(columns=fixed + extra)


def pareto_dataframe(data: ReportData) -> pd.DataFrame:
    """The Pareto table of a report: one row per Pareto trial (``ParetoRow`` fields)."""
    import pandas as pd

    rows = []
    for r in data.pareto:
        d = asdict(r)
        values = d.pop("values")
        rows.append({"number": d.pop("number"), "schedule": d.pop("schedule"),
                     **{f"values_{k}": v for k, v in values.items()}, **d})
    cols = ["number", "schedule", *(f"values_{o.name}" for o in data.objectives)]
    return pd.DataFrame(rows).reindex(columns=cols + [c for c in (rows[0] if rows else {})
                                                      if c not in cols])


def _cell(v: Any) -> Any:
    if isinstance(v, list | dict | tuple):
        return json.dumps(v, default=str)
    return v


def write_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """CSV with lists and dicts written as JSON text (so they parse back exactly)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(_cell)
    path = Path(path)
    out.to_csv(path, index=False)
    return path
