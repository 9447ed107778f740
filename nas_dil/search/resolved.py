"""`ResolvedStudy`: a study config with everything preflight learned around it, made once
(`nas_dil.search.preflight.resolve_study`) and taken by planning, the loop and the sampler.

The config alone does not say which nets trials build: the space (bound to the crop when the
study avoids dead taps), the number of classes (the data's, known once it is loaded where
trials run) and the study's ``[arch]`` template do. Here they are together, so nothing passes
``num_classes`` or rebuilds an `ArchConfig` from the ``[arch]`` table by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas_dil.models.config import ArchConfig, Placed
from nas_dil.search.config import StudyConfig
from nas_dil.search.kinds import TrialKind
from nas_dil.search.objectives import ObjectiveRange
from nas_dil.search.records import feasible as is_feasible
from nas_dil.spaces import Candidate, Space

__all__ = ["ResolvedStudy", "constraint_values", "feasible"]


def constraint_values(cfg: StudyConfig, attrs: Mapping[str, Any]) -> dict[str, float]:
    """Optuna's constraint values of a candidate's analytic ``attrs`` under the study's
    constraints, gridding_free and its dead-tap policy (<= 0: met; attrs of older studies may
    lack a metric: no value for it). What the driver stores with a trial."""
    out = {c.name: c.violation(float(attrs[c.metric])) for c in cfg.constraints
           if c.metric in attrs}
    if cfg.gridding_free:
        out["gridding_free"] = float(attrs.get("holes") or 0)
    if cfg.dead_taps.refused:
        out["dead_taps"] = float(attrs.get("dead_taps") or 0)
    return out


def feasible(cfg: StudyConfig, attrs: Mapping[str, Any]) -> bool:
    """Whether a candidate's analytic ``attrs`` meet the study's constraints: the one rule
    (`records.feasible`, every stored constraint value <= 0) on its `constraint_values`."""
    return is_feasible(constraint_values(cfg, attrs))


@dataclass(frozen=True)
class ResolvedStudy:
    cfg: StudyConfig
    space: Space  # the study's space, bound to the crop when it avoids dead taps
    num_classes: int  # the data's (sleep trials: data.num_classes or 5)
    baselines: tuple[tuple[str, Candidate], ...] = ()  # (name, candidate), in study order
    ranges: Mapping[str, ObjectiveRange] = field(default_factory=dict)  # hypervolume's
    warnings: tuple[str, ...] = ()  # said before the search starts, recorded in its metadata
    sampler: Any = None  # the study's sampler (set last: it takes this object)
    features: Any = None  # [train] freeze: the feature caches' plan (preflight fills it)

    @property
    def kind(self) -> TrialKind:
        return self.cfg.kind

    @property
    def crop(self) -> tuple[int, int]:
        return self.cfg.data.crop_hw

    def arch(self, place: Placed) -> ArchConfig:
        """The net a trial at ``place`` (a candidate) trains."""
        return self.cfg.arch.at(place, self.num_classes)

    def score(self, cands: Sequence[Candidate]) -> dict[str, np.ndarray]:
        """`analytic_batch` of ``cands`` as this study's nets at its crop."""
        from nas_dil.models.analytic import analytic_batch

        return analytic_batch(cands, {**self.cfg.arch, "num_classes": self.num_classes},
                              self.crop)

    def feasible(self, attrs: Mapping[str, Any]) -> bool:
        return feasible(self.cfg, attrs)
