"""Distributed multi-objective search: Optuna ask/tell driving Ray trials.

``run_search("studies/quickstart.toml")`` (or ``nas-dil search …``) runs a persistent study;
see `nas_dil.search.driver` for the loop, faults and resume, `nas_dil.search.config` for the
study file, `nas_dil.search.early_stop` for the pruning rule. Names load on first use, so a
Ray worker running a sleep trial never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_dil._lazy import lazy_getattr

if TYPE_CHECKING:
    from nas_dil.search.config import (
        BASELINES,
        SAMPLERS,
        StudyConfig,
        StudyConfigError,
        load_study_config,
        parse_study_config,
    )
    from nas_dil.search.driver import SearchSummary, run_search, trial_key
    from nas_dil.search.objectives import METRICS, Objective
    from nas_dil.search.storage import META_KEY, STORAGE_FILE, StorageError

_LAZY = {
    **dict.fromkeys(("BASELINES", "SAMPLERS", "StudyConfig", "StudyConfigError",
                     "load_study_config", "parse_study_config"), "nas_dil.search.config"),
    **dict.fromkeys(("SearchSummary", "run_search", "trial_key"), "nas_dil.search.driver"),
    **dict.fromkeys(("METRICS", "Objective"), "nas_dil.search.objectives"),
    **dict.fromkeys(("META_KEY", "STORAGE_FILE", "StorageError"), "nas_dil.search.storage"),
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
    "load_study_config",
    "parse_study_config",
    "run_search",
    "trial_key",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
