"""The hvi sampler and its parts: the GP, the sampler's rules (never a repeat, never an
infeasible candidate, stop when the space is exhausted), and its efficiency on the tabular
benchmark. Its exact hypervolume improvement is `nas_dil.pareto`'s (tests/test_pareto.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from nas_dil.data.synthetic import NUM_CLASSES
from nas_dil.search.config import (
    Constraint,
    SamplerConfig,
    StudyConfigError,
    load_study_config,
    parse_study_config,
)
from nas_dil.search.driver import make_sampler
from nas_dil.search.hvi import HVISampler, check_options
from nas_dil.search.resolved import ResolvedStudy
from nas_dil.search.surrogate import (
    LENGTH_SCALES,
    NOISES,
    NOISES_NOISY,
    PRIOR_NOISE_FLOOR,
    fit_gp,
    floored,
    noise_floor,
)
from nas_dil.search.tabular import load_table, schedule_key
from nas_dil.spaces import load_space

REPO = Path(__file__).resolve().parents[2]
TABULAR = REPO / "studies" / "tabular.toml"


# -- the surrogate ----------------------------------------------------------------------------

def test_gp_interpolates_and_is_unsure_far_away() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((40, 2))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    gp = fit_gp(x, y)
    mu, sd = gp.predict(x)
    np.testing.assert_allclose(mu, y, atol=0.05)
    xt = rng.random((200, 2))
    mu_t, _ = gp.predict(xt)
    truth = np.sin(3 * xt[:, 0]) + xt[:, 1] ** 2
    assert np.abs(mu_t - truth).mean() < 0.2 * np.abs(truth - y.mean()).mean()
    _, sd_far = gp.predict(np.array([[5.0, 5.0]]))
    assert sd_far[0] > 5 * sd.max()  # far from the data: back to the prior std


def test_gp_one_point_and_bad_shapes() -> None:
    gp = fit_gp(np.zeros((1, 3)), np.array([0.4]))
    mu, sd = gp.predict(np.ones((2, 3)))
    assert np.all(np.isfinite(mu)) and np.all(sd > 0)
    with pytest.raises(ValueError, match="same n"):
        fit_gp(np.zeros((2, 3)), np.zeros(3))


@pytest.mark.parametrize(("gap", "noises", "length_scale", "noise"), [
    (1.0, NOISES, 0.1, 1e-3),  # far apart: two independent values, no noise needed
    (0.5, NOISES_NOISY, 0.1, 1e-3),
    (0.1, NOISES, 0.1, 0.1),  # close, yet far apart in value: mostly noise
    (0.01, NOISES_NOISY, 0.1, 1.0),
])
def test_gp_grid_picks_the_highest_likelihood_by_hand(gap: float, noises: tuple[float, ...],
                                                      length_scale: float,
                                                      noise: float) -> None:
    # two points, targets standardised to -1 and +1; with r = exp(-gap²/(2 ls²)) the log
    # marginal likelihood is -1/(1 - r + noise) - ½ log((1 + noise)² - r²), largest here at
    # the shortest length scale and the noise in the table
    gp = fit_gp(np.array([[0.0], [gap]]), np.array([0.0, 1.0]), noises)
    assert (gp.length_scale, gp.noise) == (length_scale, noise)


@pytest.mark.parametrize(("groups", "y", "floor"), [
    ([0, 1, 2], [0.0, 1.0, 2.0], PRIOR_NOISE_FLOOR),  # one look each: the prior bound
    ([0, 0, 1], [1.0, 1.0, 1.0], PRIOR_NOISE_FLOOR),  # no spread at all
    # pairs (0, 2) and (4, 6): pooled variance (2 + 2) / 2 = 2, var(y) = 5, half of 2 / 5
    ([0, 0, 1, 1], [0.0, 2.0, 4.0, 6.0], 0.2),
    # (0, 0, 3): within 6 over 2 dof = 3; a lone look adds no dof; var(y) = 18 / 4
    ([0, 0, 0, 1], [0.0, 0.0, 3.0, 5.0], 0.5 * 3.0 / 4.5),
    ([0, 0], [0.0, 1.0], 1.0),  # all spread within the candidate: capped at 1
])
def test_noise_floor_by_hand(groups: list[int], y: list[float], floor: float) -> None:
    assert noise_floor(np.array(groups), np.array(y)) == pytest.approx(floor)


@pytest.mark.parametrize(("noises", "floor", "out"), [
    (NOISES_NOISY, 0.05, (0.05, 0.1, 0.3, 1.0)),
    (NOISES_NOISY, 1e-4, NOISES_NOISY),
    (NOISES_NOISY, 2.0, (2.0,)),
])
def test_floored_grid(noises: tuple[float, ...], floor: float,
                      out: tuple[float, ...]) -> None:
    assert floored(noises, floor) == out


def test_a_noise_floor_stops_interpolating_single_looks() -> None:
    # the diagnosis of docs/benchmarks.md §19: two far-apart single looks are fitted with
    # the least noise of the grid; with the floor the GP may not fit less than it
    x, y = np.array([[0.0], [1.0]]), np.array([0.0, 1.0])
    assert fit_gp(x, y, NOISES_NOISY).noise == 1e-3
    assert fit_gp(x, y, floored(NOISES_NOISY, PRIOR_NOISE_FLOOR)).noise == PRIOR_NOISE_FLOOR


def test_gp_sample_draws_from_the_posterior() -> None:
    """Thompson sampling's joint draw: over many draws, the posterior mean and std of
    ``predict`` at each point, and near points move together (their draws correlate)."""
    rng = np.random.default_rng(0)
    x = rng.random((12, 2))
    gp = fit_gp(x, np.sin(3 * x[:, 0]) + x[:, 1], NOISES_NOISY)
    xs = np.array([[0.5, 0.5], [0.52, 0.5], [3.0, 3.0]])
    draws = np.array([gp.sample(xs, rng) for _ in range(4000)])
    mu, sd = gp.predict(xs)
    np.testing.assert_allclose(draws.mean(0), mu, atol=4 * sd.max() / np.sqrt(4000))
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.05)
    assert np.corrcoef(draws[:, 0], draws[:, 1])[0, 1] > 0.9  # close: one shared draw
    assert abs(np.corrcoef(draws[:, 0], draws[:, 2])[0, 1]) < 0.1  # far: independent


@pytest.mark.parametrize(("seed", "n", "repeats", "noises"), [
    (0, 1, False, NOISES), (1, 12, False, NOISES), (2, 60, True, NOISES_NOISY),
    (3, 110, False, NOISES_NOISY), (4, 90, True, NOISES),
])
def test_gp_fit_equals_one_factorisation_per_grid_point(seed: int, n: int, repeats: bool,
                                                        noises: tuple[float, ...]) -> None:
    """The grid is scored on bordered, stacked factorisations; the choice and the fitted
    arrays are those of the direct computation (a Cholesky factor and solves per point),
    bit for bit, so the sampler's choices do not depend on how the grid is scored."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 7))
    if repeats:  # several looks at a candidate
        x = x[rng.integers(0, max(1, n // 3), n)]
    y = np.sin(4 * x[:, 0]) + rng.normal(0.0, 0.3, n)
    gp = fit_gp(x, y, noises)
    yn = (y - y.mean()) / (y.std() if n > 1 else 1.0)
    d2 = np.maximum((x * x).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * x @ x.T, 0.0)
    best: tuple[float, float, float] | None = None
    for ls in LENGTH_SCALES:
        for noise in noises:
            chol = np.linalg.cholesky(np.exp(-d2 / (2.0 * ls**2)) + noise * np.eye(n))
            alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
            ll = float(-0.5 * yn @ alpha - np.log(np.diag(chol)).sum())
            if best is None or ll > best[0]:
                best = (ll, ls, noise)
    assert best is not None
    assert (gp.length_scale, gp.noise) == best[1:]
    chol = np.linalg.cholesky(np.exp(-d2 / (2.0 * best[1]**2)) + best[2] * np.eye(n))
    assert np.array_equal(gp.chol, chol)
    assert np.array_equal(gp.alpha, np.linalg.solve(chol.T, np.linalg.solve(chol, yn)))
    assert np.array_equal(gp.chol_inv, np.linalg.solve(chol, np.eye(n)))


# -- the sampler ------------------------------------------------------------------------------

def _cfg(**sampler: Any) -> Any:
    base = load_study_config(TABULAR)
    return dataclasses.replace(base, sampler=SamplerConfig("hvi", sampler))


def _points(seed: int = 0) -> dict[str, tuple[float, float, float]]:
    t = load_table(REPO / "benchmarks" / "tabular_dilation.csv")
    return {k[0]: (r["miou"], float(r["rf"]), float(r["gflops"]))
            for k, r in t.rows.items() if k[4] == seed}


def _run(cfg: Any, n: int, points: dict[str, tuple[float, float, float]] | None = None,
         tell: bool = True) -> tuple[list[str], optuna.Study]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(cfg.space_path)
    sampler = make_sampler(ResolvedStudy(cfg, space, NUM_CLASSES))
    study = optuna.create_study(directions=[o.direction for o in cfg.objectives],
                                sampler=sampler)
    points = _points() if points is None else points
    asked: list[str] = []
    for _ in range(n):
        trial = study.ask()
        key = schedule_key(space.sample(trial).rates)
        asked.append(key)
        if tell:
            try:
                study.tell(trial, list(points[key]))
            except RuntimeError as e:  # the sampler stopped the study: nothing left
                assert "Study.stop" in str(e)
                break
    return asked, study


def test_never_repeats_and_stops_when_the_space_is_exhausted() -> None:
    asked, study = _run(_cfg(n_startup=4), 400)
    assert len(asked) == 320 == len(set(asked))  # every candidate once, then stop
    assert sum(t.state.is_finished() for t in study.trials) == 320


def test_repeats_look_again_at_tried_candidates_within_the_limit() -> None:
    """``repeats = 1``: some tried candidates are proposed once more (the runner trains them
    with another seed; here each look adds seed noise), never a third time."""
    rng = np.random.default_rng(0)
    base = _points()
    space = load_space(_cfg().space_path)
    cfg = _cfg(n_startup=4, noise=True, repeats=1, seed=1)
    sampler = make_sampler(ResolvedStudy(cfg, space, NUM_CLASSES))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[o.direction for o in cfg.objectives],
                                sampler=sampler)
    asked: list[str] = []
    hows: list[str] = []
    for _ in range(60):
        trial = study.ask()
        key = schedule_key(space.sample(trial).rates)
        asked.append(key)
        hows.append(sampler.last_choice.get("how", ""))
        m, rf, g = base[key]
        study.tell(trial, [m + float(rng.normal(0, 0.02)), rf, g])
    counts = {k: asked.count(k) for k in set(asked)}
    assert max(counts.values()) == 2 and "repeat" in hows
    assert sum(c - 1 for c in counts.values()) == hows.count("repeat")


def test_noise_option_keeps_choices_without_noise_alike() -> None:
    """``noise`` changes the GP's noise grid and the front; without it the sampler is the
    one the quickstart always ran: same seed, same choices as before the option existed
    (the default path is the code path of ``noise = false, repeats = 0``)."""
    a, _ = _run(_cfg(n_startup=4, seed=3), 20)
    b, _ = _run(_cfg(n_startup=4, seed=3, noise=False, repeats=0), 20)
    assert a == b


def test_gp_fits_seed_noise_from_repeats() -> None:
    """Repeated inputs whose looks spread more than the signal: the noisy grid picks a
    noise level of at least 0.3 of the target variance (seed noise this large is real)."""
    from nas_dil.search.surrogate import NOISES_NOISY

    rng = np.random.default_rng(0)
    x = np.repeat(rng.random((20, 2)), 3, axis=0)
    y = x[:, 0] * 0.1 + rng.normal(0, 0.05, len(x))
    assert fit_gp(x, y, NOISES_NOISY).noise >= 0.3


def _smooth_and_one_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # 21 looks of a smooth function, one of them looked at again 0.6 off: the likelihood
    # fits noise 0.1, the pair alone says 0.5·(0.18 / 2) / var(y) = 0.183 (floor, by hand)
    x = np.linspace(0.0, 1.0, 21)[:, None]
    x = np.vstack([x, x[:1]])
    y = np.sin(6 * x[:, 0])
    y[-1] += 0.6
    return x, y, np.r_[np.arange(21), 0]


@pytest.mark.parametrize(("case", "floor", "noise"), [
    ("single", False, 1e-3), ("single", True, PRIOR_NOISE_FLOOR),  # the prior bound
    ("pair", False, 0.1), ("pair", True, 0.18305),  # the measured floor, a grid point now
])
def test_noise_floor_bounds_the_fitted_noise(case: str, floor: bool, noise: float) -> None:
    """``noise_floor``: the GP hvi fits never has less noise than the floor, the prior bound
    while every candidate has one look, else half the pooled seed variance of the looks."""
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    x, y, groups = ((np.array([[0.0], [1.0]]), np.array([0.0, 1.0]), np.arange(2))
                    if case == "single" else _smooth_and_one_pair())
    # the iso kernel's grid: exactly the floor's grid point
    sampler = HVISampler(search_space=space, noise=True, noise_floor=floor, kernel="iso")
    assert sampler._gp(0, x, y, groups).noise == pytest.approx(noise, rel=1e-4)
    # ARD's noise is continuous: bounded below by the floor (the grid's least level)
    ard = HVISampler(search_space=space, noise=True, noise_floor=floor)._gp(0, x, y, groups)
    assert ard.inv_ls is not None
    assert ard.noise >= (noise if floor else 1e-3) * (1 - 1e-4)  # 0.18305: rounded


def test_thompson_same_seed_same_choices_and_not_the_upper_bounds() -> None:
    a, _ = _run(_cfg(n_startup=4, seed=3, noise=True, thompson=True), 24)
    b, _ = _run(_cfg(n_startup=4, seed=3, noise=True, thompson=True), 24)
    c, _ = _run(_cfg(n_startup=4, seed=3, noise=True), 24)
    assert a == b and a[:4] == c[:4] and a != c  # the same startup, then draws
    assert len(set(a)) == len(a)


def test_same_seed_same_choices() -> None:
    a, _ = _run(_cfg(n_startup=4, seed=3), 20)
    b, _ = _run(_cfg(n_startup=4, seed=3), 20)
    c, _ = _run(_cfg(n_startup=4, seed=4), 20)
    assert a == b and a != c


def test_running_trials_are_not_proposed_again() -> None:
    asked, _ = _run(_cfg(n_startup=2), 12, tell=False)  # all stay RUNNING
    assert len(set(asked)) == 12


def test_infeasible_candidates_are_never_proposed() -> None:
    cfg = dataclasses.replace(_cfg(n_startup=3),
                              constraints=(Constraint("rf_nominal", "min", 150.0),))
    asked, _ = _run(cfg, 30)
    rf = {k: v[1] for k, v in _points().items()}
    assert asked and all(rf[k] >= 150 for k in asked)


def test_analytic_objectives_only_pick_the_largest_exact_improvement() -> None:
    """rf↑ gflops↓ known before training: the first pick is the candidate whose box to the
    reference point is largest — 8-8-8 (RF 199 at the lower GFLOPs), by hand."""
    from nas_dil.search.objectives import Objective

    cfg = dataclasses.replace(_cfg(), objectives=(Objective("rf_nominal", "maximize"),
                                                  Objective("gflops", "minimize")))
    asked, _ = _run(cfg, 1, points={k: v[1:] for k, v in _points().items()})
    assert asked == ["8-8-8"]


def test_parameters_are_an_ordinary_define_by_run_trial() -> None:
    """Relative sampling names the same distributions `Space.sample` uses, on a table-rule
    space (one categorical `rates` label) as on a per-layer one."""
    cfg = dataclasses.replace(_cfg(n_startup=2), space_path=REPO / "search_spaces" / "hdc.toml",
                              constraints=())
    space = load_space(cfg.space_path)
    study = optuna.create_study(directions=["maximize", "maximize", "minimize"],
                                sampler=make_sampler(ResolvedStudy(cfg, space, NUM_CLASSES)))
    seen = set()
    for i in range(6):
        trial = study.ask()
        cand = space.sample(trial)
        assert space.contains(cand)
        seen.add((cand.rates, cand.kernel, cand.output_stride, cand.width))
        study.tell(trial, [0.3 + 0.01 * i, float(i), 1.0])
    assert len(seen) == 6


def test_large_space_is_sampled_not_enumerated() -> None:
    cfg = dataclasses.replace(_cfg(n_startup=2, pool_size=64),
                              space_path=REPO / "search_spaces" / "free.toml", constraints=())
    space = load_space(cfg.space_path)
    sampler = make_sampler(ResolvedStudy(cfg, space, NUM_CLASSES))
    study = optuna.create_study(directions=["maximize", "maximize", "minimize"],
                                sampler=sampler)
    keys = []
    for i in range(17):  # fresh candidates join the pool every REFRESH_EVERY = 16 asks
        trial = study.ask()
        cand = space.sample(trial)
        keys.append((cand.rates, cand.width, cand.output_stride, cand.kernel))
        study.tell(trial, [0.5 - 0.01 * i, 10.0 + i, 1.0])
    assert len(set(keys)) == 17
    assert sampler.last_choice["how"] in ("improvement", "uncertainty")
    assert not sampler._exhaustive and len(sampler._pool.keys) > 64  # grew past pool_size


def test_beats_random_search_on_the_tabular_benchmark() -> None:
    """The claim of docs/benchmarks.md §5, small: after 50 trials hvi holds ≥ 90 % of the
    exhaustive hypervolume in each of 3 seeds, and more than random search (Optuna's
    RandomSampler on the same space, same seed) holds after 50."""
    from nas_dil.pareto import hypervolume, reference_point, to_losses

    dirs = ["maximize", "maximize", "minimize"]
    pts = {k: to_losses([v], dirs)[0] for k, v in _points().items()}
    allv = np.array(list(pts.values()))
    ref = reference_point(allv)
    full = hypervolume(allv, ref)
    for seed in range(3):
        asked, _ = _run(_cfg(seed=seed), 50)
        share = hypervolume(np.array([pts[k] for k in asked]), ref) / full
        rnd = dataclasses.replace(_cfg(), seed=seed, sampler=SamplerConfig("random", {}))
        asked, _ = _run(rnd, 50)
        assert share >= 0.9
        assert share > hypervolume(np.array([pts[k] for k in asked]), ref) / full


# -- options ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "match", "in_file"), [
    ({"beta": -1}, "beta = -1: must be a finite number >= 0", "sampler: beta = -1"),
    # a study file's types are checked against HVISampler's signature first
    ({"beta": True}, "beta = True", "sampler.beta: expected float | None, got True"),
    ({"n_startup": 0}, "n_startup = 0: must be an integer >= 1", "sampler: n_startup = 0"),
    ({"pool_size": 2.5}, "pool_size = 2.5", "sampler.pool_size: expected int, got 2.5"),
    ({"seed": "x"}, "seed = 'x'", "sampler.seed: expected int | None, got 'x'"),
    ({"repeats": -1}, "repeats = -1: must be an integer >= 0", "sampler: repeats = -1"),
    ({"noise": 1}, "noise = 1: must be true or false", "sampler.noise: expected bool, got 1"),
    ({"explore": 1.5}, r"explore = 1.5: must be a number in \[0, 1\]",
     "sampler: explore = 1.5"),
    ({"noise_floor": 1}, "noise_floor = 1: must be true or false",
     "sampler.noise_floor: expected bool, got 1"),
    ({"thompson": "yes"}, "thompson = 'yes': must be true or false",
     "sampler.thompson: expected bool, got 'yes'"),
    ({"kernel": "rbf"}, "kernel = 'rbf': must be one of 'ard', 'iso'",
     "sampler: kernel = 'rbf'"),
])
def test_bad_options_are_one_line_errors(options: dict[str, Any], match: str,
                                         in_file: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_options(**options)
    body = "\n".join(f"{k} = {v!r}".replace("True", "true").replace("'", '"')
                     for k, v in options.items())
    text = f'space = "tabular"\n[sampler]\nname = "hvi"\n{body}\n'
    with pytest.raises(StudyConfigError) as e:
        parse_study_config(_toml(text), Path("s.toml"))
    assert str(e.value).startswith(f"s.toml: {in_file}")


def test_ard_without_scipy_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without scipy the default kernel cannot be fitted: the study file is refused up front
    (exit 2 at the CLI), not at the first fit mid-search; the iso kernel still works."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real(name, *a))
    with pytest.raises(ValueError, match="kernel = 'ard' \\(the default\\) needs scipy"):
        check_options()
    text = 'space = "tabular"\n[sampler]\nname = "hvi"\n'
    with pytest.raises(StudyConfigError, match=r"s\.toml: sampler: kernel = 'ard'"):
        parse_study_config(_toml(text), Path("s.toml"))
    check_options(kernel="iso")
    parse_study_config(_toml(text + 'kernel = "iso"\n'), Path("s.toml"))


def test_unknown_option_lists_the_allowed_ones() -> None:
    text = 'space = "tabular"\n[sampler]\nname = "hvi"\nn_startup_trials = 8\n'
    with pytest.raises(StudyConfigError, match="allowed: beta, n_startup, pool_size, seed"):
        parse_study_config(_toml(text), Path("s.toml"))


def test_needs_the_driver_context() -> None:
    with pytest.raises(ValueError, match="needs the study's context"):
        HVISampler()


def _toml(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


def test_study_parse_and_sampler_are_torch_free() -> None:
    """The driver process reads study files and chooses candidates without torch (only the
    trials train); a Ray worker running a sleep or tabular trial stays light too."""
    import subprocess
    import sys

    code = ("import sys; from nas_dil.search.config import load_study_config; "
            "import nas_dil.search.hvi, nas_dil.search.driver; "
            f"load_study_config({str(TABULAR)!r}); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("options", "beta"), [
    ({}, 2.0), ({"noise": True}, 1.0), ({"noise": True, "beta": 3}, 3.0),
    ({"beta": 0.5}, 0.5)])
def test_beta_defaults_to_one_with_noise(options: dict[str, Any], beta: float) -> None:
    import optuna

    from nas_dil.search.hvi import HVISampler

    space = {"x": optuna.distributions.CategoricalDistribution([1, 2, 3])}
    assert HVISampler(search_space=space, **options).beta == beta


@pytest.mark.parametrize(("noise", "signal"), [
    (True, True),  # a smooth function of x alone
    (False, False),  # pure noise: the fitted noise sits at the range's top (0.1), where
    # exp(log(0.1)) > 0.1 once made every ask re-optimise
])
def test_ard_hyperparameters_are_optimised_as_the_looks_grow(noise: bool,
                                                             signal: bool) -> None:
    """ARD (the default kernel) re-optimises its hyperparameters at every fit while the looks
    are few (<= ARD_REFIT_ALWAYS), then only when they have grown by ARD_REFIT_GROWTH since the
    last optimisation; in between a fit is one factorisation at the last hyperparameters."""
    from nas_dil.search import hvi as hvi_mod

    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0),
             "z": optuna.distributions.FloatDistribution(0.0, 1.0)}
    sampler = HVISampler(search_space=space, noise=noise)
    assert sampler.kernel == "ard"
    rng = np.random.default_rng(0)
    x = rng.random((80, 2))
    y = (np.sin(5 * x[:, 0]) if signal else 0.0) + 0.05 * rng.standard_normal(80)
    optimised = []
    for n in range(2, 81):
        before = sampler._ard_opt.get(0)
        gp = sampler._gp(0, x[:n], y[:n], np.arange(n))
        after = sampler._ard_opt[0]
        if before is None or after is not before:
            optimised.append(n)
        else:  # the last optimisation's hyperparameters, refactored on the new looks
            assert gp.theta is not None
            np.testing.assert_array_equal(gp.theta, before[1])
    # every n up to 32, then 36 (>= 1.1 x 32 = 35.2), 40, 44, 49, 54, 60, 66, 73, 81 > 80
    want, last = list(range(2, hvi_mod.ARD_REFIT_ALWAYS + 1)), hvi_mod.ARD_REFIT_ALWAYS
    for n in range(hvi_mod.ARD_REFIT_ALWAYS + 1, 81):
        if n >= hvi_mod.ARD_REFIT_GROWTH * last:
            want.append(n)
            last = n
    assert optimised == want
    assert want[-4:] == [54, 60, 66, 73]
    theta = sampler._ard_opt[0][1]
    if signal:  # the model found that z does not matter
        assert theta[1] > theta[0] + 1.0
    else:
        assert np.exp(theta[-1]) == pytest.approx(max(NOISES))


def test_ard_reoptimises_when_the_noise_range_moves() -> None:
    """A noise floor that rises (a candidate's second look) changes the noise range: the
    last hyperparameters no longer apply, whatever the number of looks."""
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    sampler = HVISampler(search_space=space, noise=True, noise_floor=True)
    rng = np.random.default_rng(1)
    x = rng.random((40, 1))
    y = np.sin(4 * x[:, 0]) + 0.1 * rng.standard_normal(40)
    sampler._gp(0, x[:36], y[:36], np.arange(36))
    first = sampler._ard_opt[0]
    sampler._gp(0, x[:37], y[:37], np.arange(37))  # one look more, same range: kept
    assert sampler._ard_opt[0] is first
    x2 = np.vstack([x[:37], x[:1]])  # candidate 0 looked at again, 0.5 off
    y2 = np.r_[y[:37], y[0] + 0.5]
    gp = sampler._gp(0, x2, y2, np.r_[np.arange(37), 0])
    assert sampler._ard_opt[0] is not first
    assert sampler._ard_opt[0][2] != first[2]
    assert gp.noise >= min(sampler._ard_opt[0][2]) * (1 - 1e-9)


def test_iso_kernel_is_the_grid_gp() -> None:
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    x = np.linspace(0, 1, 12)[:, None]
    y = np.sin(4 * x[:, 0])
    gp = HVISampler(search_space=space, kernel="iso")._gp(0, x, y, np.arange(12))
    ref = fit_gp(x, y, NOISES)
    assert gp.inv_ls is None
    assert (gp.length_scale, gp.noise) == (ref.length_scale, ref.noise)
