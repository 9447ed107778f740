"""Distributed multi-objective search: Optuna ask/tell driving Ray trials.

``run_search("studies/quickstart.toml")`` (or ``nas-dil search …``) runs a persistent study;
see `nas_dil.search.driver` for the loop, faults and resume, `nas_dil.search.config` for the
study file, `nas_dil.search.records` for what a study stores, `nas_dil.search.early_stop` for
the pruning rule, and docs/architecture.md for how the rooms fit together. Names load on first
use, so a Ray worker running a sleep trial never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_dil._lazy import lazy_getattr

if TYPE_CHECKING:
    from nas_dil.search.config import (
        BASELINES,
        StudyConfig,
        StudyConfigError,
        load_study_config,
        parse_study_config,
    )
    from nas_dil.search.driver import SearchSummary, run_search
    from nas_dil.search.records import (
        META_KEY,
        METRICS,
        STORAGE_FILE,
        Objective,
        StudyMeta,
        TrialRecord,
    )
    from nas_dil.search.samplers import SAMPLERS
    from nas_dil.search.storage import StorageError
    from nas_dil.search.trials import trial_key

_LAZY = {
    **dict.fromkeys(("BASELINES", "StudyConfig", "StudyConfigError", "load_study_config",
                     "parse_study_config"), "nas_dil.search.config"),
    **dict.fromkeys(("SearchSummary", "run_search"), "nas_dil.search.driver"),
    **dict.fromkeys(("META_KEY", "METRICS", "STORAGE_FILE", "Objective", "StudyMeta",
                     "TrialRecord"), "nas_dil.search.records"),
    "SAMPLERS": "nas_dil.search.samplers",
    "StorageError": "nas_dil.search.storage",
    "trial_key": "nas_dil.search.trials",
}

__all__ = [
    "BASELINES",
    "META_KEY",
    "METRICS",
    "SAMPLERS",
    "STORAGE_FILE",
    "Objective",
    "SearchSummary",
    "StorageError",
    "StudyConfig",
    "StudyConfigError",
    "StudyMeta",
    "TrialRecord",
    "load_study_config",
    "parse_study_config",
    "run_search",
    "trial_key",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
