"""A small Gaussian-process regressor (numpy only) for the `hvi` sampler's mIoU model.

Exact GP regression with an isotropic squared-exponential kernel on features scaled to
[0, 1]; the length scale and the noise level are picked by the log marginal likelihood over a
small grid (no gradient optimiser: a few hundred points and 18 Cholesky factorisations cost
milliseconds, and a grid cannot diverge). Targets are standardised, so the prior mean is the
observed mean and the prior std the observed std.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GP", "fit_gp", "floored", "noise_floor"]

LENGTH_SCALES = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)  # in units of a [0, 1]-scaled feature
NOISES = (1e-3, 1e-2, 1e-1)  # noise variance, relative to the standardised target variance
# for noisy measurements (hvi's ``noise`` option): up to as large as the signal, as seed noise
# can be (on tabular_v2 the seed std is ~0.3-0.5 of the candidates' spread at one cost level)
NOISES_NOISY = (1e-3, 1e-2, 1e-1, 0.3, 1.0)
# the least noise share hvi's ``noise_floor`` allows while no candidate has two looks: with one
# look per candidate the likelihood cannot tell seed noise from signal and prefers a tiny noise
# (interpolating single looks; docs/benchmarks.md §19)
PRIOR_NOISE_FLOOR = 0.05
# the floor from measured seed noise is this fraction of the pooled estimate: a lower bound
# (the estimate from a few pairs of looks is itself noisy), the likelihood may fit more
MEASURED_FLOOR_SHARE = 0.5


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)  # rounding can make a zero distance slightly negative


@dataclass(frozen=True)
class GP:
    x: np.ndarray  # (n, f) training features
    chol: np.ndarray  # (n, n) lower Cholesky factor of K + noise·I (standardised units)
    alpha: np.ndarray  # (n,) (K + noise·I)⁻¹ y, standardised
    length_scale: float
    noise: float
    y_mean: float
    y_std: float
    chol_inv: np.ndarray  # (n, n) L⁻¹

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std (of the latent function, noise excluded) at ``xs``."""
        xs = np.atleast_2d(np.asarray(xs, dtype=float))
        ks = np.exp(-_sqdist(xs, self.x) / (2.0 * self.length_scale**2))
        mu = ks @ self.alpha
        v = self.chol_inv @ ks.T  # L⁻¹ once per fit: a product per ask, not a solve
        var = np.maximum(1.0 - (v * v).sum(0), 1e-12)
        return mu * self.y_std + self.y_mean, np.sqrt(var) * self.y_std

    def sample(self, xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One joint draw of the latent function at ``xs`` from the posterior (Thompson
        sampling: candidates that are close share their luck)."""
        xs = np.atleast_2d(np.asarray(xs, dtype=float))
        ks = np.exp(-_sqdist(xs, self.x) / (2.0 * self.length_scale**2))
        v = self.chol_inv @ ks.T
        cov = np.exp(-_sqdist(xs, xs) / (2.0 * self.length_scale**2)) - v.T @ v
        # eigh, not Cholesky: the posterior covariance of close candidates is singular
        w, q = np.linalg.eigh(cov)
        z = q @ (np.sqrt(np.maximum(w, 0.0)) * rng.standard_normal(len(xs)))
        return (ks @ self.alpha + z) * self.y_std + self.y_mean


def noise_floor(groups: np.ndarray, y: np.ndarray, prior: float = PRIOR_NOISE_FLOOR) -> float:
    """The least noise share (of ``y``'s variance) the GP may fit: ``MEASURED_FLOOR_SHARE`` of
    the pooled within-candidate variance of ``y`` over candidates with >= 2 looks (``groups``:
    each look's candidate id), or ``prior`` when no candidate has two looks (or ``y`` has no
    spread); at most 1."""
    var = float(np.var(y))
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    dof = int((counts - 1).sum())
    if dof == 0 or var <= 0.0:
        return prior
    means = np.bincount(inv, weights=y) / counts
    pooled = float(((y - means[inv]) ** 2).sum()) / dof
    return min(1.0, MEASURED_FLOOR_SHARE * pooled / var)


def floored(noises: tuple[float, ...], floor: float) -> tuple[float, ...]:
    """The noise grid with every level below ``floor`` raised to it (duplicates dropped)."""
    return tuple(sorted({max(v, floor) for v in noises}))


def fit_gp(x: np.ndarray, y: np.ndarray, noises: tuple[float, ...] = NOISES) -> GP:
    """The grid point of highest log marginal likelihood; ``x`` (n, f), ``y`` (n,), n >= 1
    (repeated rows of ``x``, several looks at one candidate, are what pins the noise)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"fit_gp: {x.shape=} and {y.shape=} must hold the same n >= 1 points")
    y_mean = float(y.mean())
    y_std = float(y.std()) if len(y) > 1 and y.std() > 1e-12 else 1.0
    yn = (y - y_mean) / y_std
    d2 = _sqdist(x, x)
    n = len(y)
    eye = np.eye(n)
    noise_arr = np.asarray(noises, dtype=float)
    # the grid is scored on one stacked Cholesky per length scale of the matrix bordered by
    # the targets, [[K + noise·I, y], [yᵀ, c]]: its last row holds L⁻¹y (so yᵀ(K + noise·I)⁻¹y
    # without a solve) and its leading block L (the log determinant); c keeps it positive
    # definite (K + noise·I >= noise·I). One LAPACK call instead of a factorisation and two
    # general solves per grid point, which were most of an ask's time with trials in flight
    bordered = np.empty((len(noises), n + 1, n + 1))
    bordered[:, :n, n] = yn
    bordered[:, n, :n] = yn
    bordered[:, n, n] = float(yn @ yn) / noise_arr + 1.0
    rows = np.arange(n)
    best: tuple[float, float, float] | None = None
    for ls in LENGTH_SCALES:
        k = np.exp(-d2 / (2.0 * ls**2))
        bordered[:, :n, :n] = k
        bordered[:, rows, rows] += noise_arr[:, None]  # + noise·I (exactly: k + 0 = k)
        try:
            chol_b = np.linalg.cholesky(bordered)
        except np.linalg.LinAlgError:  # pragma: no cover - noise >= 1e-3 keeps K PD
            continue
        z = chol_b[:, n, :n]
        lls = -0.5 * (z * z).sum(axis=1) - np.log(chol_b[:, rows, rows]).sum(axis=1)
        for noise, ll in zip(noises, lls.tolist(), strict=True):
            if best is None or ll > best[0]:
                best = (ll, ls, noise)
    assert best is not None
    _, ls, noise = best
    # the chosen grid point's factor and solves as a single fit computes them (the values
    # every prediction uses do not depend on how the grid was scored)
    chol = np.linalg.cholesky(np.exp(-d2 / (2.0 * ls**2)) + noise * eye)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
    chol_inv = np.linalg.solve(chol, np.eye(len(y)))
    return GP(x, chol, alpha, ls, noise, y_mean, y_std, chol_inv)
