"""When the `hvi` sampler should not trust its model: a one-step-ahead check of the GP.

hvi ranks candidates by an optimistic bound from a GP on the measured objective. Where the
landscape has no smooth structure (the best candidate an isolated point, its neighbours
mediocre) the GP's posterior mean shrinks every untried candidate towards the average, the
bound stays tight where many looks were taken, and the search keeps returning to the region
of the known objectives it already covers: it abandons the isolated optimum that a no-model
random order finds (docs/benchmarks.md §19).

The check: every new look is scored, before the GP is refitted on it, by the GP that did not
see it — its log predictive density (latent std and fitted noise together) against that of
the no-model prior (the observed mean and std of the looks before it). While the model's
advantage over the newest ``WINDOW`` looks is not positive, the model explains nothing the
mean does not, and each ask goes with probability ``share`` to the no-repeat random order (an
untried feasible candidate at random) instead of the model's choice. ``share = 0`` turns the
check off: the sampler then draws no extra random numbers and behaves as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

from nas_dil.search.surrogate import GP

__all__ = ["WINDOW", "Calibration", "log_density"]

WINDOW = 8  # newest looks the model's advantage is averaged over (≈ one batch of asks)


def log_density(y: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Gaussian log density of ``y`` under N(mu, var), element-wise."""
    var = np.maximum(var, 1e-12)
    return -0.5 * (np.log(2.0 * np.pi * var) + (y - mu) ** 2 / var)


class Calibration:
    """The GP's one-step-ahead log-likelihood advantage over the prior on the newest looks."""

    def __init__(self, share: float, window: int = WINDOW) -> None:
        self.share = share  # probability an ask goes to the random order while the model is poor
        self.window = window
        self._scored: Counter[tuple[Hashable, bytes]] = Counter()  # looks already scored
        self.gaps: list[float] = []  # per scored look: model log density - prior log density

    def score(self, gps: Sequence[GP | None], keys: Sequence[Hashable], x: np.ndarray,
              y: np.ndarray) -> None:
        """Score the looks (candidate ``keys``, features ``x`` (n, f), measured losses ``y``
        (n, m)) not scored before, by ``gps`` (one per measured objective, fitted without
        them; None: not fitted yet, the looks only join the scored set)."""
        if self.share <= 0:
            return
        seen: Counter[tuple[Hashable, bytes]] = Counter()
        new = []
        for r, k in enumerate(keys):
            tag = (k, y[r].tobytes())
            seen[tag] += 1
            if seen[tag] > self._scored[tag]:  # a look (candidate, value) not counted yet
                new.append(r)
        self._scored = seen | self._scored
        if not new or any(g is None for g in gps):
            return
        old = np.setdiff1d(np.arange(len(keys)), new)
        if len(old) < 2:
            return
        for r in new:
            gap = 0.0
            for j, gp in enumerate(gps):
                assert gp is not None
                mu, sd = gp.predict(x[r:r + 1])
                var = sd**2 + gp.noise * gp.y_std**2  # the look's variance: latent + noise
                prior = y[old, j]
                p_var = max(float(prior.var()), 1e-12)
                gap += float(log_density(y[r:r + 1, j], mu, var)[0]
                             - log_density(y[r:r + 1, j], np.array([prior.mean()]),
                                           np.array([p_var]))[0])
            self.gaps.append(gap)

    def poor(self) -> bool:
        """The model did not beat the prior on the newest ``window`` scored looks."""
        return len(self.gaps) >= self.window and float(np.mean(self.gaps[-self.window:])) <= 0

    def explore(self, rng: np.random.Generator) -> bool:
        """Hand this ask to the no-repeat random order? (draws a number only when poor)"""
        return self.share > 0 and self.poor() and bool(rng.random() < self.share)
