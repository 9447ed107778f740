"""The hvi sampler in a plain Optuna study (no nas-dil space): categorical / int / float
parameters, objectives the user knows as a function of the parameters, the rest measured."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nas_dil.search.hvi import HVISampler, _Pool

optuna.logging.set_verbosity(optuna.logging.WARNING)

FINITE = {"x": IntDistribution(0, 6, step=2), "op": CategoricalDistribution(["a", "b", "c"])}
MIXED = {"x": IntDistribution(1, 64, log=True), "op": CategoricalDistribution(["a", "b", "c"]),
         "lr": FloatDistribution(1e-4, 1e-1, log=True)}


def _cost(p: dict[str, Any]) -> list[float]:
    return [float(p["x"]) + {"a": 0.0, "b": 1.0, "c": 2.0}[p["op"]]]


def _acc(p: dict[str, Any]) -> float:  # the measured objective: best at x = 4, op "b"
    return -((p["x"] - 4.0) ** 2) / 10 - (p["op"] != "b") - abs(np.log10(p.get("lr", 1e-2)) + 2)


def _objective(space: dict[str, Any]) -> Any:
    def f(trial: optuna.Trial) -> tuple[float, float]:
        p = {}
        for n, d in space.items():
            if isinstance(d, CategoricalDistribution):
                p[n] = trial.suggest_categorical(n, d.choices)
            elif isinstance(d, IntDistribution):
                p[n] = trial.suggest_int(n, d.low, d.high, step=d.step, log=d.log)
            else:
                p[n] = trial.suggest_float(n, d.low, d.high, log=d.log)
        return _acc(p), _cost(p)[0]
    return f


def _study(space: dict[str, Any], seed: int = 0, **kw: Any) -> optuna.Study:
    sampler = HVISampler(search_space=space, known_objectives=_cost, seed=seed, **kw)
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def test_finite_space_never_repeats_and_stops_when_exhausted() -> None:
    study = _study(FINITE, n_startup=2)
    study.optimize(_objective(FINITE), n_trials=40)
    keys = [(t.params["x"], t.params["op"]) for t in study.trials]
    assert len(keys) == 12 == len(set(keys))  # 4 x-values x 3 ops, each once, then stop


def test_running_trials_are_not_proposed_again() -> None:
    study = _study(FINITE, n_startup=2)
    for _ in range(3):
        t = study.ask(FINITE)
        study.tell(t, [_acc(t.params), _cost(t.params)[0]])
    asked = [tuple(study.ask(FINITE).params.values()) for _ in range(9)]  # all left running
    assert len(set(asked)) == 9


def test_known_objectives_alone_pick_the_exact_best_improvement() -> None:
    """Both objectives known: the first pick is the one whose box to the reference point is
    largest — on a 1-D cost, the cheapest candidate (x = 0, op a), by hand."""
    sampler = HVISampler(search_space=FINITE, known_objectives=lambda p: [_cost(p)[0], 0.0],
                         seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    t = study.ask(FINITE)
    assert t.params == {"x": 0, "op": "a"}


def test_mixed_space_stays_inside_and_improves_on_the_front() -> None:
    study = _study(MIXED, n_startup=4, pool_size=64)
    study.optimize(_objective(MIXED), n_trials=14)
    sampler = study.sampler
    assert isinstance(sampler, HVISampler)
    for t in study.trials:
        assert all(MIXED[n]._contains(MIXED[n].to_internal_repr(v)) for n, v in t.params.items())
    assert sampler.last_choice["how"] in ("improvement", "uncertainty")
    assert len(sampler._pool.keys) > 64  # sampled: fresh draws and the front's neighbours
    assert len({tuple(t.params.values()) for t in study.trials}) == 14


def test_same_seed_same_choices() -> None:
    def run(seed: int) -> list[tuple[Any, ...]]:
        study = _study(MIXED, seed=seed, n_startup=3, pool_size=64)
        study.optimize(_objective(MIXED), n_trials=8)
        return [tuple(t.params.values()) for t in study.trials]

    assert run(1) == run(1) != run(2)


def test_the_gp_is_refitted_only_when_a_trial_finishes() -> None:
    study = _study(FINITE, n_startup=2)
    study.optimize(_objective(FINITE), n_trials=4)
    sampler = study.sampler
    assert isinstance(sampler, HVISampler)
    fits = sampler.n_fits
    for _ in range(3):  # asks with trials in flight and no finish: the same GP
        study.ask(FINITE)
    assert sampler.n_fits == fits + 1  # one refit for the fourth trial's result, then none


def test_running_trials_are_read_once() -> None:
    """A running trial's candidate is parsed from storage once, not at every ask (16 in
    flight: 16 parses per ask); a finished one's once more, with its values."""
    study = _study(FINITE, n_startup=2)
    sampler = study.sampler
    assert isinstance(sampler, HVISampler)
    read, key_of = [], sampler.domain.key_of

    def counted(t: Any) -> Any:
        read.append(t.number)
        return key_of(t)

    sampler.domain.key_of = counted  # type: ignore[method-assign]
    for _ in range(2):
        t = study.ask(FINITE)
        study.tell(t, [_acc(t.params), _cost(t.params)[0]])
    for _ in range(6):  # all left running
        study.ask(FINITE)
    # trials 0 and 1: while being told (the exhausted-space check) and once finished;
    # the running 2-6 once each, at the next ask (7, just asked, is not read yet)
    assert sorted(read) == [0, 0, 1, 1, 2, 3, 4, 5, 6]


def test_the_choice_runs_on_one_blas_thread_and_restores_it() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"]

    study = _study(FINITE, n_startup=2)
    sampler = study.sampler
    assert isinstance(sampler, HVISampler)
    during, choose = [], sampler._choose

    def watched(*args: Any) -> Any:
        during.append(blas_threads())
        return choose(*args)

    sampler._choose = watched  # type: ignore[method-assign]
    before = blas_threads()
    study.optimize(_objective(FINITE), n_trials=4)
    assert before and during and all(n and set(n) == {1} for n in during)
    assert blas_threads()[: len(before)] == before


def test_scipy_blas_is_limited_too_when_it_loads_after_numpy() -> None:
    """The ARD kernel's optimiser (scipy) brings its own OpenBLAS; in a fresh process, where
    scipy is not loaded before the first ask, it too runs on one thread during the choice
    (a controller built before scipy loaded did not see it: 2x the CPU per ask)."""
    pytest.importorskip("threadpoolctl")
    import subprocess
    import sys

    code = """
import sys, optuna, threadpoolctl
from optuna.distributions import FloatDistribution
from nas_dil.search.hvi import HVISampler
assert "scipy" not in sys.modules
optuna.logging.set_verbosity(optuna.logging.WARNING)
space = {"x": FloatDistribution(0, 1), "z": FloatDistribution(0, 1)}
s = HVISampler(search_space=space, known_objectives=lambda p: [p["z"]], n_startup=2, seed=0)
seen = []
choose = s._choose
def watched(*a):
    seen.append([(lib["filepath"], lib["num_threads"]) for lib in threadpoolctl.threadpool_info()
                 if lib["user_api"] == "blas"])
    return choose(*a)
s._choose = watched
study = optuna.create_study(directions=["minimize", "minimize"], sampler=s)
study.optimize(lambda t: [(t.suggest_float("x", 0, 1) - 0.3) ** 2, t.suggest_float("z", 0, 1)],
               n_trials=5)
loaded = {lib["filepath"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}
assert all({f for f, _ in libs} == loaded for libs in seen[2:]), (seen, loaded)  # scipy's too
assert all(n == 1 for libs in seen for _, n in libs), seen
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "OPENBLAS_NUM_THREADS": "2"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("parts", [
    [(8, 16)],  # at once
    [(8, 16), (8, 16), (1, 64), (8, 16), (2, 32)],  # inside the range, beyond it, inside
    [(1, 64), (8, 8), (16, 16), (4, 32)],  # the whole range first: new rows scaled alone
])
def test_pool_grown_in_parts_equals_the_pool_built_at_once(
        parts: list[tuple[int, int]]) -> None:
    """The pool's arrays (known losses, features scaled over the pool, feasible, proposable)
    after several additions equal those of one pool given every candidate at once, bit for
    bit: growing it in parts (as a sampled pool grows at every ask) changes no choice."""
    study = _study(MIXED)
    sampler = study.sampler
    assert isinstance(sampler, HVISampler)
    dom = sampler.domain
    dom.bind(study)
    rng = np.random.default_rng(0)
    grown, keys = _Pool(dom), []
    for lo, hi in parts:
        part = [(int(x), op, float(lr)) for x, op, lr in zip(
            rng.integers(lo, hi + 1, 40), rng.choice(["a", "b", "c"], 40),
            rng.uniform(1e-4, 1e-1, 40), strict=True)]
        grown.add(part, dom.params(part))
        grown.arrays()
        keys += part
    whole = _Pool(dom)
    whole.add(keys, dom.params(keys))
    assert grown.keys == whole.keys
    for a, b in zip(grown.arrays(), whole.arrays(), strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_known_index_names_which_objectives_are_known() -> None:
    # the known objective first: cost minimised, accuracy (measured) maximised
    sampler = HVISampler(search_space=FINITE, known_objectives=_cost, known_index=[0],
                         n_startup=2, seed=0)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    obj = _objective(FINITE)
    study.optimize(lambda t: obj(t)[::-1], n_trials=5)
    assert sampler.domain.measured == [1]


@pytest.mark.parametrize(("kw", "match"), [
    ({}, "needs the study's context .* or a search_space"),
    ({"search_space": {"x": "ints"}}, r"search_space\['x'\] = 'ints': expected"),
    ({"search_space": FINITE, "known_objectives": 3}, "known_objectives = 3: must be a callable"),
])
def test_bad_arguments_are_one_line_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HVISampler(**kw)


def test_bad_known_index_is_one_line_at_the_first_ask() -> None:
    sampler = HVISampler(search_space=FINITE, known_objectives=_cost, known_index=[2])
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    with pytest.raises(ValueError, match=r"known_index = \[2\]: must be distinct objective"):
        study.ask(FINITE)
