"""`ReadOnlyOverlay`: the read-only storage view `nas-dil dashboard` serves (see
`nas_dil.report.dashboard`): reads go to the study's storage, in-memory system attrs are
overlaid (the report's figures and notes, heat-map artifacts, the constraint list), every write
raises.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import StudyDirection
    from optuna.study._frozen import FrozenStudy
    from optuna.trial import FrozenTrial, TrialState

__all__ = ["ReadOnlyOverlay"]

_CONSTRAINTS_KEY = "constraints"  # optuna.samplers._base._CONSTRAINTS_KEY (the list format)


def _read_only(*_: Any, **__: Any) -> Any:
    raise NotImplementedError(
        "nas-dil dashboard serves the study read-only (a search may be writing to it)"
    )


def _patch_trial(t: FrozenTrial, extra: dict[str, Any] | None) -> FrozenTrial:
    """A shallow copy of ``t`` with the overlay's system attrs (and the constraint list)."""
    attrs = t.system_attrs
    add: dict[str, Any] = dict(extra or {})
    if _CONSTRAINTS_KEY not in attrs:
        named = t.constraints  # Optuna's reading of "constraints:<name>" attrs
        if named:
            add[_CONSTRAINTS_KEY] = [float(v) for v in named.values()]
    if not add:
        return t
    out = copy.copy(t)
    out._system_attrs = {**attrs, **add}
    return out


class ReadOnlyOverlay(BaseStorage):
    """A read-only ``BaseStorage`` view of ``backend`` plus in-memory system attrs.

    Reads go to ``backend``; study ``study_id`` gets ``study_attrs`` merged into its system
    attrs and trial ``t`` gets ``trial_attrs[t]`` merged into its. Every write raises.
    """

    def __init__(self, backend: BaseStorage, study_id: int) -> None:
        self._backend = backend
        self._study_id = study_id
        self._study_attrs: dict[str, Any] = {}
        self._trial_attrs: dict[int, dict[str, Any]] = {}

    def set_overlay(self, study_attrs: dict[str, Any],
                    trial_attrs: dict[int, dict[str, Any]]) -> None:
        # two plain assignments: readers see the old or the new dicts, never a half-built one
        self._trial_attrs = trial_attrs
        self._study_attrs = study_attrs

    # -- reads with the overlay ----------------------------------------------------------
    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        attrs = self._backend.get_study_system_attrs(study_id)
        if study_id == self._study_id:
            return {**attrs, **self._study_attrs}
        return attrs

    def get_all_studies(self) -> list[FrozenStudy]:
        out = []
        for s in self._backend.get_all_studies():
            if s._study_id == self._study_id:
                s = copy.copy(s)
                s.system_attrs = {**s.system_attrs, **self._study_attrs}
            out.append(s)
        return out

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return _patch_trial(self._backend.get_trial(trial_id), self._trial_attrs.get(trial_id))

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).system_attrs

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = self._backend.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        if study_id != self._study_id:
            return trials
        extra = self._trial_attrs
        return [_patch_trial(t, extra.get(t._trial_id)) for t in trials]

    # -- plain reads ------------------------------------------------------------------------
    def get_study_id_from_name(self, study_name: str) -> int:
        return self._backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._backend.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._backend.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_user_attrs(study_id)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._backend.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def get_n_trials(self, study_id: int,
                     state: tuple[TrialState, ...] | TrialState | None = None) -> int:
        return self._backend.get_n_trials(study_id, state)

    # -- writes: refused ----------------------------------------------------------------------
    def create_new_study(self, directions: Sequence[StudyDirection],
                         study_name: str | None = None) -> int:
        return _read_only()

    def delete_study(self, study_id: int) -> None:
        _read_only()

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        _read_only()

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        _read_only()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return _read_only()

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        _read_only()

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        return _read_only()

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        _read_only()

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        _read_only()

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        _read_only()
