"""The search loop: ask → plan → route → submit to Ray → collect → tell, until ``n_trials``.

`run_search` wires the rooms of ``nas_dil.search`` together (docs/architecture.md): checks in
`preflight`, trials planned by `trials`, the books in `ledger`, every storage write in
`recorder`, Ray tasks in `cluster`; this module is the loop itself, its faults and Ctrl-C.

The driver is the only process that writes to the storage; trials run as Ray tasks
(`nas_dil.search.worker`) and send their results (curves, metrics, weights) back through Ray.
It keeps ``parallel.max_in_flight`` trials running until ``n_trials`` trials have finished
(how they count: `nas_dil.search.ledger`).

Faults:
- a dead worker or node (any Ray system error): the trial is resubmitted, up to
  ``parallel.max_retries`` times, then FAIL with the reason; ``retries`` is recorded.
- a diverging / out-of-memory trial: FAIL with its reason (no retry: it would fail again).
- the driver killed: the same command (or ``--resume``) finds the trials left RUNNING,
  marks them FAIL (``fail_reason`` "orphaned…", ``requeue``) and enqueues each again with the
  same parameters; completed trials are kept and never trained again (their keys dedupe).
- a second driver on the same study: refused before it writes anything (`nas_dil.search.lock`:
  a lock row with a heartbeat; a crashed driver's lock is taken over, at once on this host).
- trials no live node can fit any more (the nodes that could left): FAIL as ``unschedulable``
  after ``parallel.pending_timeout_s``, and no new trial is asked.
- Ctrl-C / SIGTERM: running trials are cancelled, marked the same way and enqueued again, the
  storage stays consistent, and the search returns with ``interrupted = true``. A second
  Ctrl-C aborts at once.

Weights: a COMPLETE trial's state_dict comes back from the worker; the driver keeps it
(``OUT/weights/trial_<N>.pt``, recorded as ``weights``; a frozen-backbone trial's holds the
head, its backbone recorded as ``weights_backbone``: `nas_dil.train.kept`) when the trial is a
baseline or is on the Pareto front when it finishes. Optuna freezes a trial's attributes once
it is finished, so nothing is deleted later: the files kept are the final front, the
baselines, and the trials that were on the front when they finished (a superset of the final
front).

Repeats (``[sampler] repeats = k``, hvi): a candidate the sampler asks again is trained again
from the next seed (study seed + look), not answered from storage; every look is its own
trial, and the front, the report and export take a candidate's mean over its looks
(`looks.merge_looks`).

Seeds (`nas_dil.search.looks`): each baseline is enqueued ``[noise] baseline_seeds`` times,
look k trained from seed study seed + k (its looks count towards ``n_trials``); they measure
the study's seed noise (`looks.pooled_noise`, shown in the status line and the summary). After
``n_trials``, confirmation (``[confirm] seeds = k``, ``--confirm K``) trains the front's
candidates again, one look at a time, until each has k looks or the cap is reached; the front
is re-checked after every look. Confirmation looks record ``confirm``, count apart from
``n_trials`` ("confirm 2/6") and resume like any trial; neither they nor the baselines'
looks are stopped early.

Over 500 lines on purpose: the loop, its confirmation phase, resume and the signal handling
share one state (`_Search`); splitting them would pass that state between modules.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from nas_dil.errors import UserError
from nas_dil.pareto import normalised_hypervolume
from nas_dil.search import cluster
from nas_dil.search.baselines import baseline_candidates
from nas_dil.search.cluster import Lost, TaskError, TrialTasks
from nas_dil.search.config import StudyConfig, load_study_config
from nas_dil.search.ledger import Ledger, Run, State, snapshot_maker
from nas_dil.search.lock import DriverLock, StudyLocked
from nas_dil.search.looks import (
    confirm_group,
    confirmed,
    feasible_front,
    needs_looks,
    pooled_noise,
)
from nas_dil.search.preflight import (
    check_arch,
    check_baselines,
    check_paths,
    check_sampler,
    check_study,
    resolve_study,
    study_meta,
    study_space,
)
from nas_dil.search.progress import Progress, SearchSummary, fmt_duration
from nas_dil.search.recorder import Recorder
from nas_dil.search.records import RESULT_KEYS, TrialRecord
from nas_dil.search.resolved import ResolvedStudy, constraint_values, feasible
from nas_dil.search.storage import default_url, safe_url
from nas_dil.search.tensorboard import Board
from nas_dil.search.trials import make_sampler, plan_trial, trial_key
from nas_dil.spaces import Candidate

__all__ = ["SearchSummary", "make_sampler", "run_search", "trial_key"]

POLL_S = 0.25  # how often the driver looks at finished tasks, the status line and Ctrl-C
FIT_CHECK_S = 2.0  # how often, while trials run, it checks that some node can still fit one


class _Search:
    board = Board(None)  # TensorBoard curves (run_search's tensorboard=True; search/tensorboard)
    def __init__(self, cfg: StudyConfig, *, n_trials: int | None, storage: str | None,
                 out: str | Path | None, address: str | None, resume: bool,
                 progress: Progress, num_cpus: int | None, confirm: int | None = None
                 ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if n_trials is not None and (isinstance(n_trials, bool) or n_trials < 1):
            raise UserError(f"--n-trials {n_trials}: must be >= 1")
        if confirm is not None:  # ConfirmConfig checks its range
            cfg = replace(cfg, confirm=replace(cfg.confirm, seeds=confirm))
        self.cfg = cfg
        self.n_trials = n_trials or cfg.n_trials
        self.out = Path(out or cfg.out).resolve()
        self.url = storage or cfg.storage or default_url(self.out)
        self.address = address
        self.resume = resume
        self.progress = progress
        self.num_cpus = num_cpus
        self.space = study_space(cfg)
        self.objectives = cfg.objectives
        self.warnings: list[str] = []
        self.recorder = Recorder(self.url, self.out)
        self.lock = DriverLock(self.url, cfg.name)
        self.stop_asking = False
        self.space_exhausted = False  # every candidate of the (finite) space was asked
        self.space_size = _size(self.space)
        self.stop_requested = False
        self.t0 = time.perf_counter()
        self.t_loop = (0.0, 0.0)  # start, end of the loop
        self.driver_s = {"ask": 0.0, "collect": 0.0}  # busy time of the driver, by phase
        measured = [o for o in self.objectives if o.measured]
        self.early_stop = (cfg.early_stop.enabled and len(measured) == 1
                           and measured[0].name == "miou" and measured[0].direction == "maximize")
        self.n_evals = cfg.kind.n_evals(cfg.trial, cfg.train)
        es = cfg.early_stop
        snapshot = snapshot_maker(min_completed=es.min_completed, n_evals=self.n_evals,
                                  margin=es.margin, min_evals=es.min_evals,
                                  names=[o.name for o in self.objectives if not o.measured])
        self.ledger = Ledger(self.n_trials, self.objectives, lambda a: constraint_values(cfg, a),
                             snapshot if self.early_stop else None)
        self.status = self.ledger.status
        self._front: tuple[int, list[int], float] = (-1, [], 0.0)  # version, numbers, hv
        self._fit_checked = 0.0  # monotonic time of the last `_check_unschedulable` look
        self._unfit_since: float | None = None  # since when no node can fit a trial
        self.feature_info: dict[str, Any] | None = None  # the feature caches of a frozen study
        # confirmation (after n_trials): looks asked and not told per candidate, the cap
        self.confirming: dict[str, int] = {}
        self.confirm_cap: int | None = None
        self.queued = 0  # trials waiting in the storage when confirmation starts

    # -- set-up: every refusal runs before the first write (the feature caches build after) --

    def prepare(self) -> None:
        cfg = self.cfg
        check_paths(self.out, self.url)
        check_sampler(cfg, self.space)
        check_arch(cfg, self.space)
        self.baselines = baseline_candidates(cfg.baselines, self.space, str(cfg.path))
        check_baselines(cfg, self.space, self.baselines)
        existing = check_study(cfg, self.space, self.url, self.resume)
        self.connected = cluster.connect(self.address, num_cpus=self.num_cpus)
        try:
            cluster.check_resources(cfg.parallel, str(cfg.path))
            self.tasks = TrialTasks(cfg.parallel)
            self.data_info = self._data_info()
            self.num_classes = int(self.data_info.get("num_classes") or 5)
            self.study: ResolvedStudy = resolve_study(cfg, self.space, self.num_classes,
                                                      self.baselines)
            self.ranges = self.study.ranges
            self.warnings.extend(self.study.warnings)
            features = self.study.features  # planned (and refused if it cannot fit) above
            meta = study_meta(cfg, self.space, n_trials=self.n_trials, url=self.url,
                              out=self.out, data=self.data_info["describe"], ranges=self.ranges,
                              early_stop=self.early_stop, n_evals=self.n_evals,
                              warnings=self.warnings)
            sampler = self.study.sampler
            # one driver per study: taken after every check, before the first write to the study
            taken = self.lock.acquire()
            if taken:
                self.progress.message(f"took over the driver lock of a stopped driver ({taken})")
            study = self.recorder.open(cfg.name, sampler, existing.exists, cfg.objectives, meta)
            # each baseline's looks (seeds, [noise] baseline_seeds), look by look; new ones
            # only: a resumed study has the others (waiting, run or rerun)
            have = {(str(r.baseline), r.look or 0) for t in study.get_trials(deepcopy=False)
                    if (r := TrialRecord.from_frozen(t)).baseline is not None}
            for look in range(cfg.noise.baseline_seeds):
                for name, cand in self.baselines:
                    if (name, look) not in have:
                        self.recorder.enqueue(self.space.params_for(cand) or {},
                                              {"baseline": name, "candidate": cand.to_dict(),
                                               **({"look": look} if look else {})})
            if features is not None:  # built once the study exists: --resume after a kill
                # the other hosts build their own copies meanwhile (Ray tasks), this one here
                elsewhere = self.tasks.build_features(features.elsewhere())
                try:
                    self.feature_info = features.build(self.progress.message,
                                                       self.progress.enabled, fmt_duration)
                    self.feature_info["hosts"] = self._built_elsewhere(elsewhere)
                except BaseException:  # stopped (or failed) here: theirs stop too
                    self.tasks.cancel([ref for _, ref in elsewhere])
                    raise
        except BaseException:
            self.lock.release()
            cluster.disconnect(self.connected)
            raise

    def _built_elsewhere(self, tickets: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Each other host's feature-cache build, waited for; one that failed is a message
        (that host's trials build their copy when they run, as before)."""
        out = []
        for host, ref in tickets:
            try:
                out.append({"host": host, **self.tasks.get(ref)})
            except TaskError as e:
                self.progress.message(f"warning: feature cache on {host} not built ahead "
                                      f"({e.text}); its trials build it when they run")
                out.append({"host": host, "error": e.text})
        return out

    def _data_info(self) -> dict[str, Any]:
        if not self.cfg.kind.reads_data:
            n = self.cfg.data.num_classes or 5
            return {"describe": {"source": f"none ({self.cfg.trial.kind} trials: "
                                           "synthetic curves, no data)",
                                 "num_classes": n}, "num_classes": n}
        try:
            return self.tasks.describe_data(asdict(self.cfg.data), self.cfg.train.device)
        except TaskError as e:
            raise UserError(f"{self.cfg.path}: data: {e.text}") from None

    # -- state from the storage (resume) ----------------------------------------------------

    def recover(self) -> None:
        trials = list(self.recorder.trials())
        orphans = self.ledger.recover(trials)
        for t in trials:  # the candidates of the space a stopped driver already asked
            if t.record.candidate and self.space.contains(
                    c := Candidate.from_dict(t.record.candidate)):
                self.ledger.saw(c)
        for t in orphans:
            self.recorder.requeue(t.trial_id, t.number, t.params, t.attrs,
                                  "orphaned: the driver stopped while the trial ran")
        if orphans:
            self.progress.message(f"resume: {len(orphans)} trial(s) left running by a stopped "
                                  "driver were marked FAIL and enqueued again")

    # -- the loop -----------------------------------------------------------------------------

    def loop(self) -> None:
        self.t_loop = (time.perf_counter(), 0.0)
        try:
            self._run(self._fill)
            if self.cfg.confirm.enabled and not self.stop_asking:
                self._confirm()
        finally:
            self.t_loop = (self.t_loop[0], time.perf_counter())

    def _run(self, fill: Callable[[], None]) -> None:
        """Ask with ``fill`` and collect until nothing runs; a stop request or a lost lock
        ends it."""
        while True:
            if self.stop_requested:
                raise KeyboardInterrupt
            if self.lock.lost:
                raise StudyLocked(f"study {self.cfg.name!r}: another driver took over its "
                                  "lock (this driver's heartbeat had stopped); stopping")
            t = time.perf_counter()
            fill()
            self.driver_s["ask"] += time.perf_counter() - t
            if not self.ledger.running:
                break
            self._wait()

    # -- confirmation: the front over seeds, after n_trials ---------------------------------

    def _confirm(self) -> None:
        """Train the front's candidates again until each has ``[confirm] seeds`` looks,
        re-checking the front after every look (means move, the front may change), up to the
        cap (``[confirm] max_trials``, default seeds x the front's size). Trials left waiting
        in the storage (a stopped driver's reruns) are asked first."""
        k = self.cfg.confirm.seeds
        results = self.ledger.candidates()
        front = feasible_front(results, self.objectives)
        groups = {g for r in front if (g := confirm_group(r)) is not None}
        cap = self.cfg.confirm.max_trials
        self.confirm_cap = k * len(groups) if cap is None else cap
        self.queued = sum(t.state == "waiting" for t in self.recorder.trials())
        if not self.queued and not needs_looks(front, results, k, self.confirming):
            return
        self._run(self._fill_confirm)

    def _confirm_needs(self) -> list[tuple[Any, int]]:
        results = self.ledger.candidates()
        return needs_looks(feasible_front(results, self.objectives), results,
                           self.cfg.confirm.seeds, self.confirming)

    def _fill_confirm(self) -> None:
        assert self.confirm_cap is not None
        while (not self.stop_requested
               and len(self.ledger.running) < self.cfg.parallel.max_in_flight):
            if self.queued > 0:  # a waiting trial is what the next ask gets
                self.queued -= 1
                self._ask()
                continue
            asked = self.status.confirm_done + sum(self.confirming.values())
            need = self._confirm_needs()
            if not need or asked >= self.confirm_cap:
                return
            r = need[0][0]
            group = confirm_group(r)
            assert group is not None
            cand = Candidate.from_dict(dict(r.record.candidate or {}))
            self.recorder.enqueue(self.space.params_for(cand) or {},
                                  {"candidate": cand.to_dict(), "confirm": True,
                                   "look": self.ledger.next_look(group)})
            self._ask()

    def _fill(self) -> None:
        limit = max(200, 20 * self.n_trials)
        while (not self.stop_asking and not self.recorder.exhausted and not self.stop_requested
               and len(self.ledger.running) < self.cfg.parallel.max_in_flight
               and self.ledger.budget_left()):
            # (with repeats hvi asks tried candidates again for their looks, and stops itself)
            if not self.cfg.repeats and self.ledger.space_tried(self.space_size):
                if not self.space_exhausted:  # confirmation may still retrain the front
                    self.progress.message(f"every one of the {self.space_size:.0f} candidates "
                                          f"of space {self.space.name} has been tried: no new "
                                          "candidate is asked")
                self.space_exhausted = True
                break
            self._ask()
            if self.ledger.infeasible_this_run > limit:
                self.stop_asking = True
                self.warnings.append(f"stopped after {self.ledger.infeasible_this_run} "
                                     "infeasible candidates: the constraints leave (almost) "
                                     "nothing")
                self.progress.message("warning: " + self.warnings[-1])

    def _wait(self) -> None:
        ready = self.tasks.wait(list(self.ledger.running), POLL_S)
        t = time.perf_counter()
        for ref in ready:
            self._collect(ref)
        self._check_unschedulable()
        self._show()
        self.driver_s["collect"] += time.perf_counter() - t

    def _check_unschedulable(self) -> None:
        """Trials that no live node can fit (the nodes that could left the cluster) FAIL after
        ``parallel.pending_timeout_s`` instead of waiting forever; no new trial is asked."""
        limit = self.cfg.parallel.pending_timeout_s
        now = time.monotonic()
        if not limit or not self.ledger.running:
            self._unfit_since = None
            return
        if now - self._fit_checked < FIT_CHECK_S:
            return
        self._fit_checked = now
        why = cluster.unfit(self.cfg.parallel)
        if why is None:
            self._unfit_since = None
            return
        if self._unfit_since is None:
            self._unfit_since = now
            self.progress.message(f"warning: {why}; trials wait up to {limit:g} s "
                                  "([parallel] pending_timeout_s)")
            return
        if now - self._unfit_since < limit:
            return
        reason = (f"unschedulable: {why}, for {now - self._unfit_since:.0f} s "
                  "([parallel] pending_timeout_s)")
        if not self.stop_asking:
            self.stop_asking = True
            self.warnings.append(reason)
            self.progress.message("warning: " + reason + "; no new trial is asked")
        refs = list(self.ledger.running)
        self.tasks.cancel(refs)
        for ref in refs:
            run = self.ledger.collected(ref)
            self._fail(run, reason)
            for action, twin in self.ledger.release(run.key):
                self._route(twin, action)

    def _ask(self) -> None:
        asked = self.recorder.ask()
        outside = "candidate" in asked.enqueued and not asked.fixed  # a baseline outside
        cand = (Candidate.from_dict(asked.enqueued["candidate"]) if outside
                else self.space.sample(asked.trial))
        if not outside:  # a baseline outside the space is no candidate of it
            self.ledger.saw(cand)
        # repeats: a tried candidate asked again is its next look (the next seed); a
        # baseline's seeds and confirmation looks come enqueued with theirs
        look = asked.enqueued.get("look")
        plan = plan_trial(self.study, cand, asked.number, repaired=False if outside else None,
                          next_look=self.ledger.next_look if self.cfg.repeats else None,
                          look=None if look is None else int(look),
                          confirm=bool(asked.enqueued.get("confirm")))
        self.recorder.set_constraints(asked, plan.constraints)
        base = asked.enqueued.get("baseline")  # stored at enqueue; the books read the record
        record = plan.record if base is None else replace(plan.record, baseline=str(base))
        run = Run(asked.trial_id, asked.number, cand, asked.params, asked.enqueued, record,
                  plan.payload)
        if plan.violated and not run.baseline:  # baselines train anyway, marked infeasible
            self.recorder.finish(run.trial_id, run.number, replace(
                run.record, infeasible=True,
                pruned_reason="infeasible: " + "; ".join(plan.violated)), "pruned")
            self.ledger.infeasible()
            return
        action = self.ledger.route(run)
        if action == "submit":  # a duplicate (reused, or parked for its twin) is no look
            self.ledger.looked(run.group)
        if plan.record.confirm:
            self.confirming[run.group] = self.confirming.get(run.group, 0) + 1
        self._route(run, action)

    def _route(self, run: Run, action: str) -> None:
        if action == "reuse":
            self._reuse(run)
        elif action == "submit":
            self._submit(run)
        # "park": the ledger holds it until its twin is told

    def _submit(self, run: Run) -> None:
        # baselines and confirmation looks train to the end (never stopped early): a stopped
        # one would measure no noise and confirm nothing
        whole = run.record.confirm or run.baseline is not None
        run.payload = replace(run.payload, snapshot=None if whole else self.ledger.snapshot())
        self.ledger.submitted(self.tasks.submit(run.payload), run)

    def _collect(self, ref: Any) -> None:
        run = self.ledger.collected(ref)
        try:
            out = self.tasks.get(ref)
        except Lost as e:  # before TaskError: a lost worker is worth a retry
            if run.retries < self.cfg.parallel.max_retries:
                run.retries += 1
                run.retry_reasons.append(str(e))
                self.progress.message(f"trial {run.number}: worker lost ({e.kind}); "
                                      f"retry {run.retries}/{self.cfg.parallel.max_retries}")
                self._submit(run)
                return
            self._fail(run, f"worker lost {run.retries + 1} time(s), no retry left; last: {e}")
        except TaskError as e:
            self._fail(run, f"error in the trial: {e}")
        else:
            if out["status"] == "complete":
                self._complete(run, out)
            elif out["status"] == "pruned":
                self._pruned(run, out)
            else:
                self._fail(run, str(out["reason"]), out)
        for action, twin in self.ledger.release(run.key):
            self._route(twin, action)

    # -- telling ------------------------------------------------------------------------------

    def _outcome(self, run: Run, out: dict[str, Any] | None, **fields: Any) -> TrialRecord:
        """The run's record with what happened: retries, where it ran, its result."""
        where: dict[str, Any] = {}
        result: dict[str, Any] = {}
        if out is not None:
            where = {k: out.get(k) for k in ("node", "node_id", "node_ip", "pid")}
            result = {k: v for k, v in (out.get("result") or {}).items()
                      if k in RESULT_KEYS}
        return replace(run.record, retries=run.retries,
                       retry_reasons=tuple(run.retry_reasons) or None, result=result,
                       **where, **fields)

    def _tell(self, run: Run, record: TrialRecord, state: State,
              values: list[float] | None = None, out: dict[str, Any] | None = None,
              what: str = "", reused: bool = False) -> None:
        attrs = self.recorder.finish(run.trial_id, run.number, record, state, values)
        if run.record.confirm:
            self.confirming[run.group] = self.confirming.get(run.group, 1) - 1
        self.ledger.finish(run.key, run.number, state, attrs, values, reused=reused)
        self.board.told(run.number, record, state, self.front)
        self._event(run, what, out)

    def _values(self, run: Run, miou: float) -> list[float]:
        return [float(miou) if o.measured else float(run.analytic[o.name])
                for o in self.objectives]

    def _complete(self, run: Run, out: dict[str, Any]) -> None:
        miou = float(out["result"]["miou"])
        if not math.isfinite(miou):
            self._fail(run, f"non-finite mIoU {miou}", out)
            return
        values = self._values(run, miou)
        weights = backbone = None
        if out.get("weights") and (run.baseline or (feasible(self.cfg, run.analytic)
                                                    and self.ledger.on_front(values))):
            weights = self.recorder.save_weights(run.number, out["weights"])
            backbone = out["result"].get("weights_backbone")  # head-only: the backbone's name
        self._tell(run, self._outcome(run, out, weights=weights, weights_backbone=backbone),
                   "complete", values, out, f"complete {self._fmt(values)}")

    def _pruned(self, run: Run, out: dict[str, Any]) -> None:
        record = self._outcome(run, out, pruned_reason=out.get("reason") or "stopped early")
        self._tell(run, record, "pruned", None, out,
                   f"pruned after {len(record.result.get('miou_curve', []))} eval(s): "
                   f"{record.pruned_reason}")

    def _fail(self, run: Run, reason: str, out: dict[str, Any] | None = None) -> None:
        self._tell(run, self._outcome(run, out, fail_reason=reason), "fail", None, out,
                   f"FAIL: {reason}")

    def _reuse(self, run: Run) -> None:
        stored = self.ledger.finished[run.key]
        lent = TrialRecord.from_attrs(stored.attrs)
        record = replace(run.record, result=lent.result, weights=lent.weights,
                         weights_backbone=lent.weights_backbone,
                         pruned_reason=lent.pruned_reason, node=lent.node, node_id=lent.node_id,
                         node_ip=lent.node_ip, reused_from=stored.number, retries=0)
        values = (self._values(run, lent.result["miou"]) if stored.state == "complete"
                  else None)
        self._tell(run, record, stored.state, values, None,
                   f"reused the result of trial {stored.number}", reused=True)

    def interrupt(self) -> None:
        """Cancel what runs, mark it, enqueue it again (Ctrl-C / SIGTERM)."""
        self.tasks.cancel(list(self.ledger.running))
        for run in self.ledger.drain():
            self.recorder.requeue(run.trial_id, run.number, run.params, run.enqueued,
                                  "interrupted: the search was stopped while the trial ran",
                                  run.record)

    # -- display and summary ----------------------------------------------------------------

    def _fmt(self, values: list[float]) -> str:
        return " ".join(f"{o.name} {v:.4g}" for o, v in zip(self.objectives, values,
                                                              strict=True))

    def front(self) -> tuple[list[int], float]:
        """The feasible Pareto front (trial numbers) and its normalised hypervolume."""
        version = self.ledger.front_version
        if self._front[0] != version:
            numbers, rows = self.ledger.front()
            best = [self.ranges[o.name].best for o in self.objectives]
            worst = [self.ranges[o.name].worst for o in self.objectives]
            hv = normalised_hypervolume(rows, best, worst) if numbers else 0.0
            self._front = (version, numbers, hv)
        return self._front[1], self._front[2]

    def _show(self, event: str | None = None) -> None:
        s = self.status
        s.running = self.ledger.waiting
        s.elapsed_s = time.perf_counter() - self.t0
        new = s.done - self.ledger.done_at_start
        s.eta_s = (s.elapsed_s / new * (self.n_trials - s.done)) if new else None
        numbers, s.hypervolume = self.front()
        s.front = len(numbers)
        noise = self.noise()
        s.noise = None if noise is None else noise.std
        if self.confirm_cap is not None:  # confirming: finished + still needed, capped
            missing = sum(n for _, n in self._confirm_needs())
            s.confirm_total = min(self.confirm_cap, s.confirm_done
                                  + sum(self.confirming.values()) + missing)
            s.confirm_total = max(s.confirm_total, s.confirm_done)
        self.progress.show(s, event)

    def noise(self) -> Any:
        """The study's seed noise of mIoU so far (`looks.pooled_noise`; None: unknown)."""
        return pooled_noise(self.ledger.candidates())

    def _event(self, run: Run, what: str, out: dict[str, Any] | None) -> None:
        where = ""
        if out is not None:
            where = f" on {out.get('node')}" + (f" in {out['wall_s']:.1f} s"
                                                 if out.get("wall_s") else "")
        base = f" [{run.baseline}]" if run.baseline else ""
        p = run.payload
        look = f" (look {p.look + 1}, seed {p.seed})" if p.look else ""
        self._show(f"trial {run.number}{base} {run.cand.key()}{look}: {what}{where}")

    def summary(self, interrupted: bool) -> SearchSummary:
        numbers, hv = self.front()
        s = self.status
        k = self.cfg.confirm.seeds
        noise = self.noise()
        front = feasible_front(self.ledger.candidates(), self.objectives)
        unconfirmed = sorted(r.number for r in front if not confirmed(r, max(k, 1)))
        return SearchSummary(
            study_name=self.cfg.name, storage=safe_url(self.url), out_dir=str(self.out),
            n_trials=self.n_trials, done=s.done, complete=s.complete, pruned=s.pruned,
            failed=s.failed, infeasible=s.infeasible, reused=s.reused, front=numbers,
            hypervolume=hv, elapsed_s=time.perf_counter() - self.t0, interrupted=interrupted,
            exhausted=self.recorder.exhausted or self.space_exhausted, warnings=list(self.warnings),
            loop_s=max(0.0, self.t_loop[1] - self.t_loop[0]), driver_s=dict(self.driver_s),
            feature_cache=self.feature_info, repeats=s.repeats,
            noise=None if noise is None else noise.to_dict(), confirm_seeds=k,
            confirmed=s.confirm_done, confirm_cap=self.confirm_cap, unconfirmed=unconfirmed)


def _size(space: Any) -> float:
    """How many candidates ``space`` has (inf: too many to count)."""
    try:
        return float(space.count())
    except (UserError, OverflowError):
        return math.inf


_TERMINATED = threading.Event()  # a search of this process stopped on SIGTERM


def stopped_by_sigterm() -> bool:
    """Whether SIGTERM stopped a search of this process (the CLI then ends the process as
    soon as the stop is clean, as SIGTERM asks)."""
    return _TERMINATED.is_set()


@contextmanager
def _stop_signals(search: _Search) -> Iterator[Callable[[], None]]:
    """First Ctrl-C (or SIGTERM): finish cleanly at the next poll; second: abort now.

    Before the loop (Ray starting, a feature cache building) no poll would see the request
    and nothing runs to finish: the first one stops at once. Yields the call that says the
    loop has started."""
    looping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield looping.set
        return

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM:
            _TERMINATED.set()
        if search.stop_requested or not looping.is_set():
            if not search.stop_requested:
                search.stop_requested = True
                search.progress.message("stopping: before the first trial")
            raise KeyboardInterrupt
        search.stop_requested = True
        search.progress.message("stopping: cancelling running trials (Ctrl-C again to abort)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield looping.set
    except KeyboardInterrupt:
        if not search.stop_requested:  # Ray's own SIGTERM handler ran while it started
            _TERMINATED.set()
            search.progress.message("stopping: before the first trial")
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_search(config: StudyConfig | str | Path, *, n_trials: int | None = None,
               storage: str | None = None, out: str | Path | None = None,
               address: str | None = None, resume: bool = False,
               progress: Progress | bool = True, num_cpus: int | None = None,
               tensorboard: bool = False, confirm: int | None = None) -> SearchSummary:
    """Run (or continue) the study ``config`` describes; see the module docstring.

    ``address``: Ray address (None: ``RAY_ADDRESS`` or a local Ray on 127.0.0.1). ``num_cpus``
    caps a local Ray. ``tensorboard``: curves under ``OUT/tb/`` (search/tensorboard.py).
    ``confirm``: seeds each front candidate needs after ``n_trials`` (replaces ``[confirm]
    seeds``; 0: no confirmation). Bad input raises a one-line UserError before anything is
    written.
    """
    cfg = config if isinstance(config, StudyConfig) else load_study_config(config)
    prog = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
    search = _Search(cfg, n_trials=n_trials, storage=storage, out=out, address=address,
                     resume=resume, progress=prog, num_cpus=num_cpus, confirm=confirm)
    interrupted = False
    with _stop_signals(search) as looping:  # from the start: Ray's start, a cache build
        try:
            search.prepare()
        except KeyboardInterrupt:  # stopped during a cache build: the study exists already
            search.recorder.close()
            raise
        search.board = Board(search.out / "tb" if tensorboard else None, prog.message)
        try:
            for w in search.warnings:
                prog.message(f"warning: {w}")
            looping()
            try:
                search.recover()
                search._show()
                search.loop()
            except KeyboardInterrupt:
                interrupted = True
                search.interrupt()
        finally:
            search.lock.release()  # first: its connection would keep the WAL from folding back
            search.recorder.close()
            search.board.close()
            cluster.disconnect(search.connected)
    summary = search.summary(interrupted)
    search._show()
    prog.close(search.status)
    return summary
