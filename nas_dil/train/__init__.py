"""Training trials: `run_trial(config, schedule, seed) -> TrialResult`."""

from nas_dil.train.config import TrainConfig, TrialConfig, TrialConfigError
from nas_dil.train.trial import (
    EvalCallback,
    TrialDiverged,
    TrialFailed,
    TrialOOM,
    TrialResult,
    evaluate,
    resolve_device,
    run_trial,
)

__all__ = [
    "EvalCallback",
    "TrainConfig",
    "TrialConfig",
    "TrialConfigError",
    "TrialDiverged",
    "TrialFailed",
    "TrialOOM",
    "TrialResult",
    "evaluate",
    "resolve_device",
    "run_trial",
]
