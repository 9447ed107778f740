"""The ARD Gaussian process (`nas_dil.search.surrogate.fit_gp_ard`): its gradient, the
relevance it finds, and the fixed-hyperparameter GP hvi uses between optimisations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas_dil.search.surrogate import (
    ARD_BOUNDS,
    NOISES,
    NOISES_NOISY,
    ard_log_posterior,
    ard_prior_mu,
    fit_gp,
    fit_gp_ard,
    gp_at,
)


@pytest.mark.parametrize(("n", "f", "seed"), [(5, 1, 0), (12, 3, 1), (30, 6, 2), (40, 15, 3)])
def test_ard_gradient_matches_finite_differences(n: int, f: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random((n, f))
    y = rng.standard_normal(n)
    yn = (y - y.mean()) / y.std()
    theta = np.r_[rng.normal(-0.5, 0.7, f), math.log(0.05)]
    _, grad = ard_log_posterior(theta, x, yn)
    eps = 1e-6
    num = [(ard_log_posterior(theta + e, x, yn)[0] - ard_log_posterior(theta - e, x, yn)[0])
           / (2 * eps) for e in np.eye(f + 1) * eps]
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("n_features", "mu"), [
    (1, -1.0), (4, -1.0 + math.log(2.0)), (16, -1.0 + math.log(4.0)),
])
def test_prior_centre_grows_with_half_the_log_of_the_feature_count(n_features: int,
                                                                   mu: float) -> None:
    assert ard_prior_mu(n_features) == pytest.approx(mu)


def test_ard_finds_the_one_feature_that_matters() -> None:
    # y depends on feature 0 only; 9 features of noise. The iso kernel must share one length
    # scale between them; ARD gives feature 0 a short one and the rest long ones
    rng = np.random.default_rng(0)
    x = rng.random((60, 10))
    y = np.sin(6.0 * x[:, 0]) + 0.05 * rng.standard_normal(60)
    gp = fit_gp_ard(x, y, NOISES_NOISY)
    assert gp.inv_ls is not None
    ls = 1.0 / gp.inv_ls
    assert ls[0] < 0.5
    assert ls[1:].min() > 3.0 * ls[0]
    # and predicts held-out points better than the iso grid's GP
    xt = rng.random((200, 10))
    yt = np.sin(6.0 * xt[:, 0])
    iso = fit_gp(x, y, NOISES_NOISY)
    err_ard = np.abs(gp.predict(xt)[0] - yt).mean()
    err_iso = np.abs(iso.predict(xt)[0] - yt).mean()
    assert err_ard < 0.5 * err_iso


def test_ard_noise_stays_in_the_grid_range_and_scales_in_bounds() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((25, 4))
    y = rng.standard_normal(25)  # pure noise
    for noises in (NOISES, NOISES_NOISY):
        gp = fit_gp_ard(x, y, noises)
        assert min(noises) * (1 - 1e-9) <= gp.noise <= max(noises) * (1 + 1e-9)
        assert gp.inv_ls is not None
        assert (1.0 / gp.inv_ls >= ARD_BOUNDS[0] * (1 - 1e-9)).all()
        assert (1.0 / gp.inv_ls <= ARD_BOUNDS[1] * (1 + 1e-9)).all()


def test_ard_is_at_least_as_good_as_its_starts() -> None:
    # the returned point's log posterior is >= that of the iso grid's best point and of the
    # prior's centre (L-BFGS-B only moves uphill from each start, the better is kept)
    rng = np.random.default_rng(2)
    x = rng.random((30, 5))
    y = x[:, 1] ** 2 + 0.1 * rng.standard_normal(30)
    yn = (y - y.mean()) / y.std()
    iso = fit_gp(x, y, NOISES_NOISY)
    gp = fit_gp_ard(x, y, NOISES_NOISY)
    assert gp.theta is not None
    got = ard_log_posterior(gp.theta, x, yn)[0]
    centre = np.r_[np.full(5, ard_prior_mu(5)), math.log(0.1)]
    assert got >= ard_log_posterior(centre, x, yn)[0] - 1e-9
    iso_theta = np.r_[np.full(5, math.log(iso.length_scale)), math.log(iso.noise)]
    assert got >= ard_log_posterior(iso_theta, x, yn)[0] - 1e-9


def test_gp_at_its_own_hyperparameters_reproduces_the_fit() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((20, 3))
    y = np.cos(4 * x[:, 2]) + 0.02 * rng.standard_normal(20)
    gp = fit_gp_ard(x, y)
    assert gp.theta is not None
    again = gp_at(x, y, gp.theta)
    xt = rng.random((7, 3))
    for a, b in zip(gp.predict(xt), again.predict(xt), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ard_posterior_interpolates_little_noise_and_smooths_much() -> None:
    # brute force: the posterior mean at the training points against the closed form
    # K (K + noise I)^-1 y with the fitted hyperparameters
    rng = np.random.default_rng(4)
    x = rng.random((15, 2))
    y = x[:, 0] + 0.3 * rng.standard_normal(15)
    gp = fit_gp_ard(x, y, NOISES_NOISY)
    assert gp.inv_ls is not None
    xs = x * gp.inv_ls
    k = np.exp(-0.5 * ((xs[:, None, :] - xs[None, :, :]) ** 2).sum(-1))
    yn = (y - y.mean()) / y.std()
    want = k @ np.linalg.solve(k + gp.noise * np.eye(15), yn) * y.std() + y.mean()
    np.testing.assert_allclose(gp.predict(x)[0], want, rtol=1e-8, atol=1e-8)
    _, sd = gp.predict(x)
    assert (sd > 0).all()


def test_one_point_and_no_features() -> None:
    gp = fit_gp_ard(np.zeros((1, 3)), np.array([0.4]))
    assert gp.predict(np.ones((2, 3)))[0] == pytest.approx([0.4, 0.4])
    gp = fit_gp_ard(np.zeros((4, 0)), np.array([0.1, 0.2, 0.3, 0.4]))
    assert gp.predict(np.zeros((1, 0)))[0][0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"x\.shape"):
        fit_gp_ard(np.zeros((2, 3)), np.zeros(3))
