"""The hvi sampler's two adapters (a `Domain` each), apart from its core (`nas_dil.search.hvi`):
what a candidate is, its Optuna parameters, its known objectives and features, which objectives
are measured, and what a stored trial's candidate and measured values are.

- `SpaceDomain` (``context=SamplerContext``, what the nas-dil driver passes): candidates of a
  nas-dil `Space`, the analytic objectives, the constraints (`records.feasible` on the
  candidate's constraint values: the search's one rule);
- `DistDomain` (``search_space={name: distribution}``, ``known_objectives=f``): any Optuna
  study over categorical / int / float parameters. A finite space of up to ENUMERATE_MAX points
  is enumerated; otherwise random draws, plus local perturbations of the observed front (float
  and int dimensions move a little, a categorical one is redrawn now and then).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import Study, StudyDirection
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from nas_dil.search.records import Objective, TrialRecord
from nas_dil.spaces import Candidate, Space
from nas_dil.spaces.errors import SpaceError

__all__ = ["DistDomain", "Domain", "Params", "SamplerContext", "SpaceDomain"]

ENUMERATE_MAX = 20_000  # spaces up to this many candidates are scored whole
NEIGHBOURS = (8, 4)  # generic sampled spaces: perturb this many front points, this many times
STEP = 0.1  # a perturbation's std, as a share of a numeric dimension's (log-)range


@dataclass(frozen=True)
class SamplerContext:
    """What the driver knows before training, for samplers that use it."""

    space: Space
    objectives: tuple[Objective, ...]
    # candidates -> their analytic attrs as columns (`nas_dil.models.analytic.analytic_batch`)
    analytic: Callable[[Sequence[Candidate]], Mapping[str, np.ndarray]]
    # analytic attrs -> within the constraints (`trials.feasible`: the one rule on the
    # candidate's constraint values)
    feasible: Callable[[Mapping[str, Any]], bool]


Params = dict[str, Any]
_Dist = CategoricalDistribution | IntDistribution | FloatDistribution  # what search_space takes


# -- the two adapters -------------------------------------------------------------------------

class Domain(ABC):
    """What a candidate is: its key, parameters, known losses, features; which objectives are
    measured; what a trial's candidate and measured values are."""

    measured: list[int]  # indices of the measured objectives (set by `bind`)
    measured_signs: np.ndarray  # +1 minimise, -1 maximise, for those

    def bind(self, study: Study) -> None:  # noqa: B027 - most domains need nothing here
        """Learn what the study says (its directions); called at every ask, cheap."""

    @abstractmethod
    def initial(self, rng: np.random.Generator, pool_size: int) -> tuple[list[Hashable], bool]:
        """The first pool's keys, and whether they are the whole space."""

    @abstractmethod
    def draw(self, n: int, rng: np.random.Generator) -> list[Hashable]: ...

    @abstractmethod
    def params(self, keys: Sequence[Hashable]) -> list[Params | None]:
        """Each key's Optuna parameters; None: outside the space (never proposed)."""

    @abstractmethod
    def describe(self, keys: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Known objectives as losses (n, a), unscaled features (n, f), feasible (n,)."""

    @abstractmethod
    def key_of(self, t: FrozenTrial) -> Hashable | None:
        """The candidate a trial runs; None: not one of ours (skipped)."""

    @abstractmethod
    def measured_values(self, t: FrozenTrial) -> list[float] | None: ...

    @abstractmethod
    def distributions(self, params: Params) -> dict[str, BaseDistribution]: ...

    def neighbours(self, keys: Sequence[Hashable], rng: np.random.Generator) -> list[Hashable]:
        """Candidates near ``keys`` (the observed front) for a sampled pool; none by default."""
        return []


class SpaceDomain(Domain):
    """A nas-dil `Space`: candidates are `Candidate`s, known objectives the analytic ones."""

    def __init__(self, ctx: SamplerContext) -> None:
        self.ctx = ctx
        self.measured = [i for i, o in enumerate(ctx.objectives) if o.measured]
        self.measured_signs = np.array([ctx.objectives[j].sign for j in self.measured])
        self.depth = 0  # per-layer feature columns (longer schedules are cut)

    def initial(self, rng: np.random.Generator, pool_size: int) -> tuple[list[Hashable], bool]:
        space = self.ctx.space
        try:
            exhaustive = space.count() <= ENUMERATE_MAX
        except SpaceError:  # too large to count: certainly too large to enumerate
            exhaustive = False
        cands = list(space.enumerate()) if exhaustive else self.draw(pool_size, rng)
        depth_range = getattr(space.config, "depth", None)
        self.depth = max(getattr(depth_range, "max", 0) or 0,
                         max(c.depth for c in cands))  # type: ignore[attr-defined]
        return list(cands), exhaustive

    def draw(self, n: int, rng: np.random.Generator) -> list[Hashable]:
        return list(self.ctx.space.draw(n, rng))

    def params(self, keys: Sequence[Hashable]) -> list[Params | None]:
        return [self.ctx.space.params_for(c) for c in keys]  # type: ignore[arg-type]

    def describe(self, keys: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cands: list[Candidate] = list(keys)  # type: ignore[arg-type]
        cols = {k: v.tolist() for k, v in self.ctx.analytic(cands).items()}
        known = [o for o in self.ctx.objectives if not o.measured]
        losses, raw, ok = [], [], []
        for i, c in enumerate(cands):
            a = {k: v[i] for k, v in cols.items()}  # plain Python values, as one trial's attrs
            losses.append([o.sign * float(a[o.name]) for o in known])
            raw.append(self._features(c, a))
            ok.append(bool(self.ctx.feasible(a)))
        return (np.array(losses, dtype=float).reshape(len(cands), len(known)), np.array(raw),
                np.array(ok, dtype=bool))

    def _features(self, c: Candidate, a: Mapping[str, Any]) -> np.ndarray:
        layers = np.zeros(self.depth)  # 0 = no layer; else 1 + log2(rate)
        r = np.log2(np.asarray(c.rates[: self.depth], dtype=float)) + 1.0
        layers[: len(r)] = r
        return np.concatenate([layers, [
            c.depth, math.log2(c.kernel), math.log2(c.output_stride), math.log2(c.width),
            math.log(float(a["rf"])), math.log(float(a["rf_stack"])), float(a["coverage"]),
            float(bool(a["gridding_free"])), float(bool(a["hdc"])),
            math.log(float(a["macs"]) + 1.0), math.log(float(a["params"]) + 1.0)]])

    def key_of(self, t: FrozenTrial) -> Hashable | None:
        cd = TrialRecord.from_frozen(t).candidate
        return None if cd is None else Candidate.from_dict(cd)

    def measured_values(self, t: FrozenTrial) -> list[float] | None:
        """A finished trial's measured values, or an early-stopped one's last evaluation (what
        it reached before it was judged unable to reach the front)."""
        if t.state == TrialState.COMPLETE and t.values is not None:
            return [float(t.values[j]) for j in self.measured]
        rec = TrialRecord.from_frozen(t) if t.state == TrialState.PRUNED else None
        if rec is not None and not rec.infeasible:
            curve = rec.result.get("miou_curve") or []
            if curve and all(self.ctx.objectives[j].name == "miou" for j in self.measured):
                return [float(curve[-1])] * len(self.measured)
        return None

    def distributions(self, params: Params) -> dict[str, BaseDistribution]:
        """The distributions `Space.sample` suggests ``params`` from (relative sampling must
        name them exactly): replay the space's define-by-run on a FixedTrial."""
        ft = FixedTrial(params)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            self.ctx.space.sample(ft)
        finally:
            optuna.logging.set_verbosity(verbosity)
        return {k: v for k, v in ft.distributions.items() if not v.single()}


class DistDomain(Domain):
    """Any Optuna search space ({name: distribution}); a candidate is the tuple of its
    parameter values in the space's order; ``known(params)`` gives the known objectives, the
    study objectives ``known_index`` (default: the last ones) in that order."""

    def __init__(self, search_space: Mapping[str, BaseDistribution],
                 known: Callable[[Params], Sequence[float]] | None,
                 known_index: Sequence[int] | None) -> None:
        if not search_space:
            raise ValueError("search_space is empty: name at least one parameter")
        for name, d in search_space.items():
            if not isinstance(d, _Dist):
                raise ValueError(f"search_space[{name!r}] = {d!r}: expected a Categorical, Int "
                                 "or FloatDistribution")
        if known is not None and not callable(known):
            raise ValueError(f"known_objectives = {known!r}: must be a callable params -> "
                             "values")
        self.names = list(search_space)
        self.dists: list[_Dist] = [search_space[n] for n in self.names]  # type: ignore[misc]
        self.known = known
        self.known_index = None if known_index is None else [int(i) for i in known_index]
        self.measured, self.measured_signs = [], np.zeros(0)
        self._known_signs = np.zeros(0)
        self._directions: tuple[StudyDirection, ...] | None = None

    # which objectives are known: fixed by the study's directions at the first ask
    def bind(self, study: Study) -> None:
        dirs = tuple(study.directions)
        if dirs == self._directions:
            return
        n = len(dirs)
        if self.known is None:
            known: list[int] = []
        elif self.known_index is not None:
            known = self.known_index
        else:
            k = len(self._call(self._params_of(self.draw(1, np.random.default_rng(0))[0])))
            known = list(range(n - k, n))
        if len(set(known)) != len(known) or any(not 0 <= i < n for i in known):
            raise ValueError(f"known_index = {known}: must be distinct objective indices of "
                             f"this {n}-objective study")
        sign = {StudyDirection.MINIMIZE: 1.0, StudyDirection.MAXIMIZE: -1.0}
        self._known_index = known
        self._known_signs = np.array([sign[dirs[i]] for i in known])
        self.measured = [i for i in range(n) if i not in known]
        self.measured_signs = np.array([sign[dirs[i]] for i in self.measured])
        self._directions = dirs

    def _call(self, params: Params) -> list[float]:
        assert self.known is not None
        v = [float(x) for x in self.known(params)]
        if self.known_index is not None and len(v) != len(self.known_index):
            raise ValueError(f"known_objectives returned {len(v)} values for {params}; "
                             f"known_index = {self.known_index} names {len(self.known_index)}")
        return v

    def _params_of(self, key: Hashable) -> Params:
        return dict(zip(self.names, key, strict=True))  # type: ignore[call-overload]

    # finite dimensions: their values; None when the dimension is continuous
    @staticmethod
    def _values(d: BaseDistribution) -> list[Any] | None:
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution):
            return list(range(d.low, d.high + 1, d.step))
        if isinstance(d, FloatDistribution) and d.step is not None:
            n = round((d.high - d.low) / d.step) + 1
            return [float(d.low + i * d.step) for i in range(n)]
        return None

    def initial(self, rng: np.random.Generator, pool_size: int) -> tuple[list[Hashable], bool]:
        values = [self._values(d) for d in self.dists]
        count = math.prod(len(v) if v is not None else ENUMERATE_MAX + 1 for v in values)
        if count <= ENUMERATE_MAX:
            return list(itertools.product(*values)), True  # type: ignore[arg-type]
        return self.draw(pool_size, rng), False

    def draw(self, n: int, rng: np.random.Generator) -> list[Hashable]:
        cols = [self._draw_dim(d, n, rng) for d in self.dists]
        return list(zip(*cols, strict=True))

    @staticmethod
    def _draw_dim(d: BaseDistribution, n: int, rng: np.random.Generator) -> list[Any]:
        if isinstance(d, CategoricalDistribution):
            return [d.choices[i] for i in rng.integers(len(d.choices), size=n)]
        assert isinstance(d, IntDistribution | FloatDistribution)
        if d.log:
            u = np.exp(rng.uniform(math.log(d.low), math.log(d.high), n))
        else:
            u = rng.uniform(d.low, d.high, n)
        return DistDomain._snap(d, u)

    @staticmethod
    def _snap(d: IntDistribution | FloatDistribution, u: np.ndarray) -> list[Any]:
        """Values ``u`` onto the distribution's grid (ints, float steps), inside its bounds."""
        u = np.clip(u, d.low, d.high)
        step = d.step
        if step is not None:
            u = np.clip(d.low + np.round((u - d.low) / step) * step, d.low, d.high)
        if isinstance(d, IntDistribution):
            return [int(x) for x in np.round(u)]
        return [float(x) for x in u]

    def params(self, keys: Sequence[Hashable]) -> list[Params | None]:
        return [self._params_of(k) if self._inside(k) else None for k in keys]

    def _inside(self, key: Hashable) -> bool:
        for v, d in zip(key, self.dists, strict=True):  # type: ignore[call-overload]
            if isinstance(d, CategoricalDistribution):
                if v not in d.choices:
                    return False
            elif not d.low <= v <= d.high:
                return False
        return True

    def describe(self, keys: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(keys)
        known = np.array([self._call(self._params_of(k)) for k in keys]) if self.known \
            else np.zeros((n, 0))
        losses = known.reshape(n, -1) * self._known_signs
        feats = []
        for j, d in enumerate(self.dists):
            col = [k[j] for k in keys]  # type: ignore[index]
            if isinstance(d, CategoricalDistribution):  # one-hot: choices have no order
                idx = [d.choices.index(v) if v in d.choices else -1 for v in col]
                feats.append(np.eye(len(d.choices) + 1)[idx][:, :-1])
            else:
                x = np.asarray(col, dtype=float)
                feats.append((np.log(x) if d.log else x)[:, None])
        return losses, np.hstack(feats), np.ones(n, dtype=bool)

    def key_of(self, t: FrozenTrial) -> Hashable | None:
        p = t.params
        if not all(n in p for n in self.names):
            return None
        return tuple(p[n] for n in self.names)

    def measured_values(self, t: FrozenTrial) -> list[float] | None:
        if t.state == TrialState.COMPLETE and t.values is not None:
            return [float(t.values[j]) for j in self.measured]
        return None

    def distributions(self, params: Params) -> dict[str, BaseDistribution]:
        return {n: d for n, d in zip(self.names, self.dists, strict=True)
                if n in params and not d.single()}

    def neighbours(self, keys: Sequence[Hashable], rng: np.random.Generator) -> list[Hashable]:
        n_front, n_each = NEIGHBOURS
        if not keys:
            return []
        base = [keys[i] for i in rng.permutation(len(keys))[:n_front]]
        out: list[list[Any]] = [list(k) for k in base for _ in range(n_each)]  # type: ignore
        m = len(out)
        for j, d in enumerate(self.dists):
            if isinstance(d, CategoricalDistribution):
                redraw = rng.random(m) < 1.0 / len(self.dists)
                new = self._draw_dim(d, m, rng)
                for r in np.flatnonzero(redraw):
                    out[r][j] = new[r]
                continue
            f = math.log if d.log else float
            lo, hi = f(d.low), f(d.high)
            x = np.array([f(row[j]) for row in out]) + rng.normal(0.0, STEP * (hi - lo), m)
            for row, v in zip(out, self._snap(d, np.exp(x) if d.log else x), strict=True):
                row[j] = v
        return [tuple(r) for r in out]
