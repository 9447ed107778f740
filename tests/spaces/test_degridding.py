"""Degridding search dimensions in a space (smooth, tail, per_axis): parse, count = enumerate,
samples are members, old spaces and candidates unchanged."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import optuna
import pytest

from nas_dil.schedule import Schedule, coverage
from nas_dil.spaces import Candidate, SpaceError, load_space, space_from_dict
from tests.spaces._util import SHIPPED

FREE: dict[str, Any] = {"depth": {"min": 1, "max": 3}, "kernel": [3], "output_stride": [8],
                        "width": [16], "rates": {"rule": "free", "choices": [1, 2, 3]}}
HDC: dict[str, Any] = {"kernel": [3, 5], "output_stride": [8], "width": [16],
                       "rates": {"rule": "hdc", "choices": [1, 2, 3, 5], "repeats": {"min": 1,
                                                                                      "max": 2}}}
OPTS: dict[str, Any] = {"smooth": [False, True], "tail": [[], [2, 1]], "per_axis": True}


@pytest.mark.parametrize("table", [
    {**FREE, **OPTS},
    {**FREE, **OPTS, "require_gridding_free": True},
    {**HDC, **OPTS},
    {**FREE, "smooth": True},
    {**HDC, "tail": [[1], [2, 1], [3, 2, 1]]},
])
def test_count_is_enumerate_and_samples_are_members(table: dict[str, Any]) -> None:
    space = space_from_dict(table)
    all_ = list(space.enumerate())
    assert len(all_) == len(set(all_)) == space.count()
    assert all(space.contains(c) for c in all_)
    keys = {c.key() for c in all_}
    assert len(keys) == len(all_) and all(Candidate.from_key(k) in set(all_) for k in keys)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(40):
        trial = study.ask()
        c = space.sample(trial)
        assert space.contains(c) and Candidate.from_dict(trial.user_attrs["candidate"]) == c
        if space.config.require_gridding_free:
            assert coverage(Schedule(c.rates, (c.kernel,))).gridding_free
            if c.rates_w:
                assert coverage(Schedule(c.rates_w, (c.kernel,))).gridding_free
        study.tell(trial, 0.0)
    drawn = space.draw(50, np.random.default_rng(0))
    assert all(space.contains(c) for c in drawn)


def test_counts_by_hand() -> None:
    # free, depth 1-3, 3 choices: per-axis squares each depth's count (3² + 9² + 27²),
    # times 2 smoothing choices and 2 tails
    assert space_from_dict({**FREE, **OPTS}).count() == (9 + 81 + 729) * 4
    assert space_from_dict({**FREE, "tail": [[], [1], [2, 1]]}).count() == (3 + 9 + 27) * 3


def test_sampled_candidates_carry_every_dimension() -> None:
    space = space_from_dict({**FREE, **OPTS})
    seen = space.draw(200, np.random.default_rng(3))
    assert {c.smooth for c in seen} == {False, True}
    assert {c.tail for c in seen} == {(), (2, 1)}
    assert any(c.rates_w for c in seen) and any(not c.rates_w for c in seen)
    c = next(c for c in seen if c.rates_w and c.smooth and c.tail)
    s = c.schedule
    assert s.tail == 2 and s.rates_w == c.rates_w + c.tail and s.rates == c.rates + c.tail
    assert space.describe()["params"]["tail"] == ["none", "2-1"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_unchanged(name: str) -> None:
    space = load_space(name)
    assert not space.config.degridding
    d = space.describe()
    assert not {"smooth", "tail", "per_axis"} & set(d) and not {"smooth", "tail"} & set(
        d["params"])
    for c in space.draw(30, np.random.default_rng(0)):
        assert c.plain and set(c.to_dict()) == {"rates", "kernel", "output_stride", "width"}


def test_old_candidate_dicts_and_keys_read_back_equal() -> None:
    old = {"rates": [1, 2, 5], "kernel": 3, "output_stride": 8, "width": 32}
    c = Candidate.from_dict(json.loads(json.dumps(old)))
    assert c.to_dict() == old and c.key() == "r=1-2-5|k=3|os=8|w=32"
    assert c == Candidate((1, 2, 5), 3, 8, 32) and c.schedule.to_dict() == {
        "rates": [1, 2, 5], "kernels": [3, 3, 3], "strides": [1, 1, 1]}


@pytest.mark.parametrize(("extra", "key", "text"), [
    ({"smooth": "yes"}, "smooth", "true, false"),
    ({"smooth": [True, True]}, "smooth", "duplicate"),
    ({"tail": [2, 1]}, "tail", "list of rate lists"),
    ({"tail": [[2, 0]]}, "tail[0]", "integer"),
    ({"tail": [[1], [1]]}, "tail[1]", "duplicate"),
    ({"tail": [[1] * 9]}, "tail[0]", "at most 8"),
    ({"per_axis": 1}, "per_axis", "true or false"),
])
def test_bad_degridding_keys(extra: dict[str, Any], key: str, text: str) -> None:
    with pytest.raises(SpaceError) as info:
        space_from_dict({**FREE, **extra}, "x.toml")
    msg = str(info.value)
    assert msg.startswith(f"x.toml: {key}: ") and text in msg and "\n" not in msg


@pytest.mark.parametrize(("args", "key"), [
    (((1, 2), 3, 8, 16, (1,)), "rates_w"),
    (((1, 2), 3, 8, 16, (), 1), "smooth"),
    (((1, 2), 3, 8, 16, (), False, (0,)), "tail"),
])
def test_invalid_degridding_candidates(args: tuple, key: str) -> None:
    with pytest.raises(SpaceError, match=rf"^candidate: {key}: "):
        Candidate(*args)


@pytest.mark.parametrize("table", [
    {**FREE, **OPTS},
    {**FREE, **OPTS, "require_gridding_free": True},
    {**HDC, **OPTS},
    {**HDC, "tail": [[1], [2, 1], [3, 2, 1]]},
])
def test_params_for_inverts_sample_with_degridding_dimensions(table: dict[str, Any]) -> None:
    space = space_from_dict(table)
    for cand in list(space.enumerate())[::7]:
        params = space.params_for(cand)
        assert params is not None
        trial = optuna.trial.FixedTrial(params)
        assert space.sample(trial) == cand
