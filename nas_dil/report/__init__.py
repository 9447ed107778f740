"""Reports on a search: the Pareto front, figures, tables, and the live dashboard.

Compute, then render: ``build_report(study) -> ReportData`` (plain dataclasses), then
``render_pngs`` / ``render_html``; ``write_report(study, out)`` does all of it and the CSVs.
``trials_dataframe(study)`` is every trial with every recorded field. Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_dil._lazy import lazy_getattr

if TYPE_CHECKING:
    from nas_dil.report.data import ReportData, build_report
    from nas_dil.report.files import ReportFiles, write_report
    from nas_dil.report.render import plotly_figures, render_html, render_pngs
    from nas_dil.report.source import StudySource, open_study
    from nas_dil.report.tables import pareto_dataframe, trials_dataframe

_LAZY = {
    "ReportData": "nas_dil.report.data",
    "build_report": "nas_dil.report.data",
    "ReportFiles": "nas_dil.report.files",
    "write_report": "nas_dil.report.files",
    "plotly_figures": "nas_dil.report.render",
    "render_html": "nas_dil.report.render",
    "render_pngs": "nas_dil.report.render",
    "StudySource": "nas_dil.report.source",
    "open_study": "nas_dil.report.source",
    "pareto_dataframe": "nas_dil.report.tables",
    "trials_dataframe": "nas_dil.report.tables",
}

__all__ = [
    "ReportData",
    "ReportFiles",
    "StudySource",
    "build_report",
    "open_study",
    "pareto_dataframe",
    "plotly_figures",
    "render_html",
    "render_pngs",
    "trials_dataframe",
    "write_report",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
