"""`HVISampler`: the sampler that uses what is known before a trial runs.

Some objectives of a candidate are exact and free: in nas-dil RF, FLOPs and parameters
(`nas_dil.models.analytic`); in any Optuna study, whatever a callable the user passes computes
from the parameters (``known_objectives``, like BoTorch's deterministic models). Only the other
objectives (nas-dil: mIoU) need a trial. So the sampler scores a pool of candidates (the whole
space when it is small enough to enumerate, else a growing random sample of it) and runs the
one with the largest *optimistic hypervolume improvement*: known objectives at their exact
values, each measured objective at a Gaussian-process upper confidence bound (mean +
``beta``·std, fitted on the finished trials; `nas_dil.search.surrogate`), against the current
front. The GP's kernel has one length scale per feature (``kernel = "ard"``, the default: it
learns which features matter) or one for all (``"iso"``, the sampler before issue 24; it lost
where only some features predict mIoU, docs/benchmarks.md §19). Trials still running stand
on the front at their predicted mean, so parallel asks spread out.

It never proposes a candidate the study has tried or is running, nor one the constraints
reject (those would cost an ask and train nothing), and when every feasible candidate of an
enumerated space has been tried it stops the study, as brute force does.

Noisy measurements (a trial's mIoU depends on its training seed): with ``noise = true`` the
GP may fit a noise level as large as the signal, and the front that candidates must improve
on is the GP's posterior mean at the tried candidates rather than their raw looks (one lucky
seed does not set the bar, one unlucky seed does not hide the best), and ``beta`` defaults to
1.0 instead of 2.0 (`default_beta`: the noise model already keeps once-seen candidates
uncertain). With ``repeats = k``
a tried candidate on that front may be proposed again, up to k more looks (the runner trains
it with another seed; a repeat counts as a trial): it is chosen when its optimistic gain —
the hypervolume its upper bound would add beyond what its mean already holds — beats every
untried candidate's. Repeats are information: the GP sees every look, so a candidate's
posterior std shrinks with its looks. Both default off (the sampler as before). ``repeats``
needs a runner that trains a repeat with another seed: `nas-dil search` does (look k trains
from the study's seed + k, and its front, report and export take each candidate's mean over
its looks), as do the tabular benchmark and any Optuna objective that seeds by look.

Two further options, off by default (measured, neither won across landscapes:
docs/benchmarks.md §19): ``noise_floor = true`` (with ``noise``) bounds the GP's noise share
below — by half the pooled seed variance of candidates with >= 2 looks, else by
`surrogate.PRIOR_NOISE_FLOOR`, since one look per candidate cannot identify the noise — and
``thompson = true`` ranks untried candidates by one joint posterior draw of the measured
objectives instead of the upper bound (repeats keep the upper bound).

The first ``n_startup`` trials are drawn at random from the feasible pool (the GP needs a few
points before its length scale means anything). Parameters reach Optuna through relative
sampling: the choice is made once per trial, then the objective suggests exactly its
parameters, so storage, resume and the dashboard see an ordinary define-by-run trial.

One core (this module), two thin adapters (a `Domain` each, `nas_dil.search.hvi_domains`) say
what a candidate is: `SpaceDomain` for a nas-dil `Space` (what the driver passes), `DistDomain`
for any Optuna search space of categorical / int / float parameters.

Asks are cheap with many trials in flight: the GP is refitted only when the observed set
changes (a trial finishing), not when trials merely start; running trials only move the front.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from nas_dil.pareto import REFERENCE, hypervolume_improvement, nondominated, normalise
from nas_dil.search.hvi_domains import DistDomain, Domain, Params, SamplerContext, SpaceDomain
from nas_dil.search.hvi_portfolio import Calibration
from nas_dil.search.looks import count_looks
from nas_dil.search.surrogate import (
    GP,
    NOISES,
    NOISES_NOISY,
    fit_gp,
    fit_gp_ard,
    floored,
    gp_at,
    noise_floor,
)

try:  # the ask's BLAS threads (below); optional, so a missing package only costs speed
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - a dependency of nas-dil
    ThreadpoolController = None

__all__ = ["HVISampler", "SamplerContext", "check_options"]

# larger spaces: fresh random candidates join the pool, REFRESH per ask on average, drawn
# REFRESH_EVERY asks at a time (one analytic batch of 512 costs little more than one of 32)
REFRESH, REFRESH_EVERY = 32, 16
GROW_MAX = 8  # a sampled pool grows to at most this many times pool_size
# candidates scored per ask at most (a random subset beyond that): the prediction and the
# improvement scale with it, and with 16 trials in flight an ask must stay near 10 ms
MAX_SCORED = 512
MAX_OBSERVED = 600  # newest finished trials the GP is fitted on (cubic cost)
KERNELS = ("ard", "iso")  # the GP's length scales: one per feature, or one (surrogate.py)
# the ARD kernel's hyperparameters are re-optimised while the looks are few, then when their
# number has grown by this factor since the last optimisation; in between a finished trial
# costs one factorisation at the last hyperparameters (an ask stays near 10 ms with trials in
# flight: the optimisation is tens of ms at 100 looks)
ARD_REFIT_ALWAYS, ARD_REFIT_GROWTH = 32, 1.1


# the process's BLAS libraries (a ThreadpoolController), found once per kind of kernel: the
# ARD kernel's optimiser (scipy) brings its own OpenBLAS, which must be loaded before the
# controller looks for libraries, or it keeps its default threads (2x the CPU per ask)
_BLAS: dict[bool, Any] = {}


def _one_blas_thread(scipy_too: bool = False) -> AbstractContextManager[object]:
    """The ask's linear algebra on one BLAS thread. Its matrices are small (hundreds of rows),
    and a multi-threaded BLAS on cores that training or other jobs hold spent most of an ask
    waiting on its own threads: hvi's ask took 6x the wall time and 7x the CPU time with
    OpenBLAS's default threads (docs/benchmarks.md §20). The choices are the same."""
    if ThreadpoolController is None:  # pragma: no cover - a dependency of nas-dil
        return nullcontext()
    if scipy_too not in _BLAS:
        if scipy_too:
            import scipy.optimize  # noqa: F401 - its BLAS joins the controller below
        _BLAS[scipy_too] = ThreadpoolController()
    return _BLAS[scipy_too].limit(limits=1, user_api="blas")  # type: ignore[no-any-return]


# -- the pool -------------------------------------------------------------------------------

class _Rows:
    """A growing array of rows: appends copy only the new rows (its capacity doubles), so a
    pool that grows at every ask does not copy itself at every ask."""

    def __init__(self) -> None:
        self._buf: np.ndarray | None = None
        self.n = 0

    def append(self, rows: np.ndarray) -> None:
        if self._buf is None:
            self._buf = np.empty((max(len(rows), 1_024), *rows.shape[1:]), dtype=rows.dtype)
        elif self.n + len(rows) > len(self._buf):
            grown = np.empty((max(2 * len(self._buf), self.n + len(rows)),
                              *self._buf.shape[1:]), dtype=self._buf.dtype)
            grown[: self.n] = self._buf[: self.n]
            self._buf = grown
        self._buf[self.n: self.n + len(rows)] = rows
        self.n += len(rows)

    def view(self) -> np.ndarray:
        assert self._buf is not None
        return self._buf[: self.n]


class _Pool:
    """Candidates with their Optuna parameters, known losses and surrogate features."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.keys: list[Hashable] = []
        self.index: dict[Hashable, int] = {}
        self.params: list[Params | None] = []  # None: outside the space (a baseline)
        self._losses, self._raw = _Rows(), _Rows()  # known losses, unscaled features
        self._ok, self._proposable = _Rows(), _Rows()  # feasible; and inside the space
        # features scaled to [0, 1] over the pool: the rows scaled so far, and the scale (lo,
        # hi, kept columns) they were scaled by; new rows inside that range are scaled alone
        self._feats = _Rows()
        self._scale: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, keys: Sequence[Hashable], params: Sequence[Params | None]) -> None:
        new: dict[Hashable, Params | None] = {}
        for c, p in zip(keys, params, strict=True):
            if c not in self.index:
                new.setdefault(c, p)
        if not new:
            return
        losses, raw, ok = self.domain.describe(list(new))
        for c, p in new.items():
            self.index[c] = len(self.keys)
            self.keys.append(c)
            self.params.append(p)
        inside = np.array([p is not None for p in new.values()], dtype=bool)
        self._losses.append(losses)
        self._raw.append(raw)
        self._ok.append(ok)
        self._proposable.append(ok & inside)
        self._arrays = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Known losses (n, a), features scaled to [0, 1] over the pool (n, f), feasible,
        proposable (feasible and inside the space) — cached until the next `add`."""
        if self._arrays is None:
            raw = self._raw.view()
            new = raw[self._feats.n:]
            scale = self._scale
            if scale is None or not ((new.min(axis=0) >= scale[0]).all()
                                     and (new.max(axis=0) <= scale[1]).all()):
                lo, hi = raw.min(axis=0), raw.max(axis=0)
                scale = self._scale = (lo, hi, hi > lo)  # constant columns carry nothing
                self._feats, new = _Rows(), raw
            # elementwise: a row scales to the same values alone as with the whole pool
            lo, hi, keep = scale
            self._feats.append((new[:, keep] - lo[keep]) / (hi[keep] - lo[keep]))
            self._arrays = (self._losses.view(), self._feats.view(), self._ok.view(),
                            self._proposable.view())
        return self._arrays


def check_options(beta: object = None, n_startup: object = 8, pool_size: object = 4_096,
                  seed: object = None, noise: object = False, repeats: object = 0,
                  explore: object = 0.0, noise_floor: object = False,
                  thompson: object = False, kernel: object = "ard") -> None:
    """ValueError naming the first bad `[sampler]` option of the hvi sampler."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel = {kernel!r}: must be one of {', '.join(map(repr, KERNELS))}")
    if kernel == "ard":
        import importlib.util

        if importlib.util.find_spec("scipy") is None:  # said up front, not at the first fit
            raise ValueError("kernel = 'ard' (the default) needs scipy, a dependency of nas-dil: "
                             "pip install 'scipy>=1.11', or set kernel = \"iso\"")
    for name, flag in (("noise_floor", noise_floor), ("thompson", thompson)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} = {flag!r}: must be true or false")
    if isinstance(explore, bool) or not isinstance(explore, int | float) or not (
            0.0 <= explore <= 1.0):
        raise ValueError(f"explore = {explore!r}: must be a number in [0, 1]")
    if not isinstance(noise, bool):
        raise ValueError(f"noise = {noise!r}: must be true or false")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise ValueError(f"repeats = {repeats!r}: must be an integer >= 0")
    if beta is not None and not (isinstance(beta, int | float) and not isinstance(beta, bool)
                                 and beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta = {beta!r}: must be a finite number >= 0")
    for name, v, least in (("n_startup", n_startup, 1), ("pool_size", pool_size, 16)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"{name} = {v!r}: must be an integer >= {least}")
    if isinstance(pool_size, int) and pool_size > 2**20:  # scored at every ask: memory, time
        raise ValueError(f"pool_size = {pool_size!r}: must be an integer <= {2**20}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed = {seed!r}: must be an integer")


def default_beta(noise: bool) -> float:
    """The upper bound's width (mean + beta·std) when ``beta`` is not set: 2.0, or 1.0 with
    ``noise``. With a fitted noise level a candidate seen once keeps a wide posterior (its one
    look is discounted), so beta = 2 keeps exploring what is only seed noise; beta = 1 reached
    95 % truth-HV and low regret in fewer trials on 3 of the 4 structured variants of the
    tabular benchmark v2 and cut NAS-Bench-201's regret by a third (docs/benchmarks.md §15)."""
    return 1.0 if noise else 2.0


class HVISampler(BaseSampler):
    """Optimistic-hypervolume-improvement sampler (module docstring).

    Either ``context`` (the nas-dil driver passes it) or ``search_space`` ({name: Optuna
    distribution}) with ``known_objectives`` (params -> the known objectives' values, for the
    study objectives ``known_index``, default the last ones; None: every objective is
    measured). The other arguments are `[sampler]` options of a study file.
    """

    def __init__(self, *, beta: float | None = None, n_startup: int = 8, pool_size: int = 4_096,
                 seed: int | None = None, noise: bool = False, repeats: int = 0,
                 explore: float = 0.0, noise_floor: bool = False, thompson: bool = False,
                 kernel: str = "ard", context: SamplerContext | None = None,
                 search_space: Mapping[str, BaseDistribution] | None = None,
                 known_objectives: Callable[[Params], Sequence[float]] | None = None,
                 known_index: Sequence[int] | None = None) -> None:
        check_options(beta=beta, n_startup=n_startup, pool_size=pool_size, seed=seed,
                      noise=noise, repeats=repeats, explore=explore, noise_floor=noise_floor,
                      thompson=thompson, kernel=kernel)
        if (context is None) == (search_space is None):
            raise ValueError("the hvi sampler needs the study's context (the nas-dil driver "
                             "passes it) or a search_space, not both")
        self.beta = default_beta(noise) if beta is None else float(beta)
        self.n_startup = n_startup
        self.pool_size = pool_size
        self.noise = noise  # measured objectives are noisy: noise-level grid, mean front
        self.repeats = repeats  # extra looks a tried front candidate may get
        # with noise: the GP's noise share is bounded below by the seed noise measured on
        # candidates with >= 2 looks, else by a prior bound (`surrogate.noise_floor`)
        self.noise_floor = noise_floor
        # an untried candidate's measured objectives at one joint posterior draw instead of
        # the upper bound mean + beta·std (repeats keep the upper bound)
        self.thompson = thompson
        self.kernel = kernel  # "ard": a length scale per feature; "iso": one (surrogate.py)
        # share of asks for the no-repeat random order while the GP predicts no better than
        # the mean (`nas_dil.search.hvi_portfolio`)
        self._calib = Calibration(float(explore))
        self.domain: Domain = (SpaceDomain(context) if context is not None else
                                DistDomain(search_space or {}, known_objectives, known_index))
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._random = RandomSampler(seed=seed)
        self._pool: _Pool | None = None
        self._asks = 0  # asks that reached the pool (its refresh schedule)
        self._exhaustive = False
        self._chosen: dict[int, tuple[Params, dict[str, BaseDistribution]]] = {}
        self._gp_cache: dict[int, tuple[tuple[bytes, ...], GP]] = {}
        # ARD: per measured objective, the looks, hyperparameters and noise range of the last
        # optimisation
        self._ard_opt: dict[int, tuple[int, np.ndarray, tuple[float, ...]]] = {}
        self._seen: dict[int, tuple[Hashable | None, list[float] | None]] = {}  # finished
        self._running: dict[int, Hashable] = {}  # running trials' candidates
        self.n_fits = 0  # GP fits so far (tests, benchmarks: asks between finishes reuse one)
        self.last_choice: dict[str, Any] = {}  # how the last candidate was chosen (tests, logs)
        if context is not None:
            self._get_pool()  # at set-up, not at the first ask (4,096 candidates: ~0.3 s)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    # -- the pool ---------------------------------------------------------------------------

    def _get_pool(self) -> _Pool:
        if self._pool is not None:
            self._asks += 1
            if (not self._exhaustive and len(self._pool.keys) < GROW_MAX * self.pool_size
                    and self._asks % REFRESH_EVERY == 0):
                # a sampled pool keeps growing with fresh candidates (up to a bound: the
                # per-ask cost grows with it)
                fresh = self.domain.draw(REFRESH * REFRESH_EVERY, self._rng)
                self._pool.add(fresh, self.domain.params(fresh))
            return self._pool
        keys, exhaustive = self.domain.initial(self._rng, self.pool_size)
        pool = _Pool(self.domain)
        pool.add(keys, self.domain.params(keys))
        self._pool, self._exhaustive = pool, exhaustive
        return pool

    # -- Optuna's sampler interface ---------------------------------------------------------

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if trial.system_attrs.get("fixed_params"):  # an enqueued trial (a baseline): as given
            return {}
        if trial._trial_id not in self._chosen:
            with _one_blas_thread(self.kernel == "ard"):
                params = self._choose(study, trial)
            self._chosen[trial._trial_id] = (params, self.domain.distributions(params)
                                             if params else {})
        return self._chosen[trial._trial_id][1]

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        params, _ = self._chosen.get(trial._trial_id, ({}, {}))
        return {k: v for k, v in params.items() if k in search_space}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # only when every feasible candidate is taken (nas-dil's driver then answers a
        # duplicate from storage without training it), or for a parameter outside
        # ``search_space``: a random one
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._chosen.pop(trial._trial_id, None)
        if self._pool is None or not self._exhaustive:
            return
        ok = self._pool.arrays()[2].copy()
        looks = np.zeros(len(ok), dtype=int)
        tried = count_looks(c for t in study.get_trials(deepcopy=False)
                            if t.state.is_finished() or t.number == trial.number
                            if (c := self._read(t)[0]) is not None and c in self._pool.index)
        for c, k in tried.items():
            looks[self._pool.index[c]] = k
        ok &= looks <= self.repeats
        if not ok.any():
            # every feasible candidate has its results (as BruteForceSampler), repeats too
            study.stop()

    # -- the choice -------------------------------------------------------------------------

    def _choose(self, study: Study, trial: FrozenTrial) -> Params:
        self.domain.bind(study)
        pool = self._get_pool()
        dom = self.domain
        measured = dom.measured
        obs_c: list[Hashable] = []
        obs_y: list[list[float]] = []
        running: list[Hashable] = []
        taken: set[Hashable] = set()
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number:
                continue
            c, y = self._read(t)
            if c is None:
                continue
            taken.add(c)
            if y is not None:
                obs_c.append(c)
                obs_y.append(y)
            elif t.state == TrialState.RUNNING:
                running.append(c)
        outside = list(dict.fromkeys(c for c in obs_c + running if c not in pool.index))
        pool.add(outside, dom.params(outside))  # baselines, enqueued or user-set trials
        near = self._near_front(pool, obs_c, np.array(obs_y)) if obs_c and measured else []
        losses, feats, _, proposable = pool.arrays()
        free = proposable.copy()
        free[[pool.index[k] for k in taken if k in pool.index]] = False
        idx = np.flatnonzero(free)
        again = np.zeros(0, dtype=int)  # tried candidates that may get another look
        if self.repeats and obs_c:
            looks = count_looks(obs_c)
            busy = set(running)
            again = np.array(sorted(pool.index[c] for c, k in looks.items()
                                    if k <= self.repeats and c not in busy
                                    and proposable[pool.index[c]]), dtype=int)
        if len(idx) == 0 and len(again) == 0:
            self.last_choice = {"how": "none left"}
            return {}
        n_obs = len(set(obs_c))
        if n_obs < self.n_startup or not measured:
            if not measured:  # every objective is known: the improvement is exact
                front = losses[[pool.index[c] for c in obs_c + running]]
                return self._best(pool, idx, self._normalise_known(losses, front, idx))
            i = int(self._rng.choice(idx if len(idx) else again))
            self.last_choice = {"how": "startup", "n_observed": n_obs}
            return dict(pool.params[i] or {})
        if self._calib.share > 0:
            self._calib.score([hit[1] if (hit := self._gp_cache.get(j)) else None
                               for j in range(len(measured))], obs_c,
                              feats[[pool.index[c] for c in obs_c]],
                              np.array(obs_y) * dom.measured_signs)
            if len(idx) and self._calib.explore(self._rng):
                i = int(self._rng.choice(idx))
                self.last_choice = {"how": "explore", "n_observed": n_obs}
                return dict(pool.params[i] or {})
        if len(idx) > MAX_SCORED:  # bound the cost per ask on huge pools: a random subset,
            near_i = np.array(near, dtype=int)  # and the front's free neighbours (sorted)
            idx = np.union1d(self._rng.choice(idx, MAX_SCORED, replace=False),
                             near_i[free[near_i]])
        return self._by_improvement(pool, losses, feats, idx, obs_c, np.array(obs_y), running,
                                    again)

    def _read(self, t: FrozenTrial) -> tuple[Hashable | None, list[float] | None]:
        """A trial's candidate and measured values, cached once it has finished (its
        candidate and values no longer change; parsing them at every ask is what made asks
        with many trials slow), and a running trial's candidate once it has one."""
        hit = self._seen.get(t._trial_id)
        if hit is not None:
            return hit
        running = t.state == TrialState.RUNNING
        if running and t._trial_id in self._running:  # its candidate, once set, stays
            return self._running[t._trial_id], None
        c = self.domain.key_of(t)
        y = None if c is None else self.domain.measured_values(t)
        if c is not None and t.state.is_finished():
            self._seen[t._trial_id] = (c, y)
            self._running.pop(t._trial_id, None)
        elif c is not None and running:
            self._running[t._trial_id] = c
        return c, y

    def _near_front(self, pool: _Pool, obs_c: list[Hashable], obs_y: np.ndarray) -> list[int]:
        """Pool indices of perturbations of the observed front (generic spaces only; added
        to a sampled pool), scored at every ask besides the random subset."""
        if not isinstance(self.domain, DistDomain):
            return []
        losses = pool.arrays()[0]
        pts = np.hstack([obs_y * self.domain.measured_signs,
                         losses[[pool.index[c] for c in obs_c]]])
        front = [obs_c[i] for i in np.flatnonzero(nondominated(pts))]
        near = self.domain.neighbours(front, self._rng)
        if len(pool.keys) < GROW_MAX * self.pool_size:
            pool.add(near, self.domain.params(near))
        return sorted({pool.index[k] for k in near if k in pool.index})

    def _normalise_known(self, losses: np.ndarray, front: np.ndarray,
                         idx: np.ndarray) -> np.ndarray:
        lo, hi = losses.min(axis=0), losses.max(axis=0)
        return hypervolume_improvement(normalise(front, lo, hi, clip=False),
                                       normalise(losses[idx], lo, hi, clip=False),
                                       np.full(losses.shape[1], REFERENCE))

    def _best(self, pool: _Pool, idx: np.ndarray, h: np.ndarray) -> Params:
        top = np.flatnonzero(h >= h.max() - 1e-12 * max(1.0, abs(h.max())))
        i = int(idx[self._rng.choice(top)])  # ties: at random, so seeds explore differently
        self.last_choice = {"how": "improvement", "improvement": float(h.max())}
        return dict(pool.params[i] or {})

    def _gp(self, j: int, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> GP:
        """The GP of measured objective ``j`` on (x, y) (``groups``: each row's candidate):
        refitted only when they changed (a trial finished, or the pool's feature scaling
        moved), not at every ask."""
        key = (x.tobytes(), y.tobytes(), repr(x.shape).encode())
        hit = self._gp_cache.get(j)
        if hit is not None and hit[0] == key:
            return hit[1]
        noises: tuple[float, ...] = NOISES_NOISY if self.noise else NOISES
        if self.noise and self.noise_floor:
            noises = floored(noises, noise_floor(groups, y))
        if self.kernel == "iso":
            gp = fit_gp(x, y, noises)
        else:
            # the last optimisation's hyperparameters hold while the looks have not grown
            # much, the features are the same columns and the noise range (a noise floor
            # can move it) is the same
            last = self._ard_opt.get(j)
            if (last is not None and len(y) > ARD_REFIT_ALWAYS
                    and len(y) < ARD_REFIT_GROWTH * last[0]
                    and last[1].shape == (x.shape[1] + 1,) and last[2] == noises):
                gp = gp_at(x, y, last[1])
            else:
                gp = fit_gp_ard(x, y, noises)
                assert gp.theta is not None
                self._ard_opt[j] = (len(y), gp.theta, noises)
        self.n_fits += 1
        self._gp_cache[j] = (key, gp)
        return gp

    def _by_improvement(self, pool: _Pool, losses: np.ndarray, feats: np.ndarray,
                        idx: np.ndarray, obs_c: list[Hashable], obs_y: np.ndarray,
                        running: list[Hashable], again: np.ndarray | None = None) -> Params:
        obs_i = np.array([pool.index[c] for c in obs_c])
        run_i = np.array([pool.index[c] for c in running], dtype=int)
        if len(obs_i) > MAX_OBSERVED:
            obs_i, obs_y = obs_i[-MAX_OBSERVED:], obs_y[-MAX_OBSERVED:]
        again = np.zeros(0, dtype=int) if again is None else again
        nm = len(self.domain.measured)
        y_loss = obs_y * self.domain.measured_signs  # measured objectives as losses
        # the observed points the front is made of: every look, or (noise) each tried
        # candidate once, at the GP's posterior mean
        front_i = np.unique(obs_i) if self.noise else obs_i
        mu_c, sd_c, mu_r, mu_f, mu_a, sd_a, draw = [], [], [], [], [], [], []
        for j in range(nm):
            gp = self._gp(j, feats[obs_i], y_loss[:, j], obs_i)
            m, s = gp.predict(feats[idx])
            mu_c.append(m)
            sd_c.append(s)
            if self.thompson:
                draw.append(gp.sample(feats[idx], self._rng) if len(idx) else m)
            mu_r.append(gp.predict(feats[run_i])[0] if len(run_i) else np.zeros(0))
            if self.noise:
                mu_f.append(gp.predict(feats[front_i])[0])
            if len(again):
                ma, sa = gp.predict(feats[again])
                mu_a.append(ma)
                sd_a.append(sa)
        # normalise: measured by the range seen so far, known by the pool's range
        y_lo, y_hi = y_loss.min(axis=0), y_loss.max(axis=0)
        a_lo, a_hi = losses.min(axis=0), losses.max(axis=0)

        def norm(meas: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return np.hstack([normalise(meas, y_lo, y_hi, clip=False),
                              normalise(losses[rows], a_lo, a_hi, clip=False)])

        seen = np.array(mu_f).T.reshape(len(front_i), nm) if self.noise else y_loss
        front_all = np.vstack([norm(seen, front_i),
                               norm(np.array(mu_r).T.reshape(len(run_i), nm), run_i)])
        on_front = nondominated(front_all)
        front = front_all[on_front]
        optimistic = norm(np.array(draw).T.reshape(len(idx), nm) if self.thompson else
                          np.array(mu_c).T.reshape(len(idx), nm)
                          - self.beta * np.array(sd_c).T.reshape(len(idx), nm), idx)
        ref = np.full(optimistic.shape[1], REFERENCE)
        # an optimistic value beyond the seen range must still count
        if len(optimistic):
            ref[:nm] = np.maximum(REFERENCE, optimistic[:, :nm].max(axis=0) + REFERENCE - 1.0)
        h = hypervolume_improvement(front, optimistic, ref) if len(idx) else np.zeros(0)
        if len(again):
            # a repeat's optimistic gain: the volume its upper bound adds to the front
            # without it, beyond what its mean adds (the front already holds the mean)
            ma = np.array(mu_a).T.reshape(len(again), nm)
            up = norm(ma - self.beta * np.array(sd_a).T.reshape(len(again), nm), again)
            mean = norm(ma, again)
            gain = (hypervolume_improvement(front, up, ref)
                    - hypervolume_improvement(front, mean, ref))
            # a candidate on the front: against the front without itself (few, one by one)
            pos = {int(r): k for k, r in enumerate(front_i)} if self.noise else {}
            for k, r in enumerate(again):
                own = pos.get(int(r))
                if own is None or not on_front[own]:  # off the front: the batch value holds
                    continue
                rest = np.delete(front_all, own, axis=0)
                rest = rest[nondominated(rest)] if len(rest) else rest
                pair = hypervolume_improvement(rest, np.vstack([up[k], mean[k]]), ref)
                gain[k] = pair[0] - pair[1]
            if len(h) == 0 or gain.max() > h.max():
                k = int(np.argmax(gain))
                self.last_choice = {"how": "repeat", "improvement": float(gain[k])}
                return dict(pool.params[int(again[k])] or {})
        if len(h) == 0:
            self.last_choice = {"how": "none left"}
            return {}
        if h.max() <= 1e-12:  # nothing can improve even optimistically: learn the most
            i = int(idx[np.argmax(np.sum(sd_c, axis=0))])
            self.last_choice = {"how": "uncertainty"}
            return dict(pool.params[i] or {})
        return self._best(pool, idx, h)
