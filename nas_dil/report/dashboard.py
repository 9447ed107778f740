"""`nas-dil dashboard`: optuna-dashboard on a study's storage, with the report attached.

The dashboard reads the study through a read-only view (``ReadOnlyOverlay``): the SQLite file
is opened with ``mode=ro`` and nothing is ever written to it, so it is safe next to a running
search (each read is one short transaction; no lock is held between requests). What the
dashboard shows beyond Optuna's own views is *overlaid* on that view, in memory:

- the report's figures (mIoU vs GFLOPs coloured by RF, mIoU vs RF, hypervolume with its
  reference point, mIoU curves with pruned trials, one coverage heat map per Pareto schedule)
  as optuna-dashboard plotly graph objects (made with ``save_plotly_graph_object``);
- a study note (markdown) with the Pareto table, knee and reference point, and a note on each
  Pareto trial with its schedule, holes and HDC verdicts (``save_note``);
- each Pareto trial's coverage heat map as a PNG artifact of that trial
  (``optuna.artifacts.upload_artifact`` into a ``FileSystemArtifactStore`` in a temporary
  folder);
- the objective names (``study:metric_names``) from the study's ``nas_dil`` attr if the search
  did not set them.

Those attributes are produced by the public functions above, run against a scratch in-memory
study; the overlay then serves them as if they were stored. A background thread rebuilds them
when the trials change (every ``refresh_s`` seconds at most).

Two workarounds for optuna-dashboard 0.21 with Optuna ≥ 4 (said here and in the README):

1. **Constraints set with ``trial.set_constraint(name, v)``** are stored as one system attr per
   name (``constraints:<name>``), but the dashboard only reads the old list attr
   ``constraints``, so it would show every such trial as feasible. The overlay adds the list
   (``FrozenTrial.constraints`` values, Optuna's own reading of both formats) to each trial
   that lacks it.
2. **The server's "best trials"** (the Pareto list of a multi-objective study) ignores
   constraints, so an infeasible trial can appear there and hide feasible ones it dominates.
   ``dashboard_app`` swaps ``optuna_dashboard._app.get_pareto_front_trials`` for a version
   that keeps feasible trials only (as ``Study.best_trials`` does).
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from nas_dil.errors import UserError
from nas_dil.report.data import NoCompleteTrialError, ReportData, build_report
from nas_dil.report.overlay import ReadOnlyOverlay
from nas_dil.report.source import StudySource, open_storage, open_study
from nas_dil.search.records import feasible

if TYPE_CHECKING:
    import optuna
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial

__all__ = [
    "DashboardServer",
    "ReadOnlyOverlay",
    "dashboard_app",
    "overlay_attrs",
    "serve_dashboard",
]

log = logging.getLogger(__name__)

GRAPH_PREFIX = "nasdil-"  # ids of the graph objects this module attaches


# -- what the overlay holds -------------------------------------------------------------------
class _CaptureTrialAttrs:
    """The one storage method ``upload_artifact`` calls for a trial: record instead of write."""

    def __init__(self, into: dict[int, dict[str, Any]]) -> None:
        self._into = into

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._into.setdefault(trial_id, {})[key] = value


def _yes(v: bool | None) -> str:
    return "–" if v is None else ("✓" if v else "✗")


def _num(v: float | int | None, fmt: str = "{:.4g}") -> str:
    return "–" if v is None else fmt.format(v)


# the report table's columns the study note shows (every objective is shown too)
_NOTE_KEYS = ("number", "schedule", "output_stride", "width", "rf", "rf_crop", "dead_taps",
              "params", "holes", "hdc", "baseline")
_ARROW = {"maximize": " ↑", "minimize": " ↓"}


def _md(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return _yes(v) if isinstance(v, bool) else "–"
    return _num(v) if isinstance(v, float) else str(v).replace("|", "\\|")


def _note_table(data: ReportData) -> list[str]:
    t = data.table
    keep = [i for i, c in enumerate(t.columns) if c.direction or c.key in _NOTE_KEYS]
    head = [t.columns[i].label + _ARROW.get(t.columns[i].direction or "", "") for i in keep]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(keep)]
    for cells, number, knee in zip(t.rows, t.numbers, t.knee, strict=True):
        out = [f"#{number}" + (" **knee**" if knee else "") if t.columns[i].key == "number"
               else _md(cells[i]) for i in keep]
        lines.append("| " + " | ".join(out) + " |")
    return lines


def _study_note(data: ReportData | None, waiting: str | None) -> str:
    if data is None:
        return f"## nas-dil\n\n{waiting}\n"
    objs = ", ".join(f"{o.name} ({o.direction})" for o in data.objectives)
    lines = [
        f"## nas-dil study `{data.study_name}`",
        "",
        f"Objectives: {objs}. Trials: {data.n_trials}; feasible COMPLETE: {data.n_feasible}.",
        *(f"**warning**: {w}" for w in data.warnings),
        f"{data.noise_note}; {data.chance_note or 'chance level unknown'}.",
        "The plots below the trials table and each Pareto trial's artifacts show the "
        "schedules' coverage (blue: holes, i.e. gridding).",
        "",
        f"### Pareto front ({len(data.pareto)}), {data.knee_rule}",
        "",
        *(f"- {n}" for n in data.table.notes),
        *([f"- {data.knee_close}"] if data.knee_close else []),
        "",
        *_note_table(data),
    ]
    if data.hypervolume is not None:
        hv = data.hypervolume
        ref = ", ".join(f"{n} {v:.4g}" for n, v in zip(hv.objectives, hv.reference_point,
                                                        strict=True))
        lines += ["", f"Hypervolume {hv.values[-1]:.4g} ({100 * hv.normalized[-1]:.1f} % of "
                      f"the box); reference point ({ref}): {hv.rule}."]
    return "\n".join(lines) + "\n"


def _trial_note(r: Any) -> str:
    crop = "" if r.crop is None else f" at its {r.crop[0]}×{r.crop[1]} training crop"
    if r.rf_usable is None:  # an older study: its rf is the nominal one
        rf = f"RF {_num(r.rf_nominal)} px (nominal; usable not recorded)"
    else:
        rf = f"RF usable {_num(r.rf_usable)} / nominal {_num(r.rf_nominal)} px{crop}"
    dead = ("" if not r.dead_taps else f"; **{r.dead_taps} dead taps** (never trained: "
            f"{', '.join(r.dead_layers) or 'see dead_layers'})")
    return (f"**nas-dil**: schedule `{r.schedule}` (K{r.kernel}, OS{r.output_stride}, "
            f"width {r.width}); {rf}, stack RF {_num(r.rf_stack)}{dead}; "
            f"holes {_num(r.holes, '{}')}; HDC rules 1/2/3: {_yes(r.hdc_rule1)} "
            f"{_yes(r.hdc_rule2)} {_yes(r.hdc_rule3)} (rule 1 per sawtooth group: "
            f"{_yes(r.hdc_rule1_groups)}); on the Pareto front"
            f"{' (the knee)' if r.knee else ''}. Coverage heat map: see the artifacts.")


def overlay_attrs(
    src: StudySource,
    artifact_store: Any,
    artifact_dir: Path,
    uploaded: dict[int, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[int, dict[str, Any]], ReportData | None]:
    """(study system attrs, trial system attrs by trial id, report data) to overlay.

    ``uploaded`` carries heat-map artifacts from earlier calls (trial id -> attrs) so each
    PNG is made once.
    """
    import optuna
    from optuna.artifacts import upload_artifact
    from optuna_dashboard import save_note, save_plotly_graph_object

    from nas_dil.report.coverage_plot import plot_coverage_map
    from nas_dil.report.render import plotly_figures

    try:
        data: ReportData | None = build_report(src)
        waiting = None
    except NoCompleteTrialError as e:
        data, waiting = None, str(e).split(": ", 1)[-1] + "; the figures appear with it."
    from optuna.study import StudyDirection

    mem = optuna.storages.InMemoryStorage()
    mem.create_new_study([StudyDirection[o.direction.upper()] for o in src.objectives],
                         study_name="nas-dil-overlay")
    scratch = optuna.load_study(study_name="nas-dil-overlay", storage=mem)  # no log line
    if not src.study.metric_names:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" in Optuna 3.x/4.x
            scratch.set_metric_names([o.name for o in src.objectives])
    save_note(scratch, _study_note(data, waiting))
    trial_attrs: dict[int, dict[str, Any]] = {k: dict(v) for k, v in (uploaded or {}).items()}
    if data is not None:
        for name, fig in plotly_figures(data).items():
            save_plotly_graph_object(scratch, fig, graph_object_id=GRAPH_PREFIX + name)
        by_number = {t.number: t for t in src.study.get_trials(deepcopy=False)}
        for r in data.pareto:
            t = by_number[r.number]
            # save_note takes a Trial; this duck-typed stand-in writes into the scratch study
            save_note(SimpleNamespace(storage=scratch._storage,  # type: ignore[arg-type]
                                      study=SimpleNamespace(_study_id=scratch._study_id),
                                      _trial_id=t._trial_id), _trial_note(r))
        for h in data.heatmaps:
            t = by_number[h.number]
            if t._trial_id in trial_attrs:
                continue
            png = plot_coverage_map(h.data, artifact_dir / f"coverage_trial_{h.number}.png")
            upload_artifact(artifact_store=artifact_store, file_path=str(png), study_or_trial=t,
                            storage=_CaptureTrialAttrs(trial_attrs))  # type: ignore[arg-type]
    study_attrs = scratch._storage.get_study_system_attrs(scratch._study_id)
    return study_attrs, trial_attrs, data


# -- the app ----------------------------------------------------------------------------------
def _patch_best_trials() -> None:
    """Workaround 2: the server's Pareto list keeps feasible trials only."""
    import optuna_dashboard._app as app_mod

    orig = app_mod.get_pareto_front_trials
    if getattr(orig, "_nas_dil_feasible_only", False):
        return

    def feasible_pareto_front(trials: list[FrozenTrial],
                              directions: list[StudyDirection]) -> list[FrozenTrial]:
        return orig([t for t in trials if feasible(t.constraints)], directions)

    feasible_pareto_front._nas_dil_feasible_only = True  # type: ignore[attr-defined]
    app_mod.get_pareto_front_trials = feasible_pareto_front


class _Refresher:
    def __init__(self, src: StudySource, overlay: ReadOnlyOverlay, artifact_store: Any,
                 artifact_dir: Path, refresh_s: float) -> None:
        self.src, self.overlay = src, overlay
        self.store, self.dir, self.refresh_s = artifact_store, artifact_dir, refresh_s
        self._signature: tuple[Any, ...] | None = None
        self._uploaded: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.data: ReportData | None = None

    def signature(self) -> tuple[Any, ...]:
        ts = self.src.study.get_trials(deepcopy=False)
        return tuple((t.number, t.state.name, len(t.intermediate_values)) for t in ts)

    def refresh(self, force: bool = False) -> bool:
        sig = self.signature()
        if sig == self._signature and not force:
            return False
        study_attrs, trial_attrs, self.data = overlay_attrs(self.src, self.store, self.dir,
                                                            self._uploaded)
        self._uploaded = trial_attrs
        self.overlay.set_overlay(study_attrs, trial_attrs)
        self._signature = sig
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception:  # a locked or half-written database: try again next tick
                log.warning("nas-dil dashboard: refresh failed; retrying", exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nas-dil-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class DashboardApp:
    app: Any  # the WSGI application
    source: StudySource
    overlay: ReadOnlyOverlay
    refresher: _Refresher
    study_id: int
    artifact_dir: Path

    def path(self) -> str:
        """URL path of the study's page."""
        return f"/dashboard/studies/{self.study_id}"


def dashboard_app(
    source: str | os.PathLike[str] | optuna.Study | StudySource,
    study: str | None = None,
    *,
    artifact_dir: str | os.PathLike[str],
    refresh_s: float = 10.0,
) -> DashboardApp:
    """The optuna-dashboard WSGI app on a read-only overlay of the study (see module doc).

    The overlay is computed once before this returns; ``.refresher.start()`` keeps it fresh.
    """
    import optuna
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    src = open_study(source, study)
    if isinstance(source, optuna.Study | StudySource):
        backend = src.study._storage
    else:
        backend, *_ = open_storage(source)
    study_id = backend.get_study_id_from_name(src.name)
    overlay = ReadOnlyOverlay(backend, study_id)
    adir = Path(artifact_dir)
    adir.mkdir(parents=True, exist_ok=True)
    (adir / "store").mkdir(exist_ok=True)
    store = FileSystemArtifactStore(str(adir / "store"))
    refresher = _Refresher(src, overlay, store, adir, refresh_s)
    refresher.refresh(force=True)
    _patch_best_trials()
    app = optuna_dashboard.wsgi(overlay, artifact_store=store)
    return DashboardApp(app, src, overlay, refresher, study_id, adir)


def _bind(host: str, port: int) -> Any:
    """A thread-per-request WSGI server bound to ``host:port`` (its app is set later)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class _Threading(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    def unset(environ: Any, start_response: Any) -> list[bytes]:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"starting"]

    try:
        return make_server(host, port, unset, server_class=_Threading, handler_class=_Quiet)
    except OSError as e:
        hint = " (pick another with --port)" if e.errno == errno.EADDRINUSE else ""
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None


class DashboardServer:
    """A running dashboard; ``serve_forever()`` or ``start()``, then ``stop()``."""

    def __init__(self, dash: DashboardApp, httpd: Any, host: str, tmp: Any = None) -> None:
        self.dash, self.httpd, self.host, self._tmp = dash, httpd, host, tmp
        self.port: int = httpd.server_port
        self._thread: threading.Thread | None = None
        self._served = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.dash.path()}"

    def serve_forever(self) -> None:
        self._served = True
        self.dash.refresher.start()
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> DashboardServer:
        """Serve from a background thread (tests, notebooks)."""
        self._served = True  # before the thread runs: stop() right after must still shut down
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.dash.refresher.stop()
        if self._served:  # shutdown() waits for serve_forever, which must have run
            self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()


def serve_dashboard(
    source: str | os.PathLike[str] | optuna.Study | StudySource,
    study: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    refresh_s: float = 10.0,
) -> DashboardServer:
    """Check the study, bind ``host:port`` (port 0: any free port), build the app; then call
    ``serve_forever()`` or ``start()`` on the result. Artifacts live in a temporary folder
    that ``stop()`` removes.
    """
    open_study(source, study)  # bad input fails before anything else happens
    httpd = _bind(host, port)
    tmp = tempfile.TemporaryDirectory(prefix="nas-dil-dashboard-")
    try:
        dash = dashboard_app(source, study, artifact_dir=tmp.name, refresh_s=refresh_s)
    except BaseException:
        httpd.server_close()
        tmp.cleanup()
        raise
    httpd.set_app(dash.app)
    return DashboardServer(dash, httpd, host, tmp)
