"""Render a `ReportData`: PNGs (matplotlib), interactive figures (plotly), one HTML file.

Thin on purpose: every number drawn comes from ``ReportData``. plotly draws the interactive
figures of ``report.html`` (zoom, hover with the trial's schedule) and the figures the
dashboard attaches; its JavaScript is inlined, so the HTML opens offline. Heat maps go into
the HTML as base64 PNGs (the same files ``render_pngs`` writes, via ``plot_coverage_map``).
"""

from __future__ import annotations

import base64
import html
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas_dil.report.coverage_plot import plot_coverage_map
from nas_dil.report.data import HeatMap, ReportData, ScatterData

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.axes import Axes

__all__ = [
    "coverage_figure",
    "plotly_figures",
    "render_html",
    "render_pngs",
]

HEATMAP_MAX_RF = 97  # plotly heat maps up to this RF (larger ones: the PNG only)
_BASELINE_COLOR = "#d62728"
_KNEE_COLOR = "#ff7f0e"
_DEAD_COLOR = "#8c564b"
_CHANCE_COLOR = "#7f7f7f"
_NOISE_COLOR = "#9467bd"


# -- matplotlib -------------------------------------------------------------------------------
def _new_figure(w: float = 6.4, h: float = 4.6) -> tuple[Any, Axes]:
    from matplotlib.figure import Figure  # no pyplot: safe off the main thread

    fig = Figure(figsize=(w, h))
    return fig, fig.add_subplot(1, 1, 1)


def _draw_scatter(ax: Axes, s: ScatterData) -> Any:
    x, y = np.array(s.x, dtype=float), np.array(s.y, dtype=float)
    feas, par = np.array(s.feasible, dtype=bool), np.array(s.pareto, dtype=bool)
    base = np.array([b is not None for b in s.baseline], dtype=bool)
    mappable = None
    kw: dict[str, Any] = {}
    if s.color is not None and feas.any():
        c = np.array(s.color, dtype=float)
        kw = {"c": c[feas], "cmap": "viridis"}
        finite = c[feas][np.isfinite(c[feas])]
        if finite.size:
            kw.update(vmin=float(finite.min()), vmax=float(finite.max()))
    if feas.any():
        edges = ["black" if p else "none" for p in par[feas]]
        mappable = ax.scatter(x[feas], y[feas], s=np.where(par[feas], 60, 28), edgecolors=edges,
                              linewidths=1.2, alpha=0.85, label="trials (Pareto: black edge)",
                              zorder=2, **kw)
    if (~feas).any():
        ax.scatter(x[~feas], y[~feas], marker="x", color="#999999", label="infeasible", zorder=1)
    if base.any():
        ax.scatter(x[base], y[base], marker="*", s=220, facecolors="none",
                   edgecolors=_BASELINE_COLOR, linewidths=1.5, label="seed baseline", zorder=3)
        for xi, yi, name in zip(x[base], y[base], [b for b in s.baseline if b], strict=True):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(6, 6), fontsize=8,
                        color=_BASELINE_COLOR)
    dead = np.array(s.dead, dtype=bool)
    if dead.any():
        ax.scatter(x[dead], y[dead], marker="s", s=300, facecolors="none",
                   edgecolors=_DEAD_COLOR, linewidths=1.5, label="dead taps (never trained)",
                   zorder=3)
    if s.x_mark is not None:
        ax.axvline(s.x_mark[0], color="#555555", ls="--", lw=1, label=s.x_mark[1], zorder=0)
    err = _errors(s)
    if err is not None:
        has = np.isfinite(err)
        ax.errorbar(x[has], y[has], yerr=err[has], fmt="none", ecolor="#444444", elinewidth=1,
                    capsize=3, label="± seed std (≥ 2 seeds)", zorder=1)
    for level, label in s.y_marks:
        ax.axhline(level, color=_CHANCE_COLOR, ls=":", lw=1.5, label=label, zorder=0)
    close = np.array(s.within_noise or [False] * len(s.x), dtype=bool)
    if close.any():
        ax.scatter(x[close], y[close], marker="D", s=160, facecolors="none",
                   edgecolors=_NOISE_COLOR, linewidths=1.5, label="front, within noise",
                   zorder=3)
    knee = np.array(s.knee, dtype=bool)
    if knee.any():
        ax.scatter(x[knee], y[knee], s=320, facecolors="none", edgecolors=_KNEE_COLOR,
                   linewidths=2, label="knee", zorder=4)
    ax.set_xlabel(s.x_label)
    ax.set_ylabel(s.y_label)
    ax.set_title(s.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.7)
    return mappable


def _errors(s: ScatterData) -> np.ndarray | None:
    """± mIoU std per point (nan: one seed); None when no point has two seeds."""
    if not any(e is not None for e in s.y_err):
        return None
    return np.array([np.nan if e is None else e for e in s.y_err], dtype=float)


def render_pngs(data: ReportData, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the report's PNGs into ``out_dir`` (which must exist); name -> path."""
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for s in data.scatters:
        fig, ax = _new_figure()
        m = _draw_scatter(ax, s)
        if s.color is not None and m is not None:
            fig.colorbar(m, ax=ax, label=s.color_label)
        fig.tight_layout()
        paths[s.name] = out / f"{s.name}.png"
        fig.savefig(paths[s.name], dpi=110)
    if data.hypervolume is not None:
        hv = data.hypervolume
        fig, ax = _new_figure(6.4, 4.0)
        ax.step(hv.numbers, hv.normalized, where="post", color="#1f77b4")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial number")
        ax.set_ylabel("hypervolume (share of the ideal–reference box)")
        ax.set_title(_hv_title(data), fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        paths["hypervolume"] = out / "hypervolume.png"
        fig.savefig(paths["hypervolume"], dpi=110)
    fig, ax = _new_figure()
    for c in data.curves:
        xs = np.arange(1, len(c.miou) + 1)
        if c.state == "PRUNED":
            ax.plot(xs, c.miou, "--", color="#999999", lw=1, alpha=0.8)
            ax.plot(xs[-1:], c.miou[-1:], "x", color="#999999")
        else:
            ax.plot(xs, c.miou, lw=2.2 if c.pareto else 1, alpha=1 if c.pareto else 0.5,
                    color=_BASELINE_COLOR if c.baseline else None,
                    label=c.label if (c.pareto or c.baseline) else None)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("evaluation (epoch)")
    ax.set_ylabel("mIoU")
    ax.set_title("mIoU per evaluation (dashed grey ×: pruned)")
    ax.grid(alpha=0.3)
    if any(c.pareto or c.baseline for c in data.curves if c.state != "PRUNED"):
        ax.legend(fontsize=6, loc="best", framealpha=0.7)
    fig.tight_layout()
    paths["miou_curves"] = out / "miou_curves.png"
    fig.savefig(paths["miou_curves"], dpi=110)
    for h in data.heatmaps:
        name = f"coverage_trial_{h.number}"
        paths[name] = plot_coverage_map(h.data, out / f"{name}.png")
    return paths


def _fmt_point(values: list[float], names: list[str]) -> str:
    return ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values, strict=True))


def _hv_title(data: ReportData) -> str:
    hv = data.hypervolume
    assert hv is not None
    ref = _fmt_point(hv.reference_point, hv.objectives)
    return f"hypervolume over trials; reference point ({ref})\n{hv.rule}"


# -- plotly -----------------------------------------------------------------------------------
def _hover(s: ScatterData) -> list[str]:
    out = []
    for i, label in enumerate(s.labels):
        extra = f"<br>{s.x_label}: {s.x[i]:.4g}<br>mIoU: {s.y[i]:.4f}"
        if i < len(s.y_err) and s.y_err[i] is not None:
            extra += f" ± {s.y_err[i]:.4f} (seed std)"
        if s.color is not None and math.isfinite(s.color[i]):
            extra += f"<br>{s.color_label}: {s.color[i]:.4g}"
        flags = [f for f, on in (("Pareto", s.pareto[i]), ("knee", s.knee[i]),
                                 ("infeasible", not s.feasible[i])) if on]
        out.append(html.escape(label) + extra + (f"<br>{', '.join(flags)}" if flags else ""))
    return out


def _scatter_figure(s: ScatterData) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    text = _hover(s)
    idx = np.arange(len(s.x))
    feas, par = np.array(s.feasible, dtype=bool), np.array(s.pareto, dtype=bool)

    def pick(mask: np.ndarray, arr: list[Any]) -> list[Any]:
        return [arr[i] for i in idx[mask]]

    for mask, name, marker in (
        (feas & ~par, "trials", {"size": 8, "opacity": 0.7}),
        (par, "Pareto front", {"size": 12, "line": {"width": 2, "color": "black"}}),
    ):
        if not mask.any():
            continue
        m = dict(marker)
        if s.color is not None:
            shown = pick(feas, s.color)
            m.update(color=pick(mask, s.color), colorscale="Viridis", cmin=_finite_min(shown),
                     cmax=_finite_max(shown), showscale=name == "Pareto front" or not par.any(),
                     colorbar={"title": {"text": s.color_label}})
        err = _errors(s)
        error_y = None if err is None else {
            "type": "data", "array": [None if not math.isfinite(e) else float(e)
                                      for e in pick(mask, list(err))],
            "visible": True, "color": "#444444", "thickness": 1, "width": 3}
        fig.add_trace(go.Scatter(x=pick(mask, s.x), y=pick(mask, s.y), mode="markers", name=name,
                                 text=pick(mask, text), hoverinfo="text", marker=m,
                                 error_y=error_y))
    if (~feas).any():
        fig.add_trace(go.Scatter(x=pick(~feas, s.x), y=pick(~feas, s.y), mode="markers",
                                 name="infeasible", text=pick(~feas, text), hoverinfo="text",
                                 marker={"symbol": "x", "color": "#999999", "size": 8}))
    base = np.array([b is not None for b in s.baseline], dtype=bool)
    if base.any():
        fig.add_trace(go.Scatter(
            x=pick(base, s.x), y=pick(base, s.y), mode="markers+text", name="seed baseline",
            text=[b for b in s.baseline if b], textposition="top center",
            hovertext=pick(base, text), hoverinfo="text",
            marker={"symbol": "star-open", "size": 18, "color": _BASELINE_COLOR,
                    "line": {"width": 2}}))
    # open rings around flagged points: taps that never trained, front leads within the noise
    for flags, name, symbol, size, color in (
            (s.dead, "dead taps (never trained)", "square-open", 28, _DEAD_COLOR),
            (s.within_noise or [False] * len(s.x), "front, within noise", "diamond-open", 20,
             _NOISE_COLOR)):
        mask = np.array(flags, dtype=bool)
        if mask.any():
            fig.add_trace(go.Scatter(x=pick(mask, s.x), y=pick(mask, s.y), mode="markers",
                                     name=name, hovertext=pick(mask, text), hoverinfo="text",
                                     marker={"symbol": symbol, "size": size, "color": color,
                                             "line": {"width": 2}}))
    for level, label in s.y_marks:
        fig.add_hline(y=level, line={"dash": "dot", "color": _CHANCE_COLOR, "width": 2},
                      annotation_text=label, annotation_position="bottom right")
    knee = np.array(s.knee, dtype=bool)
    if knee.any():
        fig.add_trace(go.Scatter(x=pick(knee, s.x), y=pick(knee, s.y), mode="markers",
                                 name="knee", hovertext=pick(knee, text), hoverinfo="text",
                                 marker={"symbol": "circle-open", "size": 24, "color": _KNEE_COLOR,
                                         "line": {"width": 3}}))
    if s.x_mark is not None:
        fig.add_vline(x=s.x_mark[0], line={"dash": "dash", "color": "#555555", "width": 1},
                      annotation_text=s.x_mark[1],
                      annotation_position="top left" if s.x and 2 * s.x_mark[0] >= min(s.x)
                      + max(s.x) else "top right")  # the text on the roomier side
    fig.update_layout(title=s.title, xaxis_title=s.x_label, yaxis_title=s.y_label,
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 50})
    return fig


def _finite_min(v: list[float]) -> float | None:
    f = [x for x in v if math.isfinite(x)]
    return min(f) if f else None


def _finite_max(v: list[float]) -> float | None:
    f = [x for x in v if math.isfinite(x)]
    return max(f) if f else None


def coverage_figure(h: HeatMap) -> go.Figure:
    """Interactive count map of one schedule: log10 path counts, holes in blue."""
    import plotly.graph_objects as go

    counts = h.data.counts.astype(np.float64)
    half = h.data.rf // 2
    axis = list(range(-half, half + 1))
    with np.errstate(divide="ignore"):
        logc = np.where(counts > 0, np.round(np.log10(np.maximum(counts, 1)), 3), np.nan)
    holes = np.where(counts == 0, 1.0, np.nan)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=logc.tolist(), x=axis, y=axis, colorscale="OrRd",
                             colorbar={"title": {"text": "log10 paths"}},
                             hovertemplate="x %{x}, y %{y}<br>log10 paths %{z}<extra></extra>",
                             name="paths"))
    if counts.min() == 0:
        fig.add_trace(go.Heatmap(z=holes.tolist(), x=axis, y=axis, showscale=False,
                                 colorscale=[[0, "#2b8cbe"], [1, "#2b8cbe"]],
                                 hovertemplate="x %{x}, y %{y}<br>hole<extra></extra>",
                                 name="holes"))
    fig.update_layout(
        title=(f"trial #{h.number}: {h.data.title}<br>RF {h.data.rf}×{h.data.rf}, coverage "
               f"{100 * h.data.coverage:.1f} %, {h.data.holes} holes (blue)"),
        xaxis={"title": "offset x (stack-input px)", "constrain": "domain"},
        yaxis={"title": "offset y", "autorange": "reversed", "scaleanchor": "x"},
        margin={"t": 70},
    )
    return fig


def plotly_figures(data: ReportData, heatmaps: bool = True) -> dict[str, go.Figure]:
    """The report's interactive figures, keyed by name (``coverage_trial_<N>`` for heat maps)."""
    import plotly.graph_objects as go

    figs: dict[str, go.Figure] = {s.name: _scatter_figure(s) for s in data.scatters}
    if data.hypervolume is not None:
        hv = data.hypervolume
        fig = go.Figure(go.Scatter(
            x=hv.numbers, y=hv.normalized, mode="lines+markers", line={"shape": "hv"},
            customdata=hv.values, name="hypervolume",
            hovertemplate="trial %{x}<br>share %{y:.4f}<br>hypervolume %{customdata:.4g}"
                          "<extra></extra>"))
        import textwrap

        title = "<br>".join(textwrap.fill(line, 120).replace("\n", "<br>")
                            for line in _hv_title(data).split("\n"))
        fig.update_layout(title=title, xaxis_title="trial number",
                          yaxis_title="hypervolume share",
                          # above 1 when the reference point lies past the ranges (10 %)
                          yaxis_range=[0, max([1.02, *(1.03 * v for v in hv.normalized)])],
                          margin={"t": 100})
        figs["hypervolume"] = fig
    fig = go.Figure()
    for c in data.curves:
        xs = list(range(1, len(c.miou) + 1))
        pruned = c.state == "PRUNED"
        fig.add_trace(go.Scatter(
            x=xs, y=c.miou, mode="lines+markers" if pruned else "lines",
            name=c.label + (" (pruned)" if pruned else ""),
            line={"dash": "dash", "color": "#999999", "width": 1} if pruned else
                 {"width": 3 if c.pareto else 1.2,
                  **({"color": _BASELINE_COLOR} if c.baseline else {})},
            marker={"symbol": "x", "size": 6} if pruned else None,
            opacity=1.0 if (c.pareto or pruned or c.baseline) else 0.6))
    fig.update_layout(title="mIoU per evaluation (dashed grey: pruned; thick: Pareto)",
                      xaxis_title="evaluation (epoch)", yaxis_title="mIoU", xaxis_dtick=1)
    figs["miou_curves"] = fig
    if heatmaps:
        for h in data.heatmaps:
            if h.data.rf <= HEATMAP_MAX_RF:
                figs[f"coverage_trial_{h.number}"] = coverage_figure(h)
    return figs


# -- HTML -------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 5px;
text-align:right}td{white-space:nowrap}th{background:#f3f3f3}td.l{text-align:left}tr.knee{background:#fff1e0}
tr.dead{background:#fbeaea}.obj{color:#1f77b4;font-weight:bold}.warn{color:#8a4b00}
.ok{color:#2a7a2a}.no{color:#b22}.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:12px;color:#555}.note{color:#555;font-size:13px}
"""


def _v(x: Any, fmt: str = "{:.4g}") -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return '<span class="ok">✓</span>' if x else '<span class="no">✗</span>'
    if isinstance(x, float):
        return fmt.format(x)
    return html.escape(str(x))


_ARROW = {"maximize": "↑", "minimize": "↓"}


def _pareto_table(data: ReportData) -> str:
    t = data.table
    head = "".join(
        f'<th title="{html.escape(c.doc)}">{html.escape(c.label)}'
        + (f' <span class="obj">{_ARROW.get(c.direction, "")}</span>' if c.direction else "")
        + "</th>" for c in t.columns)
    rows = []
    for cells, number, knee, dead in zip(t.rows, t.numbers, t.knee, t.dead, strict=True):
        tds = []
        for c, v in zip(t.columns, cells, strict=True):
            if c.key == "number":
                text = f"#{number}" + (" ★knee" if knee else "")
                tds.append(f'<td class="l">{html.escape(text)}</td>')
            elif c.key == "dead_taps" and isinstance(v, int) and v > 0:
                tds.append(f'<td class="no">⚠ {v}</td>')
            else:
                tds.append(f'<td class="l">{_v(v)}</td>' if c.key == "schedule"
                           else f"<td>{_v(v)}</td>")
        cls = " ".join(n for n, on in (("knee", knee), ("dead", dead)) if on)
        rows.append(f'<tr class="{cls}">{"".join(tds)}</tr>')
    body = "\n".join(rows) or (f'<tr><td colspan="{len(t.columns)}">no feasible COMPLETE '
                               "trial</td></tr>")
    legend = "; ".join(f"<b>{html.escape(c.label)}</b>: {html.escape(c.doc)}"
                       for c in t.columns if c.doc and c.key in ("rf", "rf_crop", "dead_taps"))
    notes = "".join(f'<p class="note warn">{html.escape(n)}</p>' for n in t.notes)
    return (f'<p class="note">↑/↓: an objective of the study (maximised / minimised). '
            f"{legend}.</p>{notes}"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}" width="440">'


def render_html(data: ReportData, path: str | os.PathLike[str],
                pngs: dict[str, Path] | None = None) -> Path:
    """Write ``report.html``: one self-contained file (plotly.js inlined, PNGs as data URIs).

    ``pngs`` are the files ``render_pngs`` wrote (heat maps are taken from there); without
    them the heat maps are rendered into a temporary folder first.
    """
    import tempfile

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        if pngs is None or any(f"coverage_trial_{h.number}" not in pngs for h in data.heatmaps):
            pngs = {**(pngs or {}),
                    **{f"coverage_trial_{h.number}":
                       plot_coverage_map(h.data, Path(tmp) / f"c{h.number}.png")
                       for h in data.heatmaps}}
        heat = "\n".join(
            f"<figure>{_img(pngs[f'coverage_trial_{h.number}'], h.data.title)}"
            f"<figcaption>trial #{h.number} [{html.escape(h.schedule)}]: {h.data.holes} holes"
            f"</figcaption></figure>" for h in data.heatmaps)
    figs = plotly_figures(data, heatmaps=False)
    parts = []
    for i, (name, fig) in enumerate(figs.items()):
        parts.append(f'<div id="fig-{name}">' + fig.to_html(
            full_html=False, include_plotlyjs=(i == 0), default_height="480px",
            div_id=f"plot-{name}", config={"displaylogo": False}) + "</div>")
    meta = data.meta
    states = ", ".join(f"{n} {s}" for s, n in sorted(data.states.items()))
    objs = ", ".join(f"{o.name} ({o.direction})" for o in data.objectives)
    data_desc = html.escape(str(meta.get("data", "")))[:400]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    baselines = ", ".join(f"{html.escape(k)} (#{v})" for k, v in data.baselines.items()) or "none"
    dead = ("" if not data.dead_taps else
            "<br>Trained with dead taps at the training crop (those taps never trained; never "
            "the knee): " + ", ".join(f"#{n} ({d})" for n, d in data.dead_taps.items()) + ".")
    hv_note = (html.escape(_hv_title(data).replace("\n", "; ")) if data.hypervolume
               else "no feasible COMPLETE trial, no hypervolume")
    warn = "".join(f'<p class="warn"><b>warning:</b> {html.escape(w)}</p>'
                   for w in data.warnings)
    chance = data.chance_note or ("chance level unknown: the study did not record the val "
                                  "split's class pixel counts")
    knee_close = ("" if not data.knee_close else
                  f'<p class="note warn">{html.escape(data.knee_close)}</p>')
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>nas-dil report: {html.escape(data.study_name)}</title><style>{_CSS}</style></head>
<body>
<h1>nas-dil report: {html.escape(data.study_name)}</h1>
<p>Objectives: {html.escape(objs)}. Trials: {data.n_trials} ({html.escape(states)});
feasible COMPLETE: {data.n_feasible}. Seed baselines: {baselines}.{dead}<br>
<span class="note">nas-dil {html.escape(str(meta.get("version", "?")))}; data: {data_desc};
written {when}.</span></p>
{warn}
<p>{html.escape(data.noise_note)}.<br>{html.escape(chance)}.</p>
<h2>Pareto front ({len(data.pareto)} schedules)</h2>
<p class="note">Non-dominated feasible COMPLETE trials over the study's objectives, each
mIoU the mean over its seeds. {html.escape(data.knee_rule)}.</p>{knee_close}
{_pareto_table(data)}
<h2>Figures</h2>
<p class="note">{hv_note}</p>
{"".join(parts)}
<h2>Coverage of the Pareto schedules</h2>
<p class="note">Paths from each input offset to the centre unit of the dilated stack (log
colour); blue cells are holes the unit never sees (gridding).</p>
<div class="grid">{heat}</div>
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path
