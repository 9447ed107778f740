"""A candidate as a trial of a study: its net, its training config and key, its analytic
metrics, the constraints it violates, what a worker gets, and the sampler that sees all of it
before training. Pure functions of the resolved study; nothing here touches the storage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from nas_dil.models.analytic import analytic_attrs, trial_schedule
from nas_dil.search.config import StudyConfig
from nas_dil.search.hvi import SamplerContext
from nas_dil.search.looks import look_seed
from nas_dil.search.records import TrialPayload, TrialRecord
from nas_dil.search.resolved import ResolvedStudy, constraint_values, feasible
from nas_dil.search.samplers import build_sampler
from nas_dil.spaces import Candidate

__all__ = ["Plan", "feasible", "make_sampler", "plan_trial", "trial_key"]


def trial_key(cand: Candidate, trial_config: Mapping[str, Any], seed: int,
              kind: Mapping[str, Any]) -> str:
    """Identity of a training run: equal keys train the same thing."""
    ident = {"candidate": cand.to_dict(), "trial_config": trial_config, "seed": seed,
             "kind": kind}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def losses(cfg: StudyConfig, analytic: Mapping[str, Any]) -> tuple[float, ...]:
    """The analytic objectives of a trial as losses (``sign · value``), in study order."""
    return tuple(o.sign * float(analytic[o.name]) for o in cfg.objectives if not o.measured)


@dataclass(frozen=True)
class Plan:
    """Everything known about a trial of ``cand`` before it trains."""

    cand: Candidate
    record: TrialRecord  # the ask-time attributes (candidate, arch, trial_config, key, …)
    constraints: dict[str, float]  # Optuna's constraint values (<= 0: met)
    violated: tuple[str, ...]  # one phrase per violated constraint
    payload: TrialPayload  # what a worker gets (snapshot set at submit)

    @property
    def key(self) -> str:
        return self.payload.key


def plan_trial(study: ResolvedStudy, cand: Candidate, number: int, repaired: bool | None,
               next_look: Callable[[str], int] | None = None, look: int | None = None,
               confirm: bool = False) -> Plan:
    """The trial of ``cand`` in ``study`` (trial ``number``; ``repaired`` as sampling said).
    ``next_look`` (``[sampler] repeats``): the candidate's first-look key -> which look this
    is; look k > 0 is a repeat, trained from seed ``cfg.seed + k`` (another key). ``look``:
    the look the trial was enqueued as (a baseline's seeds, a confirmation look), which wins;
    ``confirm``: a confirmation look (recorded as such)."""
    from nas_dil.train.config import TrialConfig

    cfg = study.cfg
    arch = study.arch(cand)
    train = cfg.train
    if train.cpus is None and cfg.parallel.cpus >= 1:  # the CPUs Ray gives each trial
        train = replace(train, cpus=int(cfg.parallel.cpus))
    tc = TrialConfig(arch, cfg.data, train).to_dict()
    crop = study.crop
    schedule = trial_schedule(cand, arch)  # on a backbone the blocks keep their kernels
    analytic = analytic_attrs(schedule, arch, crop)
    options = asdict(cfg.trial)
    kind = {"kind": cfg.trial.kind, **(options if study.kind.keyed_options else {})}
    first = trial_key(cand, tc, cfg.seed, kind)
    if look is None:
        look = next_look(first) if next_look is not None else 0
    seed = look_seed(cfg.seed, look)
    key = trial_key(cand, tc, seed, kind) if look else first
    record = TrialRecord(candidate=cand.to_dict(), repaired=repaired, arch=arch.to_dict(),
                         trial_config=tc, seed=seed, key=key, analytic=analytic,
                         look=look or None, look_of=first if look else None,
                         confirm=confirm or None)
    constraints = constraint_values(cfg, analytic)
    violated: list[str] = []
    for c in cfg.constraints:
        if constraints[c.name] > 0:
            violated.append(f"{c.metric} {analytic[c.metric]:g} "
                            f"{'>' if c.kind == 'max' else '<'} {c.name} {c.bound:g}")
    if constraints.get("gridding_free"):
        violated.append(f"{analytic['holes']} holes (gridding_free)")
    dead = cfg.dead_taps.constraint(analytic, crop)
    if dead is not None and dead[1]:
        violated.append(dead[1])
    payload = TrialPayload(kind=cfg.trial.kind, trial_config=tc,
                           schedule=schedule.to_dict(), seed=seed, key=key, look=look,
                           number=number, analytic=analytic, losses=losses(cfg, analytic),
                           keep_weights=cfg.keep_weights,
                           options=({**options, "feature_cache": cfg.feature_cache}
                                    if train.freeze != "none" else options))
    return Plan(cand, record, constraints, tuple(violated), payload)


def make_sampler(study: ResolvedStudy) -> Any:
    """The study's sampler (seeded with the study's seed unless [sampler] sets one); the hvi
    sampler also gets what is known before training: analytic objectives, constraints."""
    cfg = study.cfg
    context = SamplerContext(study.space, tuple(cfg.objectives), study.score, study.feasible)
    return build_sampler(cfg.sampler, seed=cfg.seed, context=context, where=str(cfg.path))
