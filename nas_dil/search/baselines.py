"""Baselines (named seed schedules) as candidates, and a candidate's Optuna parameters."""

from __future__ import annotations

from typing import Any

from nas_dil.search.config import BaselineConfig
from nas_dil.spaces import Candidate, Space
from nas_dil.spaces.rules import PerLayerRule, TableRule

__all__ = ["baseline_candidate", "space_params"]


def baseline_candidate(b: BaselineConfig, space: Space) -> Candidate:
    """The baseline's rates with its kernel / output stride / width, else the space's first
    choices (kernel 3 when the space allows it)."""
    cfg = space.config
    kernel = b.kernel or (3 if 3 in cfg.kernel else cfg.kernel[0])
    return Candidate(b.rates, kernel, b.output_stride or cfg.output_stride[0],
                     b.width or cfg.width[0])


def space_params(space: Space, cand: Candidate) -> dict[str, Any] | None:
    """The parameters `Space.sample` suggests to produce ``cand``; None if it is not in the
    space (then no sampler parameter can describe it)."""
    if not space.contains(cand):
        return None
    params: dict[str, Any] = {"kernel": cand.kernel, "output_stride": cand.output_stride,
                              "width": cand.width}
    rule = space.rule
    if isinstance(rule, PerLayerRule):
        params["depth"] = cand.depth
        params.update({f"r{i}": r for i, r in enumerate(cand.rates, 1)})
    elif isinstance(rule, TableRule):
        label = next(lab for lab, r in rule.tables[cand.kernel].items() if r == cand.rates)
        params[rule.param_name(cand.kernel)] = label
    else:  # pragma: no cover - every rule is one of the two families
        return None
    return params
