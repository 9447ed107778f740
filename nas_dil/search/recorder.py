"""The recorder: every write of a search to its storage, and the only code that reaches into
Optuna's internals (``optuna.storages._rdb``, ``Trial._fixed_params``, ``Study._storage``).

Writes: a RUNNING trial stores its parameters and what sampling set (``candidate``,
``repaired``; Optuna's ask and `Space.sample` write those); its other attributes (a
`TrialRecord`: arch, trial_config, key, analytic RF/FLOPs, the result…) are stored in one
statement just before its tell (`finish`). Samplers re-read every running trial per suggestion
(TPE's constant liar), so small running trials keep asking cheap. SQLite runs in WAL mode
meanwhile (`nas_dil.search.storage`).

Weights: `save_weights` writes a state_dict to ``OUT/weights/trial_<N>.pt`` (atomically); the
trial's ``weights`` attribute records the relative path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas_dil.search.ledger import State
from nas_dil.search.records import (
    META_KEY,
    Objective,
    StoredTrial,
    StudyMeta,
    TrialRecord,
    asked_attrs,
)
from nas_dil.search.storage import close_storage, open_storage

__all__ = ["Asked", "Recorder"]

def _bulk_user_attrs(storage: Any, trial_id: int, attrs: Mapping[str, Any]) -> bool:
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


class Asked:
    """A trial just asked: Optuna's trial object (for `Space.sample`) and what it came with."""

    def __init__(self, trial: Any, study: Any) -> None:
        self.trial = trial
        self.trial_id: int = trial._trial_id
        self.number: int = trial.number
        self.enqueued: dict[str, Any] = asked_attrs(trial)
        fixed = getattr(trial, "_fixed_params", None)  # read by Trial(): saves a query
        if fixed is None:  # pragma: no cover - an Optuna without it
            fixed = study._storage.get_trial_system_attrs(self.trial_id).get("fixed_params")
        self.fixed: dict[str, Any] = dict(fixed or {})

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.trial.params)


class Recorder:
    """The search's one handle on its storage (see the module docstring)."""

    def __init__(self, url: str, out: Path) -> None:
        self.url = url
        self.out = out
        self.study: Any = None
        self.exhausted = False  # the sampler stopped the study (it tried every candidate)

    # -- the study --------------------------------------------------------------------------

    def open(self, name: str, sampler: Any, exists: bool, objectives: tuple[Objective, ...],
             meta: StudyMeta) -> Any:
        """Load the study, or create it with its directions, metric names and `meta`."""
        import optuna

        storage = open_storage(self.url)
        if exists:
            self.study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        else:
            directions: list[Any] = [o.direction for o in objectives]
            self.study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                             directions=directions)
            self.study.set_metric_names([o.name for o in objectives])
            self.study.set_user_attr(META_KEY, meta.to_dict())
        return self.study

    def close(self) -> None:
        if self.study is not None:
            close_storage(self.study._storage)  # SQLite: one self-contained file again

    def trials(self) -> list[StoredTrial]:
        return [StoredTrial.from_frozen(t) for t in self.study.get_trials(deepcopy=False)]

    def enqueue(self, params: Mapping[str, Any], enqueued: Mapping[str, Any]) -> None:
        self.study.enqueue_trial(dict(params), user_attrs=dict(enqueued))

    def ask(self) -> Asked:
        return Asked(self.study.ask(), self.study)

    def set_constraints(self, asked: Asked, constraints: Mapping[str, float]) -> None:
        for name, v in constraints.items():
            asked.trial.set_constraint(name, v)

    # -- writes -----------------------------------------------------------------------------

    def write(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """All of ``attrs`` in one statement and one transaction where the storage allows it
        (Optuna writes one attribute per query and commit; a trial has ~40 of them)."""
        storage = self.study._storage
        if not _bulk_user_attrs(storage, trial_id, attrs):
            for k, v in attrs.items():
                storage.set_trial_user_attr(trial_id, k, v)

    def tell(self, number: int, state: State, values: list[float] | None = None) -> None:
        from optuna.trial import TrialState

        try:
            self.study.tell(number, values, state=TrialState[state.upper()])
        except RuntimeError as e:  # BruteForceSampler stops the study when it has seen all
            if "Study.stop" not in str(e):
                raise
            self.exhausted = True

    def finish(self, trial_id: int, number: int, record: TrialRecord, state: State,
               values: list[float] | None = None) -> dict[str, Any]:
        """Write the trial's record and tell its state; returns the attributes written."""
        attrs = record.to_attrs()
        self.write(trial_id, attrs)
        self.tell(number, state, values)
        return attrs

    def requeue(self, trial_id: int, number: int, params: Mapping[str, Any],
                enqueued: Mapping[str, Any], reason: str,
                record: TrialRecord | None = None) -> None:
        """Mark a trial the driver could not finish as FAIL (with its ask-time ``record``,
        when known) and enqueue it again with the same parameters."""
        attrs = {**(record.to_attrs() if record else {}), "fail_reason": reason,
                 "requeue": True}
        self.write(trial_id, attrs)
        self.tell(number, "fail")
        again: dict[str, Any] = {"rerun_of": number}
        for k in ("baseline", "look", "confirm"):  # a baseline's seed, a confirmation look
            if enqueued.get(k) is not None:
                again[k] = enqueued[k]
        if not params and "candidate" in enqueued:
            again["candidate"] = enqueued["candidate"]
        self.enqueue(params, again)

    def save_weights(self, number: int, data: bytes) -> str:
        """A state_dict as ``OUT/weights/trial_<N>.pt`` (atomically); the relative path."""
        rel = f"weights/trial_{number}.pt"
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return rel
