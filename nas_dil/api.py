"""The Python API: describe a study, run it, read its front, export from it (docs/python_api.md).

For the notebook what the CLI is for the shell; the CLI's ``search``, ``report`` and ``export``
call these functions. Bad input raises the same one-line `nas_dil.errors.UserError` subclasses
the CLI prints (nothing here exits the interpreter)::

    import nas_dil

    study = nas_dil.Study.from_toml("quickstart")        # or Study.from_dict({...})
    results = study.run(n_trials=12)                      # a progress bar in Jupyter
    results.front                                         # [FrontCandidate, ...]
    results.front_dataframe()                             # mean, std, n_seeds per objective
    results.export(pick="knee", out="exports/knee")       # schedule.json (+ weights.pt)

`Results` reads a finished (or running) study read-only: ``nas_dil.open_results(OUT_DIR)``.
A candidate trained with several seeds (``[sampler] repeats``) is one `FrontCandidate` whose
measured objectives are the mean over its looks (`nas_dil.search.looks.merge_looks`), with their
sample std; the front and the knee are the report's and export's (`looks.feasible_front`,
`report.data.knee_trial`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nas_dil.search.config import StudyConfig, load_study_config, parse_study_config
from nas_dil.search.progress import Progress, SearchSummary, Status

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from nas_dil.export.bundle import ExportResult
    from nas_dil.export.pick import Pick
    from nas_dil.report.files import ReportFiles
    from nas_dil.report.source import StudySource
    from nas_dil.search.looks import CandidateResult

__all__ = ["FrontCandidate", "ProgressCallback", "Results", "Study", "export", "open_results",
           "run_study", "write_report"]

# called on every status change: the counts, and the event (a trial finished…) or None
ProgressCallback = Callable[[Status, str | None], None]
ProgressArg = bool | Literal["bar", "line"] | ProgressCallback | Progress | None


# -- progress: a bar for notebooks, a callback, or the CLI's status line ---------------------

class _CallbackProgress(Progress):
    """Hands each status (and event, or message) to a callable instead of drawing it."""

    def __init__(self, callback: ProgressCallback) -> None:
        super().__init__(enabled=True)
        self.callback = callback
        self._status = Status(n_trials=0)  # a message before the first status gets an empty one

    def show(self, status: Status, event: str | None = None) -> None:
        self._status = status
        self.callback(status, event)

    def message(self, text: str) -> None:
        self.callback(self._status, text)

    def close(self, status: Status) -> None:
        self.show(status)


class _BarProgress(Progress):
    """A tqdm.auto bar (a widget in Jupyter, a text bar elsewhere) over finished trials; the
    status line's counts in its postfix, messages printed above it."""

    def __init__(self) -> None:
        super().__init__(enabled=True)
        self._bar: Any = None

    def _get(self, status: Status) -> Any:
        if self._bar is None:
            import warnings

            with warnings.catch_warnings():  # no ipywidgets: tqdm falls back to text, says so
                warnings.simplefilter("ignore")
                from tqdm.auto import tqdm

                self._bar = tqdm(total=status.n_trials, unit="trial", dynamic_ncols=True)
        return self._bar

    def show(self, status: Status, event: str | None = None) -> None:
        bar = self._get(status)
        bar.total = status.n_trials
        bar.n = min(status.done, status.n_trials)
        bar.set_postfix_str(f"running {status.running} · complete {status.complete} · pruned "
                            f"{status.pruned} · failed {status.failed} · front {status.front} "
                            f"· HV {status.hypervolume:.4f}", refresh=False)
        bar.refresh()

    def message(self, text: str) -> None:
        if self._bar is None:
            print(text)
        else:
            self._bar.write(text)

    def close(self, status: Status) -> None:
        self.show(status)
        self._bar.close()


def _progress(progress: ProgressArg) -> Progress:
    if isinstance(progress, Progress):
        return progress
    if progress is None or progress is False:
        return Progress(enabled=False)
    if progress is True or progress == "line":
        return Progress(enabled=True)
    if progress == "bar":
        try:
            import tqdm  # noqa: F401
        except ImportError:  # pragma: no cover - tqdm comes with optuna
            return Progress(enabled=True)
        return _BarProgress()
    if callable(progress):
        return _CallbackProgress(progress)
    from nas_dil.errors import UserError

    raise UserError(f"progress={progress!r}: expected 'bar', 'line', True, False, None or a "
                    "callable(status, event)")


# -- the study ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Study:
    """A validated study description (a study file's content), ready to run.

    ``Study.from_toml("quickstart")`` reads a study file or a shipped study; ``from_dict``
    takes the same keys as a study file (README "Search"; search/config.py), relative paths at
    ``base_dir``. Either raises a one-line `StudyConfigError` naming the key.
    """

    config: StudyConfig  # the parsed study file (nas_dil.search.config)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Study:
        return cls(load_study_config(os.fspath(path)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *,
                  base_dir: str | os.PathLike[str] | None = None) -> Study:
        """A study from a dict shaped like a study file (``{"space": "hdc", "n_trials": 12,
        "trial": {"kind": "train"}, ...}``). ``name`` defaults to "study"; ``space``,
        ``out`` and other relative paths start at ``base_dir`` (default: the working
        folder), which messages name as ``<base_dir>/<dict>``."""
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        d = dict(data) if isinstance(data, Mapping) else data
        if isinstance(d, dict):
            d.setdefault("name", "study")
        return cls(parse_study_config(d, base.resolve() / "<dict>"))

    @property
    def name(self) -> str:
        return self.config.name

    def to_dict(self) -> dict[str, Any]:
        """What the study records as its config (paths resolved)."""
        return self.config.to_dict()

    def run(self, n_trials: int | None = None, *, out: str | os.PathLike[str] | None = None,
            storage: str | None = None, address: str | None = None, resume: bool = False,
            progress: ProgressArg = "bar", num_cpus: int | None = None,
            tensorboard: bool = False, confirm: int | None = None) -> Results:
        """Run (or continue) the study until ``n_trials`` trials finished; see `run_study`."""
        return run_study(self, n_trials, out=out, storage=storage, address=address,
                         resume=resume, progress=progress, num_cpus=num_cpus,
                         tensorboard=tensorboard, confirm=confirm)


def run_study(study: Study | StudyConfig | str | os.PathLike[str] | Mapping[str, Any],
              n_trials: int | None = None, *, out: str | os.PathLike[str] | None = None,
              storage: str | None = None, address: str | None = None, resume: bool = False,
              progress: ProgressArg = "bar", num_cpus: int | None = None,
              tensorboard: bool = False, confirm: int | None = None) -> Results:
    """Run (or continue: the same call again) a study; the `Results` of its storage.

    ``study``: a `Study`, a parsed config, a study file (or shipped name) or a dict.
    ``n_trials``: finished trials to reach (default: the study's). ``out``: the output folder
    (default: the study's ``out``, ``runs/<name>``); ``storage``: an SQLAlchemy URL (default
    ``sqlite:///OUT/study.db``). ``address``: a Ray cluster (host:port, ray://host:port,
    auto; default ``$RAY_ADDRESS``, else a local Ray on 127.0.0.1); ``num_cpus`` caps a
    local one. ``progress``: "bar" (tqdm.auto: a widget in Jupyter), "line" or True (the
    CLI's status line on stderr), False/None (silent), or a callable(status, event).
    ``tensorboard``: write every trial's curves and the hypervolume under ``OUT/tb/``.
    ``confirm``: seeds each front candidate is retrained to after ``n_trials`` (default: the
    study's ``[confirm] seeds``; 0: none).
    Ctrl-C (or the notebook's interrupt) stops cleanly: ``results.summary.interrupted``.
    """
    from nas_dil.search.driver import run_search
    from nas_dil.search.storage import default_url

    cfg = _config(study)
    prog = _progress(progress)
    summary = run_search(cfg, n_trials=n_trials, storage=storage,
                         out=None if out is None else Path(out), address=address,
                         resume=resume, progress=prog, num_cpus=num_cpus,
                         tensorboard=tensorboard, confirm=confirm)
    url = storage or cfg.storage or default_url(Path(summary.out_dir))
    return Results(url, study=summary.study_name, summary=summary, storage_url=url)


def _config(study: Study | StudyConfig | str | os.PathLike[str] | Mapping[str, Any]
            ) -> StudyConfig:
    if isinstance(study, Study):
        return study.config
    if isinstance(study, StudyConfig):
        return study
    if isinstance(study, Mapping):
        return Study.from_dict(study).config
    return load_study_config(os.fspath(study))


# -- results -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrontCandidate:
    """One candidate of a study (its looks merged): what it is and what it scored.

    ``values``: each objective's mean over the candidate's looks (an analytic objective is
    the same for every look); ``std``: the sample std (n - 1) of a measured objective over
    two looks or more, else None; ``trials``: every look's trial number; ``number``: the
    one that stands for it (kept weights, exported).
    """

    number: int
    trials: tuple[int, ...]
    seeds: tuple[int | None, ...]  # each look's training seed
    rates: tuple[int, ...]  # the searched dilation rates
    kernel: int | None
    output_stride: int | None
    width: int | None
    values: Mapping[str, float]  # objective -> mean over the looks
    std: Mapping[str, float | None]  # objective -> std over the looks (None: one look)
    feasible: bool
    pareto: bool  # on the feasible Pareto front
    knee: bool  # the front's knee (what pick="knee" exports)
    dead_taps: int  # taps that read only padding at the training crop
    result: CandidateResult = field(repr=False, compare=False)  # the merged looks, raw

    @property
    def n_seeds(self) -> int:
        return len(self.trials)

    @property
    def schedule(self) -> str:
        """The rates as the CLI writes them: ``"1,2,5"``."""
        return ",".join(map(str, self.rates))

    def get(self, name: str) -> object:
        """Any recorded attribute (gflops, rf, params, miou_curve …); a measured objective
        its mean over the looks."""
        return self.result.get(name)


class Results:
    """A nas-dil study's storage, read-only: its front, tables and exports.

    ``nas_dil.open_results(OUT_DIR_OR_STORAGE)`` or what `Study.run` returns (then with the
    run's ``summary``). The storage is opened on first use; every read looks at it afresh,
    so it can follow a running search.
    """

    def __init__(self, source: str | os.PathLike[str] | optuna.Study, *,
                 study: str | None = None, summary: SearchSummary | None = None,
                 storage_url: str | None = None) -> None:
        self._where = source
        self._study = study
        self._source: StudySource | None = None  # opened on first use
        self.summary = summary  # the run's, when these results come from `Study.run`
        # the URL the search wrote to (None: opened from elsewhere; see source.storage_url)
        self.storage_url = storage_url

    @property
    def source(self) -> StudySource:
        """The study, opened read-only (`nas_dil.report.source.open_study`) on first use."""
        if self._source is None:
            from nas_dil.report.source import open_study

            self._source = open_study(self._where, self._study)
        return self._source

    def __repr__(self) -> str:
        return f"Results(study={self.name!r}, location={self.source.location!r})"

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def objectives(self) -> tuple[Any, ...]:
        """The study's objectives (``name``, ``direction``), in order."""
        return self.source.objectives

    def candidates(self) -> list[FrontCandidate]:
        """Every COMPLETE candidate (looks merged), in the order of their first trial."""
        from nas_dil.report.data import knee_trial
        from nas_dil.search.looks import feasible_front, merge_looks

        objs = self.source.objectives
        complete = [t for t in self.source.trials() if t.state == "complete"]
        merged = merge_looks(complete, objs)
        front = feasible_front(merged, objs)
        knee, _ = knee_trial(front, objs) if front else (None, "")
        on_front = {id(r) for r in front}
        return [_candidate(r, objs, id(r) in on_front, r is knee) for r in merged]

    @property
    def front(self) -> list[FrontCandidate]:
        """The feasible Pareto front (the report's and export's), best first by the first
        objective."""
        first = self.source.objectives[0] if self.source.objectives else None
        front = [c for c in self.candidates() if c.pareto]
        if first is None:
            return front
        sign = -1.0 if first.direction == "maximize" else 1.0
        return sorted(front, key=lambda c: (sign * c.values.get(first.name, math.nan),
                                            c.number))

    @property
    def knee(self) -> FrontCandidate | None:
        """The front's knee (``pick="knee"``); None without a front."""
        return next((c for c in self.candidates() if c.knee), None)

    def front_dataframe(self, *, all_candidates: bool = False) -> pd.DataFrame:
        """One row per front candidate (``all_candidates``: every COMPLETE one): number,
        trials, schedule, output_stride, width, n_seeds, ``<objective>_mean`` /
        ``<objective>_std`` (NaN: one look; an analytic objective's std is 0 over two looks
        or more), feasible, pareto, knee, dead_taps, gflops, params, rf."""
        import pandas as pd

        rows = self.candidates() if all_candidates else self.front
        objs = self.source.objectives
        cols = ["number", "trials", "schedule", "output_stride", "width", "n_seeds",
                *[f"{o.name}_{s}" for o in objs for s in ("mean", "std")],
                "feasible", "pareto", "knee", "dead_taps", "gflops", "params", "rf"]
        data = []
        for c in rows:
            row: dict[str, Any] = {"number": c.number, "trials": list(c.trials),
                                   "schedule": c.schedule, "output_stride": c.output_stride,
                                   "width": c.width, "n_seeds": c.n_seeds}
            for o in objs:
                s = c.std.get(o.name)
                row[f"{o.name}_mean"] = c.values.get(o.name, math.nan)
                row[f"{o.name}_std"] = math.nan if s is None else s
            row.update(feasible=c.feasible, pareto=c.pareto, knee=c.knee,
                       dead_taps=c.dead_taps, gflops=c.get("gflops"), params=c.get("params"),
                       rf=c.get("rf"))
            data.append(row)
        return pd.DataFrame(data, columns=cols)

    def trials_dataframe(self) -> pd.DataFrame:
        """One row per trial, every recorded field (`nas_dil.trials_dataframe`)."""
        from nas_dil.report.tables import trials_dataframe

        return trials_dataframe(self.source)

    def export(self, pick: str | Pick = "knee", out: str | os.PathLike[str] = "export", *,
               force: bool = False, onnx: bool = False, mmseg: bool = False,
               allow_unconfirmed: bool = False,
               backbone_weights: str | os.PathLike[str] | None = None) -> ExportResult:
        """Export the picked trial (`nas_dil.export.export_trial`; pick: knee, best-miou,
        trial=N, max-gflops=X[,min-rf=Y]) into ``out``; ``mmseg``: also an mmsegmentation
        config and checkpoint (`nas_dil.export.mmseg`). A pick with fewer seeds than the
        study confirms over is refused unless ``allow_unconfirmed``; ``backbone_weights``:
        a frozen backbone's weights file where it is now, when it moved since the search."""
        return export(self.source, pick, out, force=force, onnx=onnx, mmseg=mmseg,
                      allow_unconfirmed=allow_unconfirmed, backbone_weights=backbone_weights)

    def report(self, out: str | os.PathLike[str] | None = None) -> ReportFiles:
        """Write report.html, its figures and CSVs (default: OUT_DIR/report)."""
        return write_report(self.source, out)


def _candidate(r: CandidateResult, objectives: Sequence[Any], pareto: bool,
               knee: bool) -> FrontCandidate:
    cand = r.record.candidate or {}
    values = dict(zip((o.name for o in objectives), r.values or (), strict=False))
    std: dict[str, float | None] = {}
    for o in objectives:
        if o.name in r.std:
            std[o.name] = float(r.std[o.name])
        else:  # one look, or an analytic objective (the same for every look)
            std[o.name] = 0.0 if (r.n_looks > 1 and not o.measured) else None
    dead = r.record.dead_taps
    return FrontCandidate(
        number=r.number, trials=tuple(t.number for t in r.looks),
        seeds=tuple(t.record.seed for t in r.looks),
        rates=tuple(int(x) for x in cand.get("rates", ())),
        kernel=cand.get("kernel"), output_stride=cand.get("output_stride"),
        width=cand.get("width"), values=values, std=std, feasible=r.feasible, pareto=pareto,
        knee=knee, dead_taps=int(dead or 0), result=r)


def open_results(source: str | os.PathLike[str] | optuna.Study, study: str | None = None
                 ) -> Results:
    """The `Results` of a search: its output folder, its study.db, a storage URL or an open
    ``optuna.Study``; ``study`` names one when the storage holds several. A location that
    holds no nas-dil study raises `StudySourceError` here."""
    results = Results(source, study=study)
    results.source  # noqa: B018 - open now: a bad location is refused at once
    return results


def write_report(source: str | os.PathLike[str] | optuna.Study | StudySource,
                 out: str | os.PathLike[str] | None = None, *, study: str | None = None
                 ) -> ReportFiles:
    """report.html, figures and CSVs of a study (``nas-dil report``)."""
    from nas_dil.report.files import write_report as _write

    return _write(source, out, study=study)


def export(source: str | os.PathLike[str] | optuna.Study | StudySource, pick: str | Pick,
           out: str | os.PathLike[str], *, study: str | None = None, force: bool = False,
           onnx: bool = False, mmseg: bool = False,
           allow_unconfirmed: bool = False,
           backbone_weights: str | os.PathLike[str] | None = None) -> ExportResult:
    """Export a study's picked trial (``nas-dil export``); see `Results.export`."""
    from nas_dil.export.bundle import export_trial

    return export_trial(source, pick, out, study=study, force=force, onnx=onnx, mmseg=mmseg,
                        allow_unconfirmed=allow_unconfirmed, backbone_weights=backbone_weights)
