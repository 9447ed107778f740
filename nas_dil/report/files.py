"""`write_report(study, out)`: compute, then write report.html, the PNGs and the two CSVs.

Nothing is written until the report's data is computed, so a bad study (no trial, no
COMPLETE trial, not a nas-dil study) leaves every file as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nas_dil.errors import UserError, writable_folder
from nas_dil.report.data import ReportData, build_report
from nas_dil.report.render import render_html, render_pngs
from nas_dil.report.source import StudySource, open_study
from nas_dil.report.tables import pareto_dataframe, trials_dataframe, write_csv

if TYPE_CHECKING:
    import optuna

__all__ = ["REPORT_DIR", "ReportFiles", "write_report"]

REPORT_DIR = "report"  # default folder inside the search's output folder


@dataclass(frozen=True)
class ReportFiles:
    out_dir: Path
    html: Path
    pareto_csv: Path
    trials_csv: Path
    pngs: dict[str, Path]
    data: ReportData


def write_report(
    source: str | os.PathLike[str] | optuna.Study | StudySource,
    out: str | os.PathLike[str] | None = None,
    *,
    study: str | None = None,
) -> ReportFiles:
    """Write the report of a study into ``out`` (default: ``<output folder>/report``)."""
    src = open_study(source, study)
    data = build_report(src)
    trials = trials_dataframe(src)
    if out is None:
        if src.out_dir is None:
            raise UserError(f"{src.location}: no local output folder known; give --out DIR")
        out = src.out_dir / REPORT_DIR
    out_dir = Path(out)
    writable_folder(out_dir, "--out")  # one line, before any file is written
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = render_pngs(data, out_dir)
    html = render_html(data, out_dir / "report.html", pngs)
    pareto_csv = write_csv(pareto_dataframe(data), out_dir / "pareto.csv")
    trials_csv = write_csv(trials, out_dir / "trials.csv")
    return ReportFiles(out_dir, html, pareto_csv, trials_csv, pngs, data)
