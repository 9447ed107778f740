"""`HVISampler` (``[sampler] name = "hvi"``): the sampler that uses what nas-dil knows before
training.

RF, FLOPs and parameters of a candidate are exact and free (`nas_dil.models.analytic`); only mIoU
needs training. So the sampler scores a pool of candidates (the whole space when it is small
enough to enumerate, else a growing random sample of it) and trains the one with the largest
*optimistic hypervolume improvement*: analytic objectives at their exact values, each measured
objective (mIoU) at a Gaussian-process upper confidence bound (mean + ``beta``·std, fitted on
the finished trials; `nas_dil.search.surrogate`), against the current front. Trials still
running stand on the front at their predicted mean, so parallel asks spread out.

It never proposes a candidate the study has tried or is running, nor one the constraints
reject (those would cost an ask and train nothing), and when every feasible candidate of an
enumerated space has been tried it stops the study, as brute force does.

The first ``n_startup`` trials are drawn at random from the feasible pool (the GP needs a few
points before its length scale means anything). Parameters reach Optuna through relative
sampling: the choice is made once per trial, then `Space.sample` suggests exactly its
parameters, so storage, resume and the dashboard see an ordinary define-by-run trial.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from nas_dil.pareto import REFERENCE, hypervolume_improvement, nondominated, normalise
from nas_dil.search.records import Objective
from nas_dil.search.surrogate import fit_gp
from nas_dil.spaces import Candidate, Space
from nas_dil.spaces.errors import SpaceError

__all__ = ["HVISampler", "SamplerContext", "check_options"]

ENUMERATE_MAX = 20_000  # spaces up to this many candidates are scored whole
REFRESH = 32  # larger spaces: fresh random candidates added to the pool at every ask
GROW_MAX = 8  # a sampled pool grows to at most this many times pool_size
MAX_SCORED = 2_048  # candidates scored per ask at most (a random subset beyond that)
MAX_OBSERVED = 600  # newest finished trials the GP is fitted on (cubic cost)


@dataclass(frozen=True)
class SamplerContext:
    """What the driver knows before training, for samplers that use it."""

    space: Space
    objectives: tuple[Objective, ...]
    # candidates -> their analytic attrs as columns (`nas_dil.models.analytic.analytic_batch`)
    analytic: Callable[[Sequence[Candidate]], Mapping[str, np.ndarray]]
    feasible: Callable[[Mapping[str, Any]], bool]  # analytic attrs -> within the constraints


class _Pool:
    """Candidates with their Optuna parameters, analytic losses and surrogate features."""

    def __init__(self, ctx: SamplerContext, depth: int) -> None:
        self.ctx = ctx
        self.depth = depth  # per-layer feature columns (longer schedules are cut)
        self.cands: list[Candidate] = []
        self.index: dict[Candidate, int] = {}  # candidates hash on their four fields
        self.params: list[dict[str, Any] | None] = []  # None: outside the space (a baseline)
        self.losses: list[np.ndarray] = []  # analytic objectives, minimised
        self.raw: list[np.ndarray] = []  # unscaled features
        self.ok: list[bool] = []  # feasible
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, cands: Sequence[Candidate], params: Sequence[dict[str, Any] | None]) -> None:
        new: dict[Candidate, dict[str, Any] | None] = {}
        for c, p in zip(cands, params, strict=True):
            if c not in self.index:
                new.setdefault(c, p)
        if not new:
            return
        cols = {k: v.tolist() for k, v in self.ctx.analytic(list(new)).items()}
        names = [o.name for o in self.ctx.objectives if not o.measured]
        signs = [o.sign for o in self.ctx.objectives if not o.measured]
        for i, (c, p) in enumerate(new.items()):
            a = {k: v[i] for k, v in cols.items()}  # plain Python values, as one trial's attrs
            self.index[c] = len(self.cands)
            self.cands.append(c)
            self.params.append(p)
            self.losses.append(np.array([sg * float(a[n]) for sg, n in zip(signs, names,
                                                                             strict=True)],
                                        dtype=float))
            self.raw.append(self._features(c, a))
            self.ok.append(bool(self.ctx.feasible(a)))
        self._arrays = None

    def _features(self, c: Candidate, a: Mapping[str, Any]) -> np.ndarray:
        layers = np.zeros(self.depth)  # 0 = no layer; else 1 + log2(rate)
        r = np.log2(np.asarray(c.rates[: self.depth], dtype=float)) + 1.0
        layers[: len(r)] = r
        return np.concatenate([layers, [
            c.depth, math.log2(c.kernel), math.log2(c.output_stride), math.log2(c.width),
            math.log(float(a["rf"])), math.log(float(a["rf_stack"])), float(a["coverage"]),
            float(bool(a["gridding_free"])), float(bool(a["hdc"])),
            math.log(float(a["macs"]) + 1.0), math.log(float(a["params"]) + 1.0)]])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Analytic losses (n, a), features scaled to [0, 1] over the pool (n, f), feasible,
        proposable (feasible and inside the space) — cached until the next `add`."""
        if self._arrays is None:
            raw = np.array(self.raw)
            lo, hi = raw.min(axis=0), raw.max(axis=0)
            keep = hi > lo  # constant columns carry nothing
            feats = (raw[:, keep] - lo[keep]) / (hi[keep] - lo[keep])
            losses = np.array(self.losses).reshape(len(self.cands), -1)
            ok = np.array(self.ok, dtype=bool)
            inside = np.array([p is not None for p in self.params], dtype=bool)
            self._arrays = (losses, feats, ok, ok & inside)
        return self._arrays


def check_options(beta: object = 2.0, n_startup: object = 8, pool_size: object = 4_096,
                  seed: object = None) -> None:
    """ValueError naming the first bad `[sampler]` option of the hvi sampler."""
    if not (isinstance(beta, int | float) and not isinstance(beta, bool) and beta >= 0
            and math.isfinite(beta)):
        raise ValueError(f"beta = {beta!r}: must be a finite number >= 0")
    for name, v, least in (("n_startup", n_startup, 1), ("pool_size", pool_size, 16)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"{name} = {v!r}: must be an integer >= {least}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed = {seed!r}: must be an integer")


class HVISampler(BaseSampler):
    """Optimistic-hypervolume-improvement sampler over a nas-dil space (module docstring).

    The driver passes ``context``; the other arguments are `[sampler]` options of a study.
    """

    def __init__(self, *, beta: float = 2.0, n_startup: int = 8, pool_size: int = 4_096,
                 seed: int | None = None, context: SamplerContext | None = None) -> None:
        check_options(beta=beta, n_startup=n_startup, pool_size=pool_size, seed=seed)
        if context is None:
            raise ValueError("the hvi sampler needs the study's context (the nas-dil driver "
                             "passes it)")
        self.beta = float(beta)
        self.n_startup = n_startup
        self.pool_size = pool_size
        self.ctx = context
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._random = RandomSampler(seed=seed)
        self._pool: _Pool | None = None
        self._exhaustive = False
        self._chosen: dict[int, tuple[dict[str, Any], dict[str, BaseDistribution]]] = {}
        self.last_choice: dict[str, Any] = {}  # how the last candidate was chosen (tests, logs)
        self._get_pool()  # at set-up, not at the first ask (4,096 candidates: ~0.3 s)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    # -- the pool ---------------------------------------------------------------------------

    def _draw(self, n: int) -> list[Candidate]:
        return self.ctx.space.draw(n, self._rng)

    def _params(self, cands: Sequence[Candidate]) -> list[dict[str, Any] | None]:
        return [self.ctx.space.params_for(c) for c in cands]

    def _get_pool(self) -> _Pool:
        if self._pool is not None:
            if not self._exhaustive and len(self._pool.cands) < GROW_MAX * self.pool_size:
                # a sampled pool keeps growing with fresh candidates (up to a bound: the
                # per-ask cost grows with it)
                fresh = self._draw(REFRESH)
                self._pool.add(fresh, self._params(fresh))
            return self._pool
        space = self.ctx.space
        try:
            exhaustive = space.count() <= ENUMERATE_MAX
        except SpaceError:  # too large to count: certainly too large to enumerate
            exhaustive = False
        cands = list(space.enumerate()) if exhaustive else self._draw(self.pool_size)
        cfg = space.config
        depth = max(getattr(getattr(cfg, "depth", None), "max", 0) or 0,
                    max(c.depth for c in cands))
        pool = _Pool(self.ctx, depth)
        pool.add(cands, self._params(cands))
        self._pool, self._exhaustive = pool, exhaustive
        return pool

    # -- Optuna's sampler interface ---------------------------------------------------------

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if trial.system_attrs.get("fixed_params"):  # an enqueued trial (a baseline): as given
            return {}
        if trial._trial_id not in self._chosen:
            params = self._choose(study, trial)
            self._chosen[trial._trial_id] = (params, _distributions(self.ctx.space, params)
                                             if params else {})
        return self._chosen[trial._trial_id][1]

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        params, _ = self._chosen.get(trial._trial_id, ({}, {}))
        return {k: v for k, v in params.items() if k in search_space}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # only when every feasible candidate is taken: a random one (the driver answers a
        # duplicate from storage without training it)
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._chosen.pop(trial._trial_id, None)
        if self._pool is None or not self._exhaustive:
            return
        ok = self._pool.arrays()[2].copy()
        for c in _finished_candidates(study, trial):
            if c in self._pool.index:
                ok[self._pool.index[c]] = False
        if not ok.any():
            study.stop()  # every feasible candidate has a result (as BruteForceSampler)

    # -- the choice -------------------------------------------------------------------------

    def _choose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        pool = self._get_pool()
        measured = [i for i, o in enumerate(self.ctx.objectives) if o.measured]
        obs_c: list[Candidate] = []
        obs_y: list[list[float]] = []
        running: list[Candidate] = []
        taken: set[Candidate] = set()
        for t in study.get_trials(deepcopy=False):
            cd = t.user_attrs.get("candidate")
            if t.number == trial.number or cd is None:
                continue
            c = Candidate.from_dict(cd)
            taken.add(c)
            y = _measured_values(t, self.ctx.objectives, measured)
            if y is not None:
                obs_c.append(c)
                obs_y.append(y)
            elif t.state == TrialState.RUNNING:
                running.append(c)
        outside = list(dict.fromkeys(c for c in obs_c + running if c not in pool.index))
        pool.add(outside, [None] * len(outside))  # baselines outside the space
        losses, feats, _, proposable = pool.arrays()
        free = proposable.copy()
        free[[pool.index[k] for k in taken if k in pool.index]] = False
        idx = np.flatnonzero(free)
        if len(idx) == 0:
            self.last_choice = {"how": "none left"}
            return {}
        n_obs = len(set(obs_c))
        if n_obs < self.n_startup or not measured:
            if not measured:  # every objective is analytic: the improvement is exact
                front = losses[[pool.index[c] for c in obs_c + running]]
                return self._best(pool, idx, self._normalise_analytic(losses, front, idx))
            i = int(self._rng.choice(idx))
            self.last_choice = {"how": "startup", "n_observed": n_obs}
            return dict(pool.params[i] or {})
        return self._by_improvement(pool, losses, feats, idx, obs_c, np.array(obs_y),
                                    running, measured)

    def _normalise_analytic(self, losses: np.ndarray, front: np.ndarray,
                            idx: np.ndarray) -> np.ndarray:
        lo, hi = losses.min(axis=0), losses.max(axis=0)
        return hypervolume_improvement(normalise(front, lo, hi, clip=False),
                                       normalise(losses[idx], lo, hi, clip=False),
                                       np.full(losses.shape[1], REFERENCE))

    def _best(self, pool: _Pool, idx: np.ndarray, h: np.ndarray) -> dict[str, Any]:
        top = np.flatnonzero(h >= h.max() - 1e-12 * max(1.0, abs(h.max())))
        i = int(idx[self._rng.choice(top)])  # ties: at random, so seeds explore differently
        self.last_choice = {"how": "improvement", "improvement": float(h.max())}
        return dict(pool.params[i] or {})

    def _by_improvement(self, pool: _Pool, losses: np.ndarray, feats: np.ndarray,
                        idx: np.ndarray, obs_c: list[Candidate], obs_y: np.ndarray,
                        running: list[Candidate], measured: list[int]) -> dict[str, Any]:
        if len(idx) > MAX_SCORED:  # bound the cost per ask on huge pools
            idx = np.sort(self._rng.choice(idx, MAX_SCORED, replace=False))
        obs_i = np.array([pool.index[c] for c in obs_c])
        run_i = np.array([pool.index[c] for c in running], dtype=int)
        if len(obs_i) > MAX_OBSERVED:
            obs_i, obs_y = obs_i[-MAX_OBSERVED:], obs_y[-MAX_OBSERVED:]
        signs = np.array([self.ctx.objectives[j].sign for j in measured])
        y_loss = obs_y * signs  # measured objectives as losses
        mu_c, sd_c, mu_r = [], [], []
        for j in range(len(measured)):
            gp = fit_gp(feats[obs_i], y_loss[:, j])
            m, s = gp.predict(feats[idx])
            mu_c.append(m)
            sd_c.append(s)
            mu_r.append(gp.predict(feats[run_i])[0] if len(run_i) else np.zeros(0))
        # normalise: measured by the range seen so far, analytic by the pool's range
        y_lo, y_hi = y_loss.min(axis=0), y_loss.max(axis=0)
        a_lo, a_hi = losses.min(axis=0), losses.max(axis=0)

        def norm(meas: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return np.hstack([normalise(meas, y_lo, y_hi, clip=False),
                              normalise(losses[rows], a_lo, a_hi, clip=False)])

        front = np.vstack([norm(y_loss, obs_i),
                           norm(np.array(mu_r).T.reshape(len(run_i), len(measured)), run_i)])
        front = front[nondominated(front)]
        optimistic = norm(np.array(mu_c).T - self.beta * np.array(sd_c).T, idx)
        ref = np.full(optimistic.shape[1], REFERENCE)
        nm = len(measured)  # an optimistic value beyond the seen range must still count
        ref[:nm] = np.maximum(REFERENCE, optimistic[:, :nm].max(axis=0) + REFERENCE - 1.0)
        h = hypervolume_improvement(front, optimistic, ref)
        if h.max() <= 1e-12:  # nothing can improve even optimistically: learn the most
            i = int(idx[np.argmax(np.sum(sd_c, axis=0))])
            self.last_choice = {"how": "uncertainty"}
            return dict(pool.params[i] or {})
        return self._best(pool, idx, h)


def _measured_values(t: FrozenTrial, objectives: Sequence[Objective],
                     measured: list[int]) -> list[float] | None:
    """The trial's measured objective values: a finished trial's, or an early-stopped one's
    last evaluation (what it reached before it was judged unable to reach the front)."""
    if t.state == TrialState.COMPLETE and t.values is not None:
        return [float(t.values[j]) for j in measured]
    if t.state == TrialState.PRUNED and not t.user_attrs.get("infeasible"):
        curve = t.user_attrs.get("miou_curve") or []
        if curve and all(objectives[j].name == "miou" for j in measured):
            return [float(curve[-1])] * len(measured)
    return None


def _finished_candidates(study: Study, current: FrozenTrial) -> list[Candidate]:
    out = []
    for t in study.get_trials(deepcopy=False):
        cd = t.user_attrs.get("candidate")
        if cd is not None and (t.state.is_finished() or t.number == current.number):
            out.append(Candidate.from_dict(cd))
    return out


def _distributions(space: Space, params: dict[str, Any]) -> dict[str, BaseDistribution]:
    """The distributions `Space.sample` suggests ``params`` from (relative sampling must name
    them exactly): replay the space's define-by-run on a FixedTrial."""
    ft = FixedTrial(params)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        space.sample(ft)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {k: v for k, v in ft.distributions.items() if not v.single()}
