"""Repeats in their one module: the look group, the look's seed (the table's too), the mean
and std of a candidate's looks, the merged candidate results and the one feasible front."""

from __future__ import annotations

import math
from typing import Any

import pytest

from nas_dil.search.looks import (
    LookCounter,
    confirmed,
    count_looks,
    feasible_front,
    look_group,
    look_seed,
    merge_looks,
    needs_looks,
    pooled_noise,
    std,
    table_seed,
    within_noise,
)
from nas_dil.search.records import Objective, StoredTrial, TrialRecord

OBJS = [Objective("miou", "maximize"), Objective("rf", "maximize")]


def _trial(number: int, miou: float, rf: float = 10.0, infeasible: bool = False,
           **attrs: Any) -> StoredTrial:
    return StoredTrial(number, "complete", (miou, rf), TrialRecord.from_attrs(
        {"miou": miou, **attrs}), {"max_gflops": 1.0 if infeasible else -1.0})


@pytest.mark.parametrize(("attrs", "group"), [
    ({"key": "a"}, "a"), ({"key": "a1", "look_of": "a", "look": 1}, "a"),
    ({"key": "a", "reused_from": 3}, None), ({}, None),
])
def test_look_group(attrs: dict[str, Any], group: str | None) -> None:
    assert look_group(TrialRecord.from_attrs(attrs)) == group


@pytest.mark.parametrize(("seeds", "first", "look", "seed"), [
    ([0, 1, 2], 0, 0, 0), ([0, 1, 2], 0, 1, 1), ([0, 1, 2], 1, 2, 0),  # cycles
    ([0, 1, 2], 7, 0, 7), ([0, 1, 2], 7, 1, 1),  # a seed the table lacks starts at its first
])
def test_table_seed(seeds: list[int], first: int, look: int, seed: int) -> None:
    assert table_seed(seeds, first, look) == seed


def test_look_seed_and_counter() -> None:
    assert [look_seed(5, k) for k in range(3)] == [5, 6, 7]
    c = LookCounter()
    assert c.next_look("a") == 0
    c.looked("a")
    c.looked("a")
    assert (c.next_look("a"), c.next_look("b")) == (2, 0)
    assert count_looks(["x", "y", "x"]) == {"x": 2, "y": 1}


@pytest.mark.parametrize(("ys", "sd"), [([0.6, 0.3, 0.45], 0.15), ([1.0, 3.0], 2 ** 0.5)])
def test_std_is_the_sample_std(ys: list[float], sd: float) -> None:
    assert std(ys) == pytest.approx(sd)


def test_merge_looks_averages_each_candidate_and_leaves_the_rest() -> None:
    trials = [_trial(0, 0.6, key="a"), _trial(1, 0.5, key="b"),
              _trial(2, 0.3, key="a1", look_of="a", look=1, weights="weights/trial_2.pt"),
              _trial(3, 0.5, key="b", reused_from=1),
              _trial(4, 0.45, key="a2", look_of="a", look=2)]
    out = merge_looks(trials, OBJS)
    assert [r.number for r in out] == [2, 1]  # a sits where its first look was; 3 is b
    a = out[0]
    assert a.values == pytest.approx([0.45, 10.0]) and a.get("miou") == pytest.approx(0.45)
    assert a.n_looks == 3 and [t.number for t in a.looks] == [0, 2, 4]
    assert a.std == {"miou": pytest.approx(0.15)}  # (n - 1): std of .6 .3 .45
    assert a.representative is trials[2]  # the look with weights
    assert out[1].looks == (trials[1],) and out[1].values == trials[1].values
    assert out[1].std == {} and out[1].get("miou") == 0.5
    assert trials[2].values == (0.3, 10.0)  # the stored trials are not touched


def test_a_reused_duplicate_is_its_twins_candidate_not_a_look() -> None:
    """A study seen in a real run (hdc_vs_free, NSGA-II): #164 reused #106's result; the
    confirmation added looks at seeds 2 and 3 to #106's candidate, and its mean fell below
    #106's single value, which the duplicate still carried alone: the duplicate took the
    front, one seed, the confirmed candidate gone from it. The duplicate is the candidate."""
    trials = [_trial(106, 0.9548, key="a"),
              _trial(164, 0.9548, key="a", reused_from=106),
              _trial(199, 0.9563, key="a2", look_of="a", look=2),
              _trial(200, 0.9521, key="a3", look_of="a", look=3)]
    out = merge_looks(trials, OBJS)
    assert len(out) == 1 and [t.number for t in out[0].looks] == [106, 199, 200]
    assert out[0].values[0] == pytest.approx((0.9548 + 0.9563 + 0.9521) / 3)
    assert [r.number for r in feasible_front(out, OBJS)] == [106]
    # a duplicate whose twin is not among the trials (a twin not COMPLETE) stands alone
    alone = merge_looks([trials[1], _trial(7, 0.5, key="b")], OBJS)
    assert [r.number for r in alone] == [164, 7] and alone[0].n_looks == 1


def test_feasible_front_over_merged_candidates() -> None:
    trials = [_trial(0, 0.9, 10.0, key="a"), _trial(1, 0.6, 20.0, key="b"),
              _trial(2, 0.95, 30.0, infeasible=True, key="c"),
              _trial(3, 0.3, 10.0, key="a1", look_of="a", look=1)]
    front = feasible_front(merge_looks(trials, OBJS), OBJS)
    assert [r.number for r in front] == [1]  # a's mean 0.6 at RF 10 is dominated by b
    front = feasible_front(merge_looks(trials[:3], OBJS), OBJS)
    assert [r.number for r in front] == [0, 1]  # c dominates both but is infeasible


@pytest.mark.parametrize(("looks", "noise"), [
    ([[0.5]], None),  # one look each: unknown
    ([[0.5], [0.6, 0.7]], math.sqrt(0.005)),
    ([[0.1, 0.3], [0.6, 0.7, 0.8]], math.sqrt((0.02 + 2 * 0.01) / 3)),
])
def test_pooled_noise_by_hand(looks: list[list[float]], noise: float | None) -> None:
    objs = [Objective("miou", "maximize")]
    flat = [(g, i, y) for g, ys in enumerate(looks) for i, y in enumerate(ys)]
    trials = [StoredTrial(n, "complete", (y,),
                          TrialRecord(key=f"c{g}#{i}" if i else f"c{g}", look=i or None,
                                      look_of=f"c{g}" if i else None))
              for n, (g, i, y) in enumerate(flat)]
    got = pooled_noise(merge_looks(trials, objs))
    assert (None if got is None else got.std) == (
        None if noise is None else pytest.approx(noise))


def test_within_noise_needs_a_known_noise() -> None:
    assert within_noise([], [], [Objective("miou", "maximize")], None) == {}


def test_within_noise_by_hand() -> None:
    """Front #0 (0.80, rf 10) leads the dominated #1 (0.79, rf 10: same cost) by 0.01 < noise
    0.02; #2 (0.70, rf 10) is beyond it; #3 (0.795, rf 5) costs less RF, so is not "at no worse
    cost" (a worse rf). Front #4 (0.60, rf 20): no dominated trial has an rf as good."""
    rs = merge_looks([_trial(0, 0.80), _trial(1, 0.79), _trial(2, 0.70), _trial(3, 0.795, 5.0),
                      _trial(4, 0.60, 20.0)], OBJS)
    front = feasible_front(rs, OBJS)
    assert [r.number for r in front] == [0, 4]
    assert within_noise(front, rs, OBJS, 0.02) == {0: 1}
    assert within_noise(front, rs, OBJS, 0.2) == {0: 1}  # the closest; #4 has none


def _looks(group: str, first: int, mious: list[float], rf: float = 10.0) -> list[StoredTrial]:
    """The looks of one candidate (group ``group``), trial numbers from ``first``."""
    return [_trial(first + i, m, rf, key=group if not i else f"{group}{i}", seed=i,
                   **({"look": i, "look_of": group} if i else {}))
            for i, m in enumerate(mious)]


@pytest.mark.parametrize(("cands", "sd", "dof", "n"), [
    # one candidate, 3 looks: its own sample std (0.15, dof 2)
    ([[0.6, 0.3, 0.45]], 0.15, 2, 1),
    # two candidates: s² 0.0225 (dof 2) and 2 (dof 1): sqrt((2·0.0225 + 1·2) / 3)
    ([[0.6, 0.3, 0.45], [1.0, 3.0]], ((2 * 0.0225 + 2.0) / 3) ** 0.5, 3, 2),
    # a single look adds nothing
    ([[0.6, 0.3, 0.45], [0.9]], 0.15, 2, 1),
    ([[0.6], [0.9]], None, 0, 0),  # no candidate with two looks: unknown
])
def test_pooled_noise(cands: list[list[float]], sd: float | None, dof: int, n: int) -> None:
    trials = [t for i, ys in enumerate(cands) for t in _looks(f"c{i}", 10 * i, ys)]
    noise = pooled_noise(merge_looks(trials, OBJS))
    if sd is None:
        assert noise is None
        return
    assert noise is not None
    assert (noise.std, noise.dof, noise.n_candidates) == (pytest.approx(sd), dof, n)
    assert noise.to_dict()["name"] == "miou"


def test_a_candidates_seeds_and_per_look_values() -> None:
    (r,) = merge_looks(_looks("a", 0, [0.6, 0.3, 0.45]), OBJS)
    assert r.seeds == (0, 1, 2) and r.look_values("miou", OBJS) == (0.6, 0.3, 0.45)
    assert confirmed(r, 3) and not confirmed(r, 4)


def test_needs_looks_counts_looks_and_pending_ones_per_group() -> None:
    # a: 3 looks (confirmed at 3); b: 1 look; c: 2 looks, 1 pending; all on the front
    trials = (_looks("a", 0, [0.5, 0.5, 0.5], rf=30.0) + _looks("b", 10, [0.9], rf=10.0)
              + _looks("c", 20, [0.7, 0.7], rf=20.0))
    results = merge_looks(trials, OBJS)
    front = feasible_front(results, OBJS)
    assert len(front) == 3
    need = needs_looks(front, results, 3, {"c": 1})
    assert [(r.record.key, n) for r, n in need] == [("b", 2)]
    assert [(r.record.key, n) for r, n in needs_looks(front, results, 3, {})] == [
        ("b", 2), ("c", 1)]
    assert needs_looks(front, results, 1, {}) == []
