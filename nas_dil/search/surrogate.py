"""A small Gaussian-process regressor for the `hvi` sampler's mIoU model.

Exact GP regression with a squared-exponential kernel on features scaled to [0, 1]. Targets
are standardised, so the prior mean is the observed mean and the prior std the observed std.
Two ways to set the kernel's length scales and the noise level:

- `fit_gp` ("iso"): one length scale for every feature, it and the noise picked by the log
  marginal likelihood over a small grid (18 Cholesky factorisations; a grid cannot diverge);
- `fit_gp_ard` ("ard", hvi's default): one length scale per feature (automatic relevance
  determination) and the noise, at the maximum of the marginal likelihood times a log-normal
  prior on each length scale (MAP; scipy's L-BFGS-B from the grid's best point and from the
  prior's centre). Why: one shared length scale over ~15 features lets the irrelevant ones
  dilute the one that matters (a GP that calls everything noise), and with one look per
  candidate the grid's best point often interpolates single looks (docs/benchmarks.md §19).
  The prior keeps a length scale long unless the looks say otherwise, so a feature is
  relevant only when the data show it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GP", "fit_gp", "fit_gp_ard", "floored", "noise_floor"]

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
# ARD: log length scale ~ Normal(ARD_PRIOR_MU0 + log(f)/2, ARD_PRIOR_SD) for f features (the
# log(f)/2 keeps a typical distance between candidates a similar number of length scales
# whatever f is, as in Hvarfner et al. 2024, "Vanilla Bayesian optimization performs great in
# high dimensions"; their centre sqrt(2) made every scale ~16 here and the model too flat to
# find a trend in 100 looks, -1.0 won across the benchmark's landscapes: §19)
ARD_PRIOR_MU0 = -1.0
ARD_PRIOR_SD = math.sqrt(3.0)
ARD_BOUNDS = (0.05, 100.0)  # a length scale's range ([0, 1]-scaled features)
ARD_MAXITER = 60  # L-BFGS-B iterations per start (converges in ~20-40 here)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)  # rounding can make a zero distance slightly negative


@dataclass(frozen=True)
class GP:
    x: np.ndarray  # (n, f) training features
    chol: np.ndarray  # (n, n) lower Cholesky factor of K + noise·I (standardised units)
    alpha: np.ndarray  # (n,) (K + noise·I)⁻¹ y, standardised
    length_scale: float  # the iso kernel's; ARD: the geometric mean of ``inv_ls``'s inverse
    noise: float
    y_mean: float
    y_std: float
    chol_inv: np.ndarray  # (n, n) L⁻¹
    inv_ls: np.ndarray | None = None  # ARD: (f,) 1 / each feature's length scale
    theta: np.ndarray | None = None  # ARD: (f + 1,) log length scales, log noise

    def kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.inv_ls is None:
            return np.exp(-_sqdist(a, b) / (2.0 * self.length_scale**2))
        return np.exp(-0.5 * _sqdist(a * self.inv_ls, b * self.inv_ls))

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std (of the latent function, noise excluded) at ``xs``."""
        xs = np.atleast_2d(np.asarray(xs, dtype=float))
        ks = self.kernel(xs, self.x)
        mu = ks @ self.alpha
        v = self.chol_inv @ ks.T  # L⁻¹ once per fit: a product per ask, not a solve
        var = np.maximum(1.0 - (v * v).sum(0), 1e-12)
        return mu * self.y_std + self.y_mean, np.sqrt(var) * self.y_std

    def sample(self, xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One joint draw of the latent function at ``xs`` from the posterior (Thompson
        sampling: candidates that are close share their luck)."""
        xs = np.atleast_2d(np.asarray(xs, dtype=float))
        ks = self.kernel(xs, self.x)
        v = self.chol_inv @ ks.T
        cov = self.kernel(xs, xs) - v.T @ v
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
    x, yn, y_mean, y_std = _standardised(x, y)
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
    chol, alpha, chol_inv = _factor(np.exp(-d2 / (2.0 * ls**2)) + noise * eye, yn)
    return GP(x, chol, alpha, ls, noise, y_mean, y_std, chol_inv)


def _factor(k: np.ndarray, yn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a GP's predictions use, for K + noise·I = ``k``: its Cholesky factor L,
    (K + noise·I)⁻¹ yn and L⁻¹."""
    chol = np.linalg.cholesky(k)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
    chol_inv = np.linalg.solve(chol, np.eye(len(yn)))
    return chol, alpha, chol_inv


def _standardised(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"fit_gp: {x.shape=} and {y.shape=} must hold the same n >= 1 points")
    y_mean = float(y.mean())
    y_std = float(y.std()) if len(y) > 1 and y.std() > 1e-12 else 1.0
    return x, (y - y_mean) / y_std, y_mean, y_std


def ard_prior_mu(n_features: int) -> float:
    """The prior's centre for a log length scale with ``n_features`` features."""
    return ARD_PRIOR_MU0 + 0.5 * math.log(max(n_features, 1))


def ard_log_posterior(theta: np.ndarray, x: np.ndarray, yn: np.ndarray
                      ) -> tuple[float, np.ndarray]:
    """Log marginal likelihood of standardised ``yn`` plus the log-normal prior on the length
    scales (constants dropped), and its gradient, at ``theta`` = (log length scale per
    feature, log noise). -inf where K + noise·I is not positive definite."""
    from scipy.linalg import lapack  # lazily, as fit_gp_ard's optimiser

    n, f = x.shape
    inv_ls = np.exp(-theta[:f])
    noise = math.exp(theta[f])
    xs = x * inv_ls
    kf = np.exp(-0.5 * _sqdist(xs, xs))
    # K⁻¹ from the Cholesky factor by LAPACK's potri (a third of the work of inverting the
    # factor by a general solve, then its product: 4.7 s -> ~1 s a fit at 600 looks)
    chol, info = lapack.dpotrf(kf + noise * np.eye(n), lower=1, clean=1)
    if info != 0:  # pragma: no cover - noise >= 1e-3 keeps it positive definite
        return -math.inf, np.zeros_like(theta)
    k_inv, info = lapack.dpotri(chol, lower=1)
    k_inv = np.tril(k_inv) + np.tril(k_inv, -1).T  # potri fills one triangle
    alpha = k_inv @ yn
    mu = ard_prior_mu(f)
    dev = (theta[:f] - mu) / ARD_PRIOR_SD
    value = (-0.5 * float(yn @ alpha) - float(np.log(np.diag(chol)).sum())
             - 0.5 * float(dev @ dev))
    # d/dθ of the marginal likelihood: ½ tr((ααᵀ - K⁻¹) dK/dθ); for a log length scale
    # dK/dθ_d = K ∘ D_d / ℓ_d² with D_d the squared differences in feature d, summed here
    # as 2 Σ_i x_id² r_i - 2 Σ_i x_id (W x)_id (W symmetric, r its row sums): no (f, n, n)
    wk = (np.outer(alpha, alpha) - k_inv) * kf
    r = wk.sum(axis=1)
    grad = np.empty_like(theta)
    grad[:f] = ((xs * xs * r[:, None]).sum(axis=0) - (xs * (wk @ xs)).sum(axis=0)) \
        - dev / ARD_PRIOR_SD
    grad[f] = 0.5 * noise * (float(alpha @ alpha) - float(np.trace(k_inv)))
    return value, grad


def gp_at(x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> GP:
    """The ARD GP with hyperparameters ``theta`` (log length scales, log noise), not fitted:
    one factorisation (hvi refits the hyperparameters only as the looks grow)."""
    x, yn, y_mean, y_std = _standardised(x, y)
    f = x.shape[1]
    inv_ls = np.exp(-theta[:f])
    noise = math.exp(theta[f])
    xs = x * inv_ls
    chol, alpha, chol_inv = _factor(np.exp(-0.5 * _sqdist(xs, xs)) + noise * np.eye(len(yn)), yn)
    return GP(x, chol, alpha, float(np.exp(theta[:f].mean())) if f else 1.0, noise, y_mean,
              y_std, chol_inv, inv_ls, np.array(theta, dtype=float))


def fit_gp_ard(x: np.ndarray, y: np.ndarray, noises: tuple[float, ...] = NOISES) -> GP:
    """The MAP ARD GP (module docstring): the noise within ``noises``' range; L-BFGS-B from
    the iso grid's best point and from the prior's centre, the better of the two. (Starting
    also from the previous fit's point changed no landscape's result beyond the seed-to-seed
    spread of the benchmark: docs/benchmarks.md §19.)"""
    from scipy.optimize import minimize  # lazily: only hvi's model needs it

    x, yn, _, _ = _standardised(x, y)
    f = x.shape[1]
    iso = fit_gp(x, y, noises)
    if f == 0 or len(yn) < 2:
        return gp_at(x, y, np.array([math.log(iso.length_scale)] * f + [math.log(iso.noise)]))
    lo_n, hi_n = math.log(min(noises)), math.log(max(noises))
    lo, hi = math.log(ARD_BOUNDS[0]), math.log(ARD_BOUNDS[1])
    bounds = [(lo, hi)] * f + [(lo_n, hi_n)]
    starts = [np.r_[np.full(f, math.log(iso.length_scale)), math.log(iso.noise)],
              np.r_[np.full(f, ard_prior_mu(f)), min(max(math.log(0.1), lo_n), hi_n)]]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = ard_log_posterior(theta, x, yn)
        return (-v, -g) if math.isfinite(v) else (1e300, np.zeros_like(theta))

    best: tuple[float, np.ndarray] | None = None
    for start in starts:
        start = np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds])
        res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": ARD_MAXITER})
        if best is None or float(res.fun) < best[0]:
            best = (float(res.fun), np.asarray(res.x, dtype=float))
    assert best is not None
    return gp_at(x, y, best[1])
