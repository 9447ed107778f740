"""Property tests: sampled candidates obey their space and rule; the gapfree repair; seeds."""

from __future__ import annotations

import itertools

import optuna
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_dil.schedule import coverage, hdc_report
from nas_dil.spaces import (
    Candidate,
    Space,
    SpaceError,
    is_hole_free,
    load_space,
    repair_gapfree,
)
from nas_dil.spaces import sample_candidates as sample
from nas_dil.spaces.config import ExponentialRates, HDCRates, MultigridRates

from ._util import SHIPPED, make_space

FAST = settings(max_examples=10, deadline=None)
SPACES = {name: load_space(name) for name in SHIPPED}
optuna.logging.set_verbosity(optuna.logging.WARNING)


def obeys_rule(space: Space, c: Candidate) -> bool:
    """The rule, checked from its definition (not through the space's own tables)."""
    cfg, opts, r = space.config, space.config.rates, c.rates
    if cfg.depth is not None and len(r) not in cfg.depth:
        return False
    if cfg.require_gridding_free and not coverage(c.schedule).gridding_free:
        return False
    if isinstance(opts, HDCRates):
        rep = hdc_report(r, c.kernel)
        g = rep.groups[0]
        return (rep.rule1_groups.passed and rep.rule2.passed and rep.rule3.passed
                and len(set(rep.groups)) == 1 and g[0] == 1 and len(g) in opts.group_size
                and all(a < b for a, b in itertools.pairwise(g))
                and set(r) <= set(opts.choices) and coverage(c.schedule).gridding_free)
    if isinstance(opts, ExponentialRates):
        return any(r == (1,) * a + tuple(b**i for i in range(n)) + (1,) * z
                   for b, n, a, z in itertools.product(opts.base, opts.levels.values(),
                                                       opts.leading, opts.trailing))
    if isinstance(opts, MultigridRates):
        return any(r == tuple(g * b for g in grid) * n
                   for grid, b, n in itertools.product(opts.grid, opts.base_rate,
                                                       opts.repeats.values()))
    return set(r) <= set(opts.choices)  # free, gapfree (gridding checked above)


@FAST
@given(name=st.sampled_from(SHIPPED), seed=st.integers(0, 2**31 - 1))
def test_every_sample_of_every_shipped_space_is_valid(name: str, seed: int) -> None:
    space = SPACES[name]
    for c in sample(space, 12, seed):
        assert space.contains(c), c
        assert obeys_rule(space, c), c
        if name in ("hdc", "gapfree"):
            assert coverage(c.schedule).gridding_free


def test_same_seed_same_samples_different_seed_different() -> None:
    for name, space in SPACES.items():
        a = sample(space, 20, 7)
        assert a == sample(name, 20, 7)
        assert a != sample(space, 20, 8), name  # 20 draws from >= 32 candidates
    assert sample("hdc", 0, 1) == []


def _tpe_run(space: Space, seed: int) -> list[Candidate]:
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4), direction="maximize")
    out = []
    for _ in range(10):
        trial = study.ask()
        c = space.sample(trial)
        assert trial.user_attrs["candidate"] == c.to_dict()
        assert isinstance(trial.user_attrs["repaired"], bool)
        out.append(c)
        study.tell(trial, float(coverage(c.schedule).rf))
    return out


def test_tpe_with_a_seed_is_deterministic() -> None:
    for name in ("gapfree", "hdc"):
        assert _tpe_run(SPACES[name], 3) == _tpe_run(SPACES[name], 3)


# -- the gapfree repair -----------------------------------------------------------------------

choice_sets = st.lists(st.integers(2, 24), max_size=6, unique=True).map(lambda c: [1, *c])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), choices=choice_sets, kernel=st.sampled_from([1, 3, 5, 7]))
def test_repair_is_valid_and_identity_on_valid(data: st.DataObject, choices: list[int],
                                               kernel: int) -> None:
    rates = tuple(data.draw(st.lists(st.sampled_from(choices), min_size=1, max_size=7)))
    fixed = repair_gapfree(rates, choices, kernel)
    assert len(fixed) == len(rates) and set(fixed) <= set(choices)
    assert coverage(Candidate(fixed, kernel, 8, 1).schedule).gridding_free
    assert repair_gapfree(fixed, choices, kernel) == fixed  # identity on valid inputs
    if is_hole_free(rates, kernel):
        assert fixed == rates


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_gapfree_sample_via_raw_params(data: st.DataObject) -> None:
    space = SPACES["gapfree"]
    cfg = space.config
    depth = data.draw(st.integers(cfg.depth.min, cfg.depth.max))  # type: ignore[union-attr]
    raw = [data.draw(st.sampled_from(cfg.rates.choices)) for _ in range(depth)]
    params = {"kernel": 3, "output_stride": 8, "width": 16, "depth": depth,
              **{f"r{i + 1}": r for i, r in enumerate(raw)}}
    trial = optuna.trial.FixedTrial(params)
    c = space.sample(trial)
    assert space.contains(c) and obeys_rule(space, c)
    assert trial.user_attrs["repaired"] == (c.rates != tuple(raw))
    assert trial.user_attrs["repaired"] == (not is_hole_free(raw, 3))


# -- random small configs ---------------------------------------------------------------------

@FAST
@given(choices=st.lists(st.integers(2, 12), max_size=5, unique=True).map(lambda c: [1, *c]),
       kernel=st.sampled_from([3, 5]), lo=st.integers(2, 4), span=st.integers(0, 4))
def test_hdc_inside_gapfree(choices: list[int], kernel: int, lo: int, span: int) -> None:
    top = {"depth": {"min": lo, "max": lo + span}, "kernel": kernel}
    try:
        hdc = make_space("hdc", top, choices=choices)
    except SpaceError:  # e.g. no group fits: an empty space is a load error, fine here
        return
    gap = make_space("gapfree", top, choices=choices)
    for c in hdc.enumerate():
        assert gap.contains(c)


@FAST
@given(rule=st.sampled_from(["free", "gapfree"]),
       choices=st.lists(st.integers(2, 9), max_size=3, unique=True).map(lambda c: [1, *c]),
       kernel=st.sampled_from([3, 5]), depth=st.integers(1, 3))
def test_count_equals_enumerate_random(rule: str, choices: list[int], kernel: int,
                                       depth: int) -> None:
    s = make_space(rule, {"depth": {"min": 1, "max": depth}, "kernel": kernel}, choices=choices)
    all_ = list(s.enumerate())
    assert len(all_) == len(set(all_)) == s.count()
    brute = sum(1 for d in range(1, depth + 1) for r in itertools.product(choices, repeat=d)
                if rule == "free" or is_hole_free(r, kernel))
    assert s.count() == brute
