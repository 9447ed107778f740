"""Training trials: `run_trial(config, schedule, seed) -> TrialOutcome` (metrics and net).

Names load on first use, so reading a trial config (`nas_dil.train.config`, which a study file
parse needs) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_dil._lazy import lazy_getattr

if TYPE_CHECKING:
    from nas_dil.train.config import TrainConfig, TrialConfig, TrialConfigError
    from nas_dil.train.evaluate import evaluate_model, parse_scales
    from nas_dil.train.trial import (
        EvalCallback,
        TrialDiverged,
        TrialFailed,
        TrialOOM,
        TrialOutcome,
        TrialResult,
        cpu_plan,
        evaluate,
        resolve_device,
        run_trial,
    )

_LAZY = {
    **dict.fromkeys(("TrainConfig", "TrialConfig", "TrialConfigError"), "nas_dil.train.config"),
    **dict.fromkeys(("EvalCallback", "TrialDiverged", "TrialFailed", "TrialOOM", "TrialOutcome",
                     "TrialResult", "cpu_plan", "evaluate", "resolve_device", "run_trial"),
                    "nas_dil.train.trial"),
    **dict.fromkeys(("evaluate_model", "parse_scales"), "nas_dil.train.evaluate"),
}

__all__ = [
    "EvalCallback",
    "TrainConfig",
    "TrialConfig",
    "TrialConfigError",
    "TrialDiverged",
    "TrialFailed",
    "TrialOOM",
    "TrialOutcome",
    "TrialResult",
    "cpu_plan",
    "evaluate",
    "evaluate_model",
    "parse_scales",
    "resolve_device",
    "run_trial",
]

__getattr__ = lazy_getattr(__name__, _LAZY)
