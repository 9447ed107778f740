"""A space bound to a training crop (`Space.live`, ``avoid_dead_taps``) admits exactly the
candidates without dead stack taps there: against brute force (`batch_candidate_crop` of
every candidate of the unbound space), for every rule and the degridding dimensions; sampling,
drawing and `params_for` stay inside it; an unbound space is unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest

from nas_dil.spaces import (
    SpaceError,
    batch_candidate_crop,
    live_rate_cap,
    load_space,
    space_from_dict,
    stem_map,
)

FREE: dict[str, Any] = {"depth": {"min": 1, "max": 3}, "kernel": [3, 5], "output_stride": [4, 8],
                        "width": [16], "rates": {"rule": "free", "choices": [1, 2, 3, 5, 9]}}
GAPFREE: dict[str, Any] = {**FREE, "rates": {"rule": "gapfree", "choices": [1, 2, 3, 5, 9]}}
HDC: dict[str, Any] = {"kernel": [3, 5], "output_stride": [4, 8, 16], "width": [16],
                       "rates": {"rule": "hdc", "choices": [1, 2, 3, 5, 9],
                                 "repeats": {"min": 1, "max": 2}}}
EXPO: dict[str, Any] = {"kernel": [3], "output_stride": [4, 8], "width": [8, 16],
                        "rates": {"rule": "exponential", "base": [2, 3],
                                  "levels": {"min": 2, "max": 4}}}
DEGRID: dict[str, Any] = {**FREE, "depth": {"min": 1, "max": 2}, "kernel": [3],
                          "rates": {"rule": "free", "choices": [1, 2, 5, 9]},
                          "smooth": [False, True], "tail": [[], [2, 1], [4, 2]],
                          "per_axis": True}

TABLES = {"free": FREE, "gapfree": GAPFREE, "hdc": HDC, "exponential": EXPO, "degrid": DEGRID}


def sides(space_table: dict[str, Any], h: int, w: int) -> dict[int, tuple[int, int]]:
    return {o: stem_map(o, h, w) for o in space_table["output_stride"]}


def live_by_brute_force(table: dict[str, Any], h: int, w: int) -> list[Any]:
    """Every candidate of the unbound space whose stack has no dead tap at h×w."""
    full = list(space_from_dict(table).enumerate())
    dead = batch_candidate_crop(full, h, w)["dead_taps"]
    return [c for c, d in zip(full, dead.tolist(), strict=True) if d == 0]


@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("crop", [(48, 48), (24, 24), (40, 40)])
def test_live_is_brute_force(name: str, crop: tuple[int, int]) -> None:
    table = TABLES[name]
    try:
        space = space_from_dict(table).live(sides(table, *crop))
    except SpaceError:  # wholly dead at this crop: brute force must agree
        assert live_by_brute_force(table, *crop) == []
        return
    got = list(space.enumerate())
    want = live_by_brute_force(table, *crop)
    assert got == want  # same set, same order as the unbound enumeration
    assert space.count() == len(want)
    assert all(space.contains(c) for c in got)
    dead = set(space_from_dict(table).enumerate()) - set(got)
    assert not any(space.contains(c) for c in dead)


def test_non_square_crops_are_conservative_for_per_axis_only() -> None:
    # square rates on a 64×24 crop: exact (both axes must be live)
    table = FREE
    got = list(space_from_dict(table).live(sides(table, 64, 24)).enumerate())
    assert got == live_by_brute_force(table, 64, 24)
    # per-axis rates take the smaller side's cap on both axes: a subset of the live ones
    got = set(space_from_dict(DEGRID).live(sides(DEGRID, 64, 24)).enumerate())
    want = set(live_by_brute_force(DEGRID, 64, 24))
    assert got and got < want


@pytest.mark.parametrize("name", TABLES)
def test_samples_draws_and_params_for_stay_live(name: str) -> None:
    table = TABLES[name]
    space = space_from_dict(table).live(sides(table, 40, 40))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(60):
        trial = study.ask()
        seen.append(space.sample(trial))
        study.tell(trial, 0.0)
    seen += space.draw(60, np.random.default_rng(1))
    assert all(space.contains(c) for c in seen)
    assert not batch_candidate_crop(seen, 40, 40)["dead_taps"].any()
    for c in seen:
        trial = optuna.trial.FixedTrial(space.params_for(c))
        assert space.sample(trial) == c


def test_capped_parameters_are_renamed_by_the_largest_rate_kept() -> None:
    # 40 px crop, K=3: stack maps 10 (os 4) and 5 (os 8): caps 9 and 4
    assert live_rate_cap(3, 8, 40, 40) == (4, 4) and live_rate_cap(3, 4, 40, 40) == (9, 9)
    space = space_from_dict(FREE).live(sides(FREE, 40, 40))
    c8 = next(c for c in space.enumerate() if c.output_stride == 8 and c.kernel == 3
              and c.depth == 2)
    c4 = next(c for c in space.enumerate() if c.output_stride == 4 and c.kernel == 3
              and c.depth == 2)
    assert set(space.params_for(c8)) >= {"r1_le3", "r2_le3"}  # 5 and 9 dropped at os 8
    assert set(space.params_for(c4)) >= {"r1", "r2"}  # nothing dropped at os 4
    # K=5 halves the caps (2 taps each side): os 8 keeps 1, 2; and the strides differ by K
    c5 = next(c for c in space.enumerate() if c.output_stride == 8 and c.kernel == 5)
    assert max(c5.rates) <= 2 and "r1_le2" in space.params_for(c5)


def test_unbound_space_is_unchanged() -> None:
    for name in ("free", "gapfree", "hdc", "exponential", "multigrid"):
        space = load_space(name)
        assert space.sides is None and "live" not in space.describe()
        c = space.draw(1, np.random.default_rng(0))[0]
        assert not any("_le" in k for k in space.params_for(c) or {})


def test_wholly_dead_is_one_line() -> None:
    with pytest.raises(SpaceError, match=r"no candidate of space .* has every tap on the image"):
        space_from_dict(HDC).live(sides(HDC, 8, 8))
