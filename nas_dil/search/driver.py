"""The search driver: ask → sample → analytic RF/FLOPs → constraints → dedupe → Ray → tell.

The driver is the only process that writes to the storage; trials run as Ray tasks and send
their results (curves, metrics, weights) back through Ray. It keeps
``parallel.max_in_flight`` trials running until ``n_trials`` trials have finished.

Writes: a RUNNING trial stores its parameters and what sampling set (``candidate``,
``repaired``, and what it was enqueued with); its other ask-time attrs (arch, trial_config,
key, analytic RF/FLOPs…) are stored with its result, all attrs in one statement, just before
its tell. Samplers re-read every running trial per suggestion (TPE's constant liar), so
small running trials keep asking cheap. SQLite runs in WAL mode meanwhile (see
`nas_dil.search.storage`).

Counting: ``n_trials`` counts the study's finished trials (COMPLETE, PRUNED by early
stopping, FAIL; baselines and reused duplicates included) except infeasible candidates
(constraints violated: stored as PRUNED with ``infeasible = true``, never trained) and
trials failed only because the driver stopped (``requeue = true``: they are rerun).

Faults:
- a dead worker or node (any Ray system error): the trial is resubmitted, up to
  ``parallel.max_retries`` times, then FAIL with the reason; ``retries`` is recorded.
- a diverging / out-of-memory trial: FAIL with its reason (no retry: it would fail again).
- the driver killed: the same command (or ``--resume``) finds the trials left RUNNING,
  marks them FAIL (``fail_reason`` "orphaned…", ``requeue``) and enqueues each again with the
  same parameters; completed trials are kept and never trained again (their keys dedupe).
- Ctrl-C / SIGTERM: running trials are cancelled, marked the same way and enqueued again, the
  storage stays consistent, and the search returns with ``interrupted = true``. A second
  Ctrl-C aborts at once.

Duplicates: a trial whose key (candidate, architecture, data, budget, seed, trial kind) was
already trained reuses the stored result (``reused_from``); one whose twin is still running
waits for it.

Weights: a COMPLETE trial's state_dict comes back from the worker; the driver writes it to
``OUT/weights/trial_<N>.pt`` and records ``weights`` when the trial is a baseline or is on the
Pareto front when it finishes. Optuna freezes a trial's attributes once it is finished, so
nothing is deleted later: the files kept are the final front, the baselines, and the trials
that were on the front when they finished (a superset of the final front).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas_dil.errors import UserError
from nas_dil.models.analytic import analytic_attrs, analytic_batch
from nas_dil.models.config import ArchConfig
from nas_dil.pareto import REFERENCE, dominates, nondominated, normalised_hypervolume
from nas_dil.search import cluster
from nas_dil.search.baselines import baseline_candidate, space_params
from nas_dil.search.config import StudyConfig, load_study_config, sampler_class
from nas_dil.search.early_stop import Completed, FrontSnapshot, make_snapshot
from nas_dil.search.objectives import objective_ranges
from nas_dil.search.progress import Progress, Status
from nas_dil.search.storage import (
    META_KEY,
    StorageError,
    check_storage,
    close_storage,
    default_url,
    open_storage,
    read_meta,
    safe_url,
)
from nas_dil.search.worker import n_evals
from nas_dil.spaces import Candidate, Space, load_space

__all__ = ["SearchSummary", "run_search", "trial_key"]

POLL_S = 0.25  # how often the driver looks at finished tasks, the status line and Ctrl-C
_RESULT_KEYS = ("miou", "per_class_iou", "pixel_acc", "miou_curve", "loss_curve",
                "wall_time_s", "train_time_s", "images_per_s", "peak_mem_bytes", "peak_mem_kind",
                "steps", "epochs", "device")


@dataclass
class SearchSummary:
    """What a search did; ``to_dict()`` is the ``--json`` output."""

    study_name: str
    storage: str  # URL, password hidden
    out_dir: str
    n_trials: int
    done: int
    complete: int
    pruned: int
    failed: int
    infeasible: int
    reused: int
    front: list[int]  # trial numbers of the Pareto front (feasible COMPLETE trials)
    hypervolume: float  # normalised (see nas_dil.search.objectives)
    elapsed_s: float
    interrupted: bool = False
    exhausted: bool = False  # the sampler tried every candidate (brute force)
    warnings: list[str] = field(default_factory=list)
    loop_s: float = 0.0  # from the first ask to the last tell (set-up excluded)
    driver_s: dict[str, float] = field(default_factory=dict)  # driver time: ask, collect

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Run:
    """A trial between ask and tell."""

    trial_id: int
    number: int
    cand: Candidate
    key: str
    params: dict[str, Any]
    analytic: dict[str, Any]
    user_attrs: dict[str, Any]  # what it was enqueued with (baseline, candidate, rerun_of)
    payload: dict[str, Any]
    retries: int = 0
    retry_reasons: list[str] = field(default_factory=list)
    # the ask-time attrs (candidate, arch, trial_config, key, analytic): written with the
    # result in one statement. While it runs the stored trial holds only what sampling set
    # (candidate, repaired): TPE's constant liar re-reads every running trial per suggestion.
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> str | None:
        return self.user_attrs.get("baseline")


def trial_key(cand: Candidate, trial_config: dict[str, Any], seed: int,
              kind: dict[str, Any]) -> str:
    """Identity of a training run: equal keys train the same thing."""
    ident = {"candidate": cand.to_dict(), "trial_config": trial_config, "seed": seed,
             "kind": kind}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def _bulk_user_attrs(storage: Any, trial_id: int, attrs: dict[str, Any]) -> bool:
    """One multi-row upsert of a RUNNING trial's user attrs into Optuna's RDB tables (SQLite,
    PostgreSQL); False where that is not possible (then the caller writes them one by one)."""
    backend = getattr(storage, "_backend", storage)
    try:
        from optuna.storages import RDBStorage
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
        from sqlalchemy.dialects import postgresql, sqlite
    except ImportError:  # pragma: no cover - a future Optuna moved its internals
        return False
    if not isinstance(backend, RDBStorage) or not attrs:
        return False
    dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(backend.engine.name)
    if dialect is None:
        return False
    table = models.TrialUserAttributeModel
    rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
            for k, v in attrs.items()]
    with _create_scoped_session(backend.scoped_session) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        backend.check_trial_is_updatable(trial_id, trial.state)  # type: ignore[arg-type]
        stmt = dialect.insert(table).values(rows)
        stmt = stmt.on_conflict_do_update(index_elements=[table.trial_id, table.key],
                                          set_={"value_json": stmt.excluded.value_json})
        session.execute(stmt)
    return True


def _first_line(e: BaseException | str) -> str:
    text = str(e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:300]


def trial_arch(cfg: StudyConfig, cand: Candidate, num_classes: int) -> ArchConfig:
    """The net a trial of ``cand`` trains: the study's [arch] with the candidate's choices."""
    return ArchConfig(**cfg.arch, output_stride=cand.output_stride, width=cand.width,
                      num_classes=num_classes)


def feasible(cfg: StudyConfig, attrs: Mapping[str, Any]) -> bool:
    """Whether a trial's analytic ``attrs`` meet the study's constraints."""
    return all(c.violation(float(attrs[c.metric])) <= 0 for c in cfg.constraints
               if c.metric in attrs) and not (cfg.gridding_free and attrs.get("holes"))


def make_sampler(cfg: StudyConfig, space: Space, num_classes: int) -> Any:
    """The study's sampler (seeded with the study's seed unless [sampler] sets one); the hvi
    sampler also gets what is known before training: analytic objectives, constraints."""
    name = cfg.sampler.name
    cls = sampler_class(name)
    kwargs = dict(cfg.sampler.options)
    params = inspect.signature(cls).parameters
    if "seed" in params:
        kwargs.setdefault("seed", cfg.seed)
    if name == "gp":  # the space is dynamic (depth, r1…rN): fallback sampling is expected
        kwargs.setdefault("warn_independent_sampling", False)
    if "context" in params:
        from nas_dil.search.hvi import SamplerContext

        image_size = cfg.data.image_size
        kwargs["context"] = SamplerContext(
            space, tuple(cfg.objectives),
            lambda cs: analytic_batch(cs, {**cfg.arch, "num_classes": num_classes}, image_size),
            lambda attrs: feasible(cfg, attrs))
    import optuna

    try:
        with warnings.catch_warnings():  # brute, gp options: "experimental", said once in docs
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"{cfg.path}: sampler: {_first_line(e)}") from None


class _Search:
    def __init__(self, cfg: StudyConfig, *, n_trials: int | None, storage: str | None,
                 out: str | Path | None, address: str | None, resume: bool,
                 progress: Progress, num_cpus: int | None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.cfg = cfg
        if n_trials is not None and (isinstance(n_trials, bool) or n_trials < 1):
            raise UserError(f"--n-trials {n_trials}: must be >= 1")
        self.n_trials = n_trials or cfg.n_trials
        self.out = Path(out or cfg.out).resolve()
        self.url = storage or cfg.storage or default_url(self.out)
        self.address = address
        self.resume = resume
        self.progress = progress
        self.num_cpus = num_cpus
        self.space = load_space(cfg.space_path)
        self.objectives = cfg.objectives
        self.analytic_objs = [o for o in self.objectives if not o.measured]
        self.warnings: list[str] = []
        self.status = Status(self.n_trials)
        self.running: dict[Any, _Run] = {}  # Ray ObjectRef -> run
        self.inflight: dict[str, int] = {}  # key -> trial number running it
        self.parked: dict[str, list[_Run]] = {}  # key -> duplicates waiting for it
        self.finished: dict[str, dict[str, Any]] = {}  # key -> stored result
        self.completed: list[Completed] = []  # for the early-stopping snapshot
        self.front_rows: list[tuple[int, list[float], bool]] = []  # number, values, feasible
        self._snapshot: FrontSnapshot | None = None
        self._snapshot_dirty = True
        self._front_dirty = True
        self.exhausted = False
        self.stop_asking = False
        self.stop_requested = False
        self.infeasible_this_run = 0
        self.done_at_start = 0
        self.t0 = time.perf_counter()
        self.t_loop = (0.0, 0.0)  # start, end of the loop
        self.driver_s = {"ask": 0.0, "collect": 0.0}  # busy time of the driver, by phase
        measured = [o for o in self.objectives if o.measured]
        self.early_stop = (cfg.early_stop.enabled and len(measured) == 1
                           and measured[0].name == "miou" and measured[0].direction == "maximize")
        if cfg.trial.kind == "sleep":
            self.n_evals: int | None = cfg.trial.evals
        else:
            self.n_evals = n_evals(asdict(cfg.train))

    # -- set-up: everything that can fail runs before the first write ------------------------

    def prepare(self) -> None:
        cfg = self.cfg
        self._check_sampler()
        self.baselines = [(b.name, baseline_candidate(b, self.space)) for b in cfg.baselines]
        outside = [n for n, c in self.baselines if space_params(self.space, c) is None]
        if outside and cfg.sampler.name not in ("hvi", "tpe", "random"):
            raise UserError(
                f"{cfg.path}: baselines {', '.join(outside)} are not in space "
                f"{self.space.name}; sampler {cfg.sampler.name!r} needs every trial inside the "
                "space (use hvi, tpe or random, or a space that contains them)")
        check_storage(self.url)
        exists, meta, directions = read_meta(self.url, cfg.name)
        where = f"study {cfg.name!r} in {safe_url(self.url)}"
        if self.resume and not exists:
            raise StorageError(f"--resume: no {where}")
        if exists:
            self._check_existing(meta, directions, where)
        self.connected = cluster.connect(self.address, num_cpus=self.num_cpus)
        try:
            self._remote_setup()
            self.data_info = self._data_info()
            self.num_classes = int(self.data_info.get("num_classes") or 5)
            self.ranges = objective_ranges(
                self.objectives, self.space, cfg.arch, cfg.data.image_size, self.num_classes,
                cfg.seed, [c for _, c in self.baselines])
            self._warn_constant()
            self.study = self._open_study(exists)
        except BaseException:
            cluster.disconnect(self.connected)
            raise

    def _check_sampler(self) -> None:
        if self.cfg.sampler.name == "brute":
            try:
                self.space.count()
            except UserError as e:
                raise UserError(f"{self.cfg.path}: sampler brute needs a countable space: "
                                f"{e}") from None

    def _check_existing(self, meta: dict[str, Any] | None, directions: list[str],
                        where: str) -> None:
        if meta is None:
            raise StorageError(f"{where} exists and is not a nas-dil study; "
                               "choose another name or storage")
        ours = [o.to_dict() for o in self.objectives]
        if meta.get("objectives") != ours or directions != [o.direction for o in
                                                             self.objectives]:
            theirs = ", ".join(f"{o['name']} {o['direction']}" for o in
                               meta.get("objectives") or [])
            mine = ", ".join(f"{o.name} {o.direction}" for o in self.objectives)
            raise StorageError(f"{where} exists with other objectives ({theirs}; this "
                               f"config: {mine}); choose another name or storage")
        stored = {k: (meta.get("study_config") or {}).get(k) for k in self.cfg.identity()}
        stored["objectives"] = meta.get("objectives")
        for k, v in self.cfg.identity().items():
            if json.loads(json.dumps(v)) != stored.get(k):
                raise StorageError(f"{where} exists with a different {k!r} setting; "
                                   "choose another name or storage, or restore the config")
        mine_space = {k: v for k, v in self.space.describe().items() if k != "path"}
        if {k: v for k, v in (meta.get("space") or {}).items() if k != "path"} != json.loads(
                json.dumps(mine_space)):
            raise StorageError(f"{where} exists with a different search space; choose another "
                               "name or storage")

    def _remote_setup(self) -> None:
        import ray

        from nas_dil.search.worker import describe_data, nas_dil_trial

        p = self.cfg.parallel
        self.ray_options: dict[str, Any] = {
            "num_cpus": p.cpus, "num_gpus": p.gpus, "max_retries": 0,
            "retry_exceptions": False,
        }
        if p.memory_gb:
            self.ray_options["memory"] = int(p.memory_gb * 2**30)
        if p.resources:
            self.ray_options["resources"] = dict(p.resources)
        self.remote = ray.remote(nas_dil_trial)
        self.remote_describe = ray.remote(describe_data)

    def _data_info(self) -> dict[str, Any]:
        if self.cfg.trial.kind == "sleep":
            return {"describe": {"source": "none (sleep trials: synthetic curves, no data)",
                                 "num_classes": self.cfg.data.num_classes or 5},
                    "num_classes": self.cfg.data.num_classes or 5}
        import ray

        opts = {k: v for k, v in self.ray_options.items() if k != "retry_exceptions"}
        ref = self.remote_describe.options(**{**opts, "max_retries": 1}).remote(
            asdict(self.cfg.data), self.cfg.train.device)
        try:
            info: dict[str, Any] = ray.get(ref)
            return info
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if getattr(e, "cause", None) is not None else e
            raise UserError(f"{self.cfg.path}: data: {_first_line(cause)}") from None

    def _warn_constant(self) -> None:
        for o in self.analytic_objs:
            r = self.ranges[o.name]
            if r.best == r.worst:
                self.warnings.append(
                    f"objective {o.name} cannot vary in space {self.space.name}: every "
                    f"candidate{' sampled' if not r.exact else ''} has {o.name} = {r.best:g}")

    def _sampler(self) -> Any:
        return make_sampler(self.cfg, self.space, self.num_classes)

    def meta(self) -> dict[str, Any]:
        from nas_dil import __version__

        cfg = self.cfg.to_dict()
        cfg["n_trials"] = self.n_trials
        cfg["storage"] = safe_url(self.url)
        cfg["out"] = str(self.out)
        return {
            "version": __version__,
            "study_config": cfg,
            "objectives": [o.to_dict() for o in self.objectives],
            "space": self.space.describe(),
            "out_dir": str(self.out),
            "data": self.data_info["describe"],
            "hypervolume": {"reference": REFERENCE, "normalised": True,
                            "ranges": {k: {"best": r.best, "worst": r.worst, "exact": r.exact}
                                       for k, r in self.ranges.items()}},
            "early_stop": {"enabled": self.early_stop, "n_evals": self.n_evals,
                           **asdict(self.cfg.early_stop)},
            "warnings": list(self.warnings),
        }

    def _open_study(self, exists: bool) -> Any:
        import optuna

        storage = open_storage(self.url)
        sampler = self._sampler()
        have: set[str] = set()
        if exists:
            study = optuna.load_study(study_name=self.cfg.name, storage=storage,
                                      sampler=sampler)
            have = {str(t.user_attrs["baseline"]) for t in study.get_trials(deepcopy=False)
                    if "baseline" in t.user_attrs}
        else:
            directions: list[Any] = [o.direction for o in self.objectives]
            study = optuna.create_study(study_name=self.cfg.name, storage=storage,
                                        sampler=sampler, directions=directions)
            study.set_metric_names([o.name for o in self.objectives])
            study.set_user_attr(META_KEY, self.meta())
        for name, cand in self.baselines:  # new ones only: a resumed study has the others
            if name not in have:
                study.enqueue_trial(space_params(self.space, cand) or {},
                                    user_attrs={"baseline": name, "candidate": cand.to_dict()})
        return study

    # -- state from the storage (resume) ----------------------------------------------------

    def recover(self) -> None:
        from optuna.trial import TrialState

        orphans = []
        for t in self.study.get_trials(deepcopy=False):
            ua = t.user_attrs
            if t.state == TrialState.RUNNING:
                orphans.append(t)
                continue
            if not t.state.is_finished():
                continue
            if ua.get("infeasible"):
                self.status.infeasible += 1
                continue
            if ua.get("requeue"):
                continue
            self._count(t.state)
            if ua.get("reused_from") is not None:
                self.status.reused += 1
            if t.state == TrialState.COMPLETE:
                self._add_completed(t.number, list(t.values), ua)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and ua.get("key"):
                self.finished.setdefault(ua["key"], self._stored(t.number, t.state, ua))
        for t in orphans:
            self._requeue(t._trial_id, t.number, dict(t.params), dict(t.user_attrs),
                          "orphaned: the driver stopped while the trial ran")
        if orphans:
            self.progress.message(f"resume: {len(orphans)} trial(s) left running by a stopped "
                                  "driver were marked FAIL and enqueued again")
        self.done_at_start = self.status.done

    def _stored(self, number: int, state: Any, ua: dict[str, Any]) -> dict[str, Any]:
        keep = {k: ua[k] for k in (*_RESULT_KEYS, "pruned_reason", "weights", "node",
                                   "node_id", "node_ip") if k in ua}
        return {"number": number, "state": state, "attrs": keep}

    def _count(self, state: Any) -> None:
        from optuna.trial import TrialState

        self.status.done += 1
        if state == TrialState.COMPLETE:
            self.status.complete += 1
        elif state == TrialState.PRUNED:
            self.status.pruned += 1
        else:
            self.status.failed += 1

    def _losses(self, analytic: dict[str, Any]) -> tuple[float, ...]:
        return tuple(o.sign * float(analytic[o.name]) for o in self.analytic_objs)

    def _feasible(self, ua: dict[str, Any]) -> bool:
        return feasible(self.cfg, ua)

    def _add_completed(self, number: int, values: list[float], ua: dict[str, Any]) -> None:
        curve = tuple(float(v) for v in ua.get("miou_curve") or ())
        if self.early_stop and all(o.name in ua for o in self.analytic_objs):
            self.completed.append(Completed(number, curve, self._losses(ua)))
            self._snapshot_dirty = True
        self.front_rows.append((number, values, self._feasible(ua)))
        self._front_dirty = True

    # -- the loop -----------------------------------------------------------------------------

    def loop(self) -> None:
        self.t_loop = (time.perf_counter(), 0.0)
        try:
            while True:
                if self.stop_requested:
                    raise KeyboardInterrupt
                t = time.perf_counter()
                self._fill()
                self.driver_s["ask"] += time.perf_counter() - t
                if not self.running:
                    break
                self._wait()
        finally:
            self.t_loop = (self.t_loop[0], time.perf_counter())

    def _wait(self) -> None:
        import ray

        ready, _ = ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
        t = time.perf_counter()
        if ready:  # everything finished by now, not just the first
            ready, _ = ray.wait(list(self.running), num_returns=len(self.running), timeout=0)
        for ref in ready:
            self._collect(ref)
        self._show()
        self.driver_s["collect"] += time.perf_counter() - t

    def _budget_left(self) -> bool:
        parked = sum(len(v) for v in self.parked.values())
        return self.status.done + len(self.running) + parked < self.n_trials

    def _fill(self) -> None:
        limit = max(200, 20 * self.n_trials)
        while (not self.stop_asking and not self.exhausted and not self.stop_requested
               and len(self.running) < self.cfg.parallel.max_in_flight and self._budget_left()):
            self._ask()
            if self.infeasible_this_run > limit:
                self.stop_asking = True
                self.warnings.append(f"stopped after {self.infeasible_this_run} infeasible "
                                     "candidates: the constraints leave (almost) nothing")
                self.progress.message("warning: " + self.warnings[-1])

    def _set_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """All of ``attrs`` in one statement and one transaction where the storage allows it
        (Optuna writes one attribute per query and commit; a trial has ~40 of them)."""
        if not _bulk_user_attrs(self.study._storage, trial_id, attrs):
            for k, v in attrs.items():
                self.study._storage.set_trial_user_attr(trial_id, k, v)

    def _write(self, run: _Run, attrs: dict[str, Any]) -> None:
        """The run's ask-time attrs and ``attrs`` (which win) in one statement; just before
        its tell."""
        self._set_attrs(run.trial_id, {**run.attrs, **attrs})

    def _tell(self, number: int, state: Any, values: list[float] | None = None) -> None:
        try:
            self.study.tell(number, values, state=state)
        except RuntimeError as e:  # BruteForceSampler stops the study when it has seen all
            if "Study.stop" not in str(e):
                raise
            self.exhausted = True

    def _ask(self) -> None:
        from nas_dil.train import TrialConfig

        cfg = self.cfg
        trial = self.study.ask()
        ua = dict(trial.user_attrs)
        fixed = getattr(trial, "_fixed_params", None)  # read by Trial(): saves a query
        if fixed is None:  # pragma: no cover - an Optuna without it
            fixed = self.study._storage.get_trial_system_attrs(trial._trial_id).get(
                "fixed_params")
        attrs: dict[str, Any] = {}
        if "candidate" in ua and not fixed:  # a baseline outside the space
            cand = Candidate.from_dict(ua["candidate"])
            attrs["repaired"] = False
        else:
            cand = self.space.sample(trial)
        arch = trial_arch(cfg, cand, self.num_classes)
        tc = TrialConfig(arch, cfg.data, cfg.train).to_dict()
        analytic = analytic_attrs(cand.schedule, arch, cfg.data.image_size)
        kind = {"kind": cfg.trial.kind, **(asdict(cfg.trial) if cfg.trial.kind == "sleep"
                                            else {})}
        key = trial_key(cand, tc, cfg.seed, kind)
        attrs.update({"candidate": cand.to_dict(), "arch": arch.to_dict(), "trial_config": tc,
                      "seed": cfg.seed, "key": key, **analytic})
        violated = []
        for c in cfg.constraints:
            v = c.violation(float(analytic[c.metric]))
            trial.set_constraint(c.name, v)
            if v > 0:
                violated.append(f"{c.metric} {analytic[c.metric]:g} "
                                f"{'>' if c.kind == 'max' else '<'} {c.name} {c.bound:g}")
        if cfg.gridding_free:
            trial.set_constraint("gridding_free", float(analytic["holes"]))
            if analytic["holes"]:
                violated.append(f"{analytic['holes']} holes (gridding_free)")
        run = _Run(trial._trial_id, trial.number, cand, key, dict(trial.params), analytic, ua,
                   payload={}, attrs=attrs)
        if violated and not run.baseline:  # baselines train anyway, marked infeasible
            from optuna.trial import TrialState

            self._write(run, {"infeasible": True,
                              "pruned_reason": "infeasible: " + "; ".join(violated)})
            self._tell(run.number, TrialState.PRUNED)
            self.status.infeasible += 1
            self.infeasible_this_run += 1
            return
        run.payload = {"kind": cfg.trial.kind, "trial_config": tc,
                       "schedule": cand.schedule.to_dict(), "seed": cfg.seed, "key": key,
                       "analytic": analytic, "losses": self._losses(analytic),
                       "keep_weights": cfg.keep_weights, "sleep": asdict(cfg.trial),
                       "number": run.number}
        if key in self.finished:
            self._reuse(run, self.finished[key])
        elif key in self.inflight:
            self.parked.setdefault(key, []).append(run)
        else:
            self._submit(run)

    def snapshot(self) -> FrontSnapshot | None:
        if not self.early_stop:
            return None
        if self._snapshot_dirty:
            es = self.cfg.early_stop
            self._snapshot = make_snapshot(
                self.completed, min_completed=es.min_completed, n_evals=self.n_evals,
                margin=es.margin, min_evals=es.min_evals,
                names=[o.name for o in self.analytic_objs])
            self._snapshot_dirty = False
        return self._snapshot

    def _submit(self, run: _Run) -> None:
        run.payload["snapshot"] = self.snapshot()
        ref = self.remote.options(**self.ray_options).remote(run.payload)
        self.running[ref] = run
        self.inflight[run.key] = run.number

    def _collect(self, ref: Any) -> None:
        import ray

        run = self.running.pop(ref)
        self.inflight.pop(run.key, None)
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if getattr(e, "cause", None) is not None else e
            self._fail(run, f"error in the trial: {type(cause).__name__}: {_first_line(cause)}")
        except ray.exceptions.RayError as e:
            reason = f"{type(e).__name__}: {_first_line(e)}"
            if run.retries < self.cfg.parallel.max_retries:
                run.retries += 1
                run.retry_reasons.append(reason)
                self.progress.message(f"trial {run.number}: worker lost ({type(e).__name__}); "
                                      f"retry {run.retries}/{self.cfg.parallel.max_retries}")
                self._submit(run)
                return
            self._fail(run, f"worker lost {run.retries + 1} time(s), no retry left; last: "
                            f"{reason}")
        else:
            if out["status"] == "complete":
                self._complete(run, out)
            elif out["status"] == "pruned":
                self._pruned(run, out)
            else:
                self._fail(run, str(out["reason"]), out)
        self._release_parked(run.key)

    def _run_attrs(self, run: _Run, out: dict[str, Any] | None) -> dict[str, Any]:
        attrs: dict[str, Any] = {"retries": run.retries}
        if run.retry_reasons:
            attrs["retry_reasons"] = list(run.retry_reasons)
        if out is not None:
            for k in ("node", "node_id", "node_ip", "pid"):
                attrs[k] = out.get(k)
            r = out.get("result") or {}
            attrs.update({k: r[k] for k in _RESULT_KEYS if k in r})
        return attrs

    def _values(self, run: _Run, miou: float) -> list[float]:
        return [float(miou) if o.measured else float(run.analytic[o.name])
                for o in self.objectives]

    def _on_front(self, values: list[float]) -> bool:
        sign = np.array([o.sign for o in self.objectives])
        rows = [v for _, v, ok in self.front_rows if ok]
        if not rows:
            return True
        return not dominates(np.array(rows, dtype=float) * sign,
                             np.array(values, dtype=float) * sign).any()

    def _complete(self, run: _Run, out: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        attrs = self._run_attrs(run, out)
        miou = float(out["result"]["miou"])
        if not math.isfinite(miou):
            self._fail(run, f"non-finite mIoU {miou}", out)
            return
        values = self._values(run, miou)
        feasible = self._feasible(run.analytic)
        if out.get("weights") and (run.baseline or (feasible and self._on_front(values))):
            rel = f"weights/trial_{run.number}.pt"
            path = self.out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".pt.tmp")
            tmp.write_bytes(out["weights"])
            tmp.replace(path)
            attrs["weights"] = rel
        self._write(run, attrs)
        self._tell(run.number, TrialState.COMPLETE, values)
        self._count(TrialState.COMPLETE)
        self.finished.setdefault(run.key, self._stored(run.number, TrialState.COMPLETE, attrs))
        self._add_completed(run.number, values, {**run.analytic, **attrs})
        self._event(run, f"complete {self._fmt(values)}", out)

    def _pruned(self, run: _Run, out: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        attrs = self._run_attrs(run, out)
        attrs["pruned_reason"] = out.get("reason") or "stopped early"
        self._write(run, attrs)
        self._tell(run.number, TrialState.PRUNED)
        self._count(TrialState.PRUNED)
        self.finished.setdefault(run.key, self._stored(run.number, TrialState.PRUNED, attrs))
        self._event(run, f"pruned after {len(attrs.get('miou_curve', []))} eval(s): "
                         f"{attrs['pruned_reason']}", out)

    def _fail(self, run: _Run, reason: str, out: dict[str, Any] | None = None) -> None:
        from optuna.trial import TrialState

        attrs = self._run_attrs(run, out)
        attrs["fail_reason"] = reason
        self._write(run, attrs)
        self._tell(run.number, TrialState.FAIL)
        self._count(TrialState.FAIL)
        self._event(run, f"FAIL: {reason}", out)

    def _reuse(self, run: _Run, stored: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        attrs = {**stored["attrs"], "reused_from": stored["number"], "retries": 0}
        self._write(run, attrs)
        state = stored["state"]
        if state == TrialState.COMPLETE:
            values = self._values(run, attrs["miou"])
            self._tell(run.number, state, values)
            self._add_completed(run.number, values, {**run.analytic, **attrs})
        else:
            self._tell(run.number, state)
        self._count(state)
        self.status.reused += 1
        self._event(run, f"reused the result of trial {stored['number']}", None)

    def _release_parked(self, key: str) -> None:
        for run in self.parked.pop(key, []):
            if key in self.finished:
                self._reuse(run, self.finished[key])
            elif key in self.inflight:  # another twin took over (a retry): wait for it
                self.parked.setdefault(key, []).append(run)
            else:  # the twin failed: this one trains
                self._submit(run)

    def _requeue(self, trial_id: int, number: int, params: dict[str, Any],
                 user_attrs: dict[str, Any], reason: str,
                 attrs: dict[str, Any] | None = None) -> None:
        """Mark a trial the driver could not finish as FAIL (with its ask-time ``attrs``, when
        known) and enqueue it again."""
        from optuna.trial import TrialState

        self._set_attrs(trial_id, {**(attrs or {}), "fail_reason": reason, "requeue": True})
        self._tell(number, TrialState.FAIL)
        again: dict[str, Any] = {"rerun_of": number}
        if "baseline" in user_attrs:
            again["baseline"] = user_attrs["baseline"]
        if not params and "candidate" in user_attrs:
            again["candidate"] = user_attrs["candidate"]
        self.study.enqueue_trial(params, user_attrs=again)

    def interrupt(self) -> None:
        """Cancel what runs, mark it, enqueue it again (Ctrl-C / SIGTERM)."""
        import ray

        runs = list(self.running.values()) + [r for v in self.parked.values() for r in v]
        for ref in list(self.running):
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        self.running.clear()
        self.parked.clear()
        self.inflight.clear()
        for run in runs:
            self._requeue(run.trial_id, run.number, run.params, run.user_attrs,
                          "interrupted: the search was stopped while the trial ran", run.attrs)

    # -- display and summary ----------------------------------------------------------------

    def _fmt(self, values: list[float]) -> str:
        return " ".join(f"{o.name} {v:.4g}" for o, v in zip(self.objectives, values,
                                                              strict=True))

    def front(self) -> tuple[list[int], float]:
        rows = [(n, v) for n, v, ok in self.front_rows if ok]
        if not rows:
            return [], 0.0
        sign = np.array([o.sign for o in self.objectives])
        pts = np.array([v for _, v in rows], dtype=float)
        mask = nondominated(pts * sign)
        numbers = sorted(n for (n, _), keep in zip(rows, mask, strict=True) if keep)
        return numbers, normalised_hypervolume(
            pts[mask], [self.ranges[o.name].best for o in self.objectives],
            [self.ranges[o.name].worst for o in self.objectives])

    def _show(self, event: str | None = None) -> None:
        s = self.status
        s.running = len(self.running) + sum(len(v) for v in self.parked.values())
        s.elapsed_s = time.perf_counter() - self.t0
        new = s.done - self.done_at_start
        s.eta_s = (s.elapsed_s / new * (self.n_trials - s.done)) if new else None
        if self._front_dirty:
            numbers, s.hypervolume = self.front()
            s.front = len(numbers)
            self._front_dirty = False
        self.progress.show(s, event)

    def _event(self, run: _Run, what: str, out: dict[str, Any] | None) -> None:
        where = ""
        if out is not None:
            where = f" on {out.get('node')}" + (f" in {out['wall_s']:.1f} s"
                                                 if out.get("wall_s") else "")
        base = f" [{run.baseline}]" if run.baseline else ""
        self._show(f"trial {run.number}{base} {run.cand.key()}: {what}{where}")

    def summary(self, interrupted: bool) -> SearchSummary:
        numbers, hv = self.front()
        s = self.status
        return SearchSummary(
            study_name=self.cfg.name, storage=safe_url(self.url), out_dir=str(self.out),
            n_trials=self.n_trials, done=s.done, complete=s.complete, pruned=s.pruned,
            failed=s.failed, infeasible=s.infeasible, reused=s.reused, front=numbers,
            hypervolume=hv, elapsed_s=time.perf_counter() - self.t0, interrupted=interrupted,
            exhausted=self.exhausted, warnings=list(self.warnings),
            loop_s=max(0.0, self.t_loop[1] - self.t_loop[0]), driver_s=dict(self.driver_s))


@contextmanager
def _stop_signals(search: _Search) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): finish cleanly at the next poll; second: abort now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if search.stop_requested:
            raise KeyboardInterrupt
        search.stop_requested = True
        search.progress.message("stopping: cancelling running trials (Ctrl-C again to abort)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_search(config: StudyConfig | str | Path, *, n_trials: int | None = None,
               storage: str | None = None, out: str | Path | None = None,
               address: str | None = None, resume: bool = False,
               progress: Progress | bool = True, num_cpus: int | None = None) -> SearchSummary:
    """Run (or continue) the study ``config`` describes; see the module docstring.

    ``address``: Ray address (None: ``RAY_ADDRESS`` or a local Ray on 127.0.0.1). ``num_cpus``
    caps a local Ray. Bad input raises a one-line UserError before anything is written.
    """
    cfg = config if isinstance(config, StudyConfig) else load_study_config(config)
    prog = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
    search = _Search(cfg, n_trials=n_trials, storage=storage, out=out, address=address,
                     resume=resume, progress=prog, num_cpus=num_cpus)
    search.prepare()
    interrupted = False
    try:
        for w in search.warnings:
            prog.message(f"warning: {w}")
        with _stop_signals(search):
            try:
                search.recover()
                search._show()
                search.loop()
            except KeyboardInterrupt:
                interrupted = True
                search.interrupt()
    finally:
        close_storage(search.study._storage)  # SQLite: one self-contained file again
        cluster.disconnect(search.connected)
    summary = search.summary(interrupted)
    search._show()
    prog.close(search.status)
    return summary
