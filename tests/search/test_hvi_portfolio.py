"""The hvi sampler's one-step-ahead model check (nas_dil/search/hvi_portfolio.py): the log
density, which looks are scored, when the model counts as poor, and that ``explore = 0``
leaves the sampler's choices as they were."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from nas_dil.search.hvi import HVISampler
from nas_dil.search.hvi_portfolio import Calibration, log_density
from nas_dil.search.surrogate import fit_gp


@pytest.mark.parametrize(("y", "mu", "var", "expected"), [
    (0.0, 0.0, 1.0, -0.5 * math.log(2 * math.pi)),
    (2.0, 0.0, 1.0, -0.5 * math.log(2 * math.pi) - 2.0),
    (1.0, 0.0, 4.0, -0.5 * math.log(8 * math.pi) - 0.125),
])
def test_log_density_by_hand(y: float, mu: float, var: float, expected: float) -> None:
    got = log_density(np.array([y]), np.array([mu]), np.array([var]))
    assert got[0] == pytest.approx(expected)


def _line(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 1.0, n)[:, None]
    return x, np.sin(3.0 * x[:, 0])[:, None]


def test_a_smooth_landscape_is_predicted_better_than_the_mean() -> None:
    x, y = _line(12)
    cal = Calibration(share=0.5, window=6)
    keys = list(range(12))
    old = np.arange(0, 12, 2)
    cal.score([None], [keys[i] for i in old], x[old], y[old])  # no model yet: marked only
    assert cal.gaps == []
    gp = fit_gp(x[old], y[old, 0])
    cal.score([gp], keys, x, y)  # the 6 new looks, by the GP that did not see them
    assert len(cal.gaps) == 6 and min(cal.gaps) > 0 and not cal.poor()
    cal.score([gp], keys, x, y)  # nothing new: nothing scored twice
    assert len(cal.gaps) == 6


def test_a_look_the_model_got_badly_wrong_makes_it_poor() -> None:
    x, y = _line(9)
    gp = fit_gp(x[:8], y[:8, 0], (1e-3,))
    cal = Calibration(share=0.5, window=1)
    keys = list(range(9))
    cal.score([None], keys[:8], x[:8], y[:8])
    y_bad = y.copy()
    y_bad[8, 0] = -5.0  # far from the smooth curve and from the mean
    cal.score([gp], keys, x, y_bad)
    assert len(cal.gaps) == 1 and cal.gaps[0] < 0 and cal.poor()
    # while poor, asks go to the random order with probability share
    rng = np.random.default_rng(0)
    share = np.mean([cal.explore(rng) for _ in range(2000)])
    assert share == pytest.approx(0.5, abs=0.05)


def test_too_few_looks_or_share_zero_never_explore() -> None:
    cal = Calibration(share=1.0, window=8)
    cal.gaps = [-1.0] * 7
    assert not cal.poor()
    cal.gaps.append(-1.0)
    assert cal.poor() and cal.explore(np.random.default_rng(0))
    off = Calibration(share=0.0)
    off.gaps = [-1.0] * 8
    assert not off.explore(np.random.default_rng(0))


def _choices(**options: object) -> list[tuple[int, int]]:
    space = {"a": optuna.distributions.IntDistribution(0, 7),
             "b": optuna.distributions.IntDistribution(0, 7)}
    sampler = HVISampler(search_space=space, known_objectives=lambda p: [float(p["a"])],
                         seed=3, n_startup=4, **options)  # type: ignore[arg-type]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    out = []
    rng = np.random.default_rng(1)  # a landscape with no structure: noise only
    table = rng.normal(size=(8, 8))
    for _ in range(20):
        t = study.ask()
        a, b = t.suggest_int("a", 0, 7), t.suggest_int("b", 0, 7)
        out.append((a, b))
        study.tell(t, [float(table[a, b]), float(a)])
    return out


def test_explore_zero_is_the_sampler_as_before_and_a_share_changes_choices() -> None:
    assert _choices() == _choices(explore=0.0)
    assert _choices(explore=1.0) != _choices()
    assert len(set(_choices(explore=1.0))) == 20  # the random order never repeats either
