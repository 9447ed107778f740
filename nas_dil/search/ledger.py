"""The driver's books: which trials run, which duplicates wait for a twin, which results can be
reused, the counts towards ``n_trials``, the Pareto front so far, and what a restarted driver
finds in the storage. Plain Python: no Ray, no storage (the loop and the recorder do those),
so every rule here is unit-tested on its own.

Counting: ``n_trials`` counts finished trials (COMPLETE, PRUNED by early stopping, FAIL;
baselines and reused duplicates included) except infeasible candidates (constraints violated:
PRUNED, never trained) and trials failed only because the driver stopped (``requeue``: they
are rerun). Confirmation looks (``confirm``, trained after ``n_trials`` to confirm the front
over seeds, `looks.needs_looks`) count apart, in ``status.confirm_done``.

Duplicates: a trial whose key was already trained reuses the stored result; one whose twin is
still running is parked until the twin finishes, then reuses its result, or trains when the
twin failed. With ``[sampler] repeats`` a candidate asked again is not a duplicate but another
look: the driver plans it with the next seed (``looks``, a `looks.LookCounter`, counts the looks
asked per candidate), and the front is `looks.feasible_front` over the candidates' merged
looks. Feasibility is the stored constraints' (`records.feasible`): the ledger gets a trial's
constraint values from ``constraints`` (what the driver stores with it) or, on recovery, from
the storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from nas_dil.pareto import dominates
from nas_dil.search.early_stop import Completed, FrontSnapshot, make_snapshot
from nas_dil.search.looks import (
    CandidateResult,
    LookCounter,
    feasible_front,
    group_of,
    look_group,
    merge_looks,
)
from nas_dil.search.progress import Status
from nas_dil.search.records import (
    RESULT_KEYS,
    Objective,
    StoredTrial,
    TrialPayload,
    TrialRecord,
)
from nas_dil.spaces import Candidate

__all__ = ["Action", "Ledger", "Run", "State", "Stored", "StoredTrial"]

State = Literal["complete", "pruned", "fail"]  # how a trial finished
Action = Literal["reuse", "park", "submit"]  # what the loop does with an asked trial
# what a finished trial lends a duplicate of it (its measured result and where it ran)
_LENT = (*RESULT_KEYS, "pruned_reason", "weights", "node", "node_id", "node_ip")


@dataclass
class Run:
    """A trial between ask and tell."""

    trial_id: int  # Optuna's storage id
    number: int
    cand: Candidate
    params: dict[str, Any]  # its Optuna parameters (enqueued again as they are)
    enqueued: dict[str, Any]  # the user attrs it was enqueued with (baseline, candidate, …)
    record: TrialRecord  # its ask-time attributes, written with the result
    payload: TrialPayload
    retries: int = 0
    retry_reasons: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.payload.key

    @property
    def group(self) -> str:
        """Its candidate's look group (`looks.group_of`; its own key at look 0)."""
        return group_of(self.record) or self.key

    @property
    def baseline(self) -> str | None:
        return self.enqueued.get("baseline")

    @property
    def analytic(self) -> Mapping[str, Any]:
        return self.record.analytic


@dataclass(frozen=True)
class Stored:
    """A finished result a duplicate may reuse."""

    number: int
    state: State
    attrs: dict[str, Any]  # the _LENT attributes


class Ledger:
    """The books of one search (see the module docstring)."""

    def __init__(self, n_trials: int, objectives: Sequence[Objective],
                 constraints: Callable[[Mapping[str, Any]], Mapping[str, float]],
                 snapshot: Callable[[list[Completed]], FrontSnapshot | None] | None = None
                 ) -> None:
        self.n_trials = n_trials
        self.objectives = tuple(objectives)
        self.analytic_objs = [o for o in self.objectives if not o.measured]
        self.constraints = constraints  # a told trial's attrs -> its constraint values
        self.status = Status(n_trials)
        self.running: dict[Any, Run] = {}  # ticket (a Ray ObjectRef) -> run
        self.inflight: dict[str, int] = {}  # key -> number of the trial training it
        self.parked: dict[str, list[Run]] = {}  # key -> duplicates waiting for it
        self.finished: dict[str, Stored] = {}  # key -> a result to reuse
        self.completed: list[Completed] = []  # for the early-stopping snapshot
        self.complete: list[StoredTrial] = []  # COMPLETE trials told, for the front
        self._merged: tuple[int, list[CandidateResult]] = (-1, [])  # front_version, merged
        self.looks = LookCounter()  # looks asked per candidate (repeats)
        self.seen: set[Candidate] = set()  # distinct candidates of the space asked so far
        self.front_version = 0  # bumped when the front may have changed (for caches)
        self._make_snapshot = snapshot
        self._snapshot: FrontSnapshot | None = None
        self._snapshot_dirty = True
        self.infeasible_this_run = 0
        self.done_at_start = 0

    # -- routing ----------------------------------------------------------------------------

    def route(self, run: Run) -> Action:
        """What to do with a freshly asked trial; a parked one is recorded here."""
        if run.key in self.finished:
            return "reuse"
        if run.key in self.inflight:
            self.parked.setdefault(run.key, []).append(run)
            return "park"
        return "submit"

    def next_look(self, group: str) -> int:
        """The look the next trial of a candidate is (0: its first)."""
        return self.looks.next_look(group)

    def looked(self, group: str) -> None:
        """A trial of the candidate was asked (or found finished in the storage)."""
        self.looks.looked(group)

    def saw(self, cand: Candidate) -> None:
        """A candidate of the study's space was asked (feasible or not, trained or reused)."""
        self.seen.add(cand)

    def space_tried(self, size: float) -> bool:
        """Every candidate of a finite space of ``size`` has been asked: a sampler asking
        again could only repeat them (answered from storage, forever), so asking stops.
        (With ``[sampler] repeats`` hvi stops the study itself once the looks are had.)"""
        return len(self.seen) >= size

    def submitted(self, ticket: Any, run: Run) -> None:
        self.running[ticket] = run
        self.inflight[run.key] = run.number

    def collected(self, ticket: Any) -> Run:
        run = self.running.pop(ticket)
        self.inflight.pop(run.key, None)
        return run

    def release(self, key: str) -> Iterator[tuple[Action, Run]]:
        """The duplicates parked on ``key`` once its trial is told, one by one: each decision
        sees what the loop did with the previous one (a submit makes the rest wait again)."""
        for run in self.parked.pop(key, []):
            if key in self.finished:
                yield "reuse", run
            elif key in self.inflight:  # another twin took over (a retry): wait for it
                self.parked.setdefault(key, []).append(run)
            else:  # the twin failed: this one trains
                yield "submit", run

    def drain(self) -> list[Run]:
        """Every run not yet told (running or parked), forgotten here (Ctrl-C)."""
        runs = list(self.running.values()) + [r for v in self.parked.values() for r in v]
        self.running.clear()
        self.parked.clear()
        self.inflight.clear()
        return runs

    # -- counts -----------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Trials asked and not told: running or parked."""
        return len(self.running) + sum(len(v) for v in self.parked.values())

    def budget_left(self) -> bool:
        return self.status.done + self.waiting < self.n_trials

    def count(self, state: State) -> None:
        self.status.done += 1
        if state == "complete":
            self.status.complete += 1
        elif state == "pruned":
            self.status.pruned += 1
        else:
            self.status.failed += 1

    def infeasible(self) -> None:
        self.status.infeasible += 1
        self.infeasible_this_run += 1

    def finish(self, key: str | None, number: int, state: State, attrs: Mapping[str, Any],
               values: list[float] | None = None, reused: bool = False) -> None:
        """A trial was told: count it, keep its result for duplicates, add it to the front."""
        self._told(StoredTrial(number, state, None if values is None else tuple(values),
                               TrialRecord.from_attrs(attrs), self.constraints(attrs)),
                   key, attrs, reused)

    def _told(self, t: StoredTrial, key: str | None, attrs: Mapping[str, Any],
              reused: bool) -> None:
        state: State = t.state  # type: ignore[assignment]
        if t.record.confirm:  # after n_trials: counted apart
            self.status.confirm_done += 1
        else:
            self.count(state)
        if reused:
            self.status.reused += 1
        if t.record.look and not t.record.confirm and t.record.baseline is None:
            self.status.repeats += 1
        if key and state in ("complete", "pruned") and key not in self.finished:
            self.finished[key] = Stored(t.number, state, {k: attrs[k] for k in _LENT
                                                          if k in attrs})
        if state == "complete" and t.values is not None:
            self._add_completed(t, attrs)

    # -- the front --------------------------------------------------------------------------

    def losses(self, attrs: Mapping[str, Any]) -> tuple[float, ...]:
        return tuple(o.sign * float(attrs[o.name]) for o in self.analytic_objs)

    def _add_completed(self, t: StoredTrial, attrs: Mapping[str, Any]) -> None:
        curve = tuple(float(v) for v in attrs.get("miou_curve") or ())
        if self._make_snapshot is not None and all(o.name in attrs for o in self.analytic_objs):
            self.completed.append(Completed(t.number, curve, self.losses(attrs)))
            self._snapshot_dirty = True
        self.complete.append(t)
        self.front_version += 1

    def _signed(self, rows: Iterable[Sequence[float]]) -> np.ndarray:
        sign = np.array([o.sign for o in self.objectives])
        return np.array(list(rows), dtype=float).reshape(-1, len(sign)) * sign

    def candidates(self) -> list[CandidateResult]:
        """The COMPLETE trials so far, one result per candidate (cached until one completes)."""
        if self._merged[0] != self.front_version:
            self._merged = (self.front_version, merge_looks(self.complete, self.objectives))
        return self._merged[1]

    def on_front(self, values: Sequence[float]) -> bool:
        """Whether a feasible trial with ``values`` joins the front of the feasible so far:
        no feasible candidate (its looks merged) dominates it."""
        rows = [r.values for r in self.candidates() if r.feasible and r.values is not None]
        return not dominates(self._signed(rows), self._signed([values])[0]).any()

    def front(self) -> tuple[list[int], np.ndarray]:
        """Trial numbers of the feasible Pareto front (sorted) and their values (rows): each
        candidate once, at the mean of its looks (`looks.feasible_front`)."""
        front = feasible_front(self.candidates(), self.objectives)
        if not front:
            return [], np.zeros((0, len(self.objectives)))
        return sorted(r.number for r in front), np.array([r.values for r in front], dtype=float)

    def snapshot(self) -> FrontSnapshot | None:
        """The early-stopping snapshot of the completed trials (cached until one completes)."""
        if self._make_snapshot is None:
            return None
        if self._snapshot_dirty:
            self._snapshot = self._make_snapshot(self.completed)
            self._snapshot_dirty = False
        return self._snapshot

    # -- a restarted driver -----------------------------------------------------------------

    def recover(self, trials: Iterable[StoredTrial]) -> list[StoredTrial]:
        """Take in what the storage holds; returns the trials a stopped driver left running
        (the loop marks them FAIL and enqueues them again)."""
        orphans = []
        for t in trials:
            rec = t.record
            if t.state == "running":
                orphans.append(t)
                continue
            if t.state not in ("complete", "pruned", "fail"):
                continue
            if rec.infeasible:
                self.status.infeasible += 1
                continue
            if rec.requeue:
                continue
            if (group := look_group(rec)) is not None:
                self.looked(group)
            self._told(t, rec.key, t.attrs, reused=rec.reused_from is not None)
        self.done_at_start = self.status.done
        return orphans


def snapshot_maker(*, min_completed: int, n_evals: int | None, margin: float, min_evals: int,
                   names: Sequence[str]) -> Callable[[list[Completed]], FrontSnapshot | None]:
    """The early-stopping snapshot builder a ledger calls (`early_stop.make_snapshot`)."""
    def make(completed: list[Completed]) -> FrontSnapshot | None:
        return make_snapshot(completed, min_completed=min_completed, n_evals=n_evals,
                             margin=margin, min_evals=min_evals, names=names)
    return make
