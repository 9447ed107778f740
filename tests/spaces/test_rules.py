"""Hand-computed rate tables per rule, the gapfree repair, counting and enumeration."""

from __future__ import annotations

import itertools

import optuna
import pytest

from nas_dil.schedule import coverage, hdc_report
from nas_dil.spaces import (
    Candidate,
    SpaceError,
    count_hole_free,
    hole_free_multisets,
    is_hole_free,
    repair_gapfree,
    sample_candidates,
)
from nas_dil.spaces.rules import distinct_permutations

from ._util import make_space


def rates_of(space) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for c in space.enumerate():
        if c.rates not in out:
            out.append(c.rates)
    return out


# -- exponential ------------------------------------------------------------------------------

@pytest.mark.parametrize(("base", "levels", "leading", "trailing", "rates"), [
    (2, 5, 1, 1, (1, 1, 2, 4, 8, 16, 1)),  # Yu & Koltun's context module
    (3, 3, 0, 0, (1, 3, 9)),
    (2, 1, 2, 0, (1, 1, 1)),
    (2, 4, 0, 2, (1, 2, 4, 8, 1, 1)),
    (4, 2, 3, 1, (1, 1, 1, 1, 4, 1)),
])
def test_exponential_formula(base: int, levels: int, leading: int, trailing: int,
                             rates: tuple[int, ...]) -> None:
    s = make_space("exponential", base=base, levels=levels, leading=leading, trailing=trailing)
    assert rates_of(s) == [rates]
    assert s.count() == 1
    assert s.contains(Candidate(rates, 3, 8, 16))


def test_exponential_dedupes_equal_schedules() -> None:
    # levels 1 makes [1], so leading/trailing ones collide: (1, 1) arises twice
    s = make_space("exponential", base=2, levels={"min": 1, "max": 2}, leading=[0, 1],
                   trailing=[0, 1])
    assert rates_of(s) == [(1,), (1, 1), (1, 1, 1), (1, 2), (1, 2, 1), (1, 1, 2), (1, 1, 2, 1)]
    assert s.count() == 7 == len(list(s.enumerate()))


def test_exponential_gridding_filter_depends_on_kernel() -> None:
    # base 4: [1, 4] has holes with K=3 (4 > RF 3) but none with K=5 (4 <= RF 5)
    s = make_space("exponential", {"kernel": [3, 5], "require_gridding_free": True},
                   base=[2, 4], levels=2)
    assert [c.rates for c in s.enumerate() if c.kernel == 3] == [(1, 2)]
    assert [c.rates for c in s.enumerate() if c.kernel == 5] == [(1, 2), (1, 4)]
    assert s.rule.param_name(3) == "rates_k3"  # the lists differ, so the names do


# -- multigrid --------------------------------------------------------------------------------

@pytest.mark.parametrize(("grid", "base", "repeats", "rates"), [
    ([1, 2, 4], 2, 1, (2, 4, 8)),
    ([1, 2, 4], 2, 2, (2, 4, 8, 2, 4, 8)),
    ([1, 1, 1], 4, 1, (4, 4, 4)),
    ([1, 2, 1], 1, 3, (1, 2, 1, 1, 2, 1, 1, 2, 1)),
])
def test_multigrid_formula(grid: list[int], base: int, repeats: int,
                           rates: tuple[int, ...]) -> None:
    s = make_space("multigrid", grid=[grid], base_rate=base, repeats=repeats)
    assert rates_of(s) == [rates]


def test_multigrid_default_grid_and_dedupe() -> None:
    assert rates_of(make_space("multigrid", base_rate=[1, 2])) == [(1, 2, 4), (2, 4, 8)]
    s = make_space("multigrid", grid=[[1, 2, 4], [2, 4, 8]], base_rate=[1, 2])
    assert rates_of(s) == [(1, 2, 4), (2, 4, 8), (4, 8, 16)]
    assert s.count() == 3


def test_multigrid_gridding_filter_and_depth_filter() -> None:
    s = make_space("multigrid", {"require_gridding_free": True}, grid=[[1, 2, 4]],
                   base_rate=[1, 2])
    assert rates_of(s) == [(1, 2, 4)]  # (2, 4, 8): every rate even, odd offsets are holes
    s = make_space("multigrid", {"depth": {"min": 4, "max": 6}}, grid=[[1, 2, 4], [1, 2]],
                   repeats={"min": 1, "max": 3})
    assert rates_of(s) == [(1, 2, 4, 1, 2, 4), (1, 2, 1, 2), (1, 2, 1, 2, 1, 2)]


# -- hdc --------------------------------------------------------------------------------------

TINY_HDC_K3 = [  # choices [1, 2, 3, 5], group size 2..3, depth 2..6, K = 3, by hand:
    # [1, 5] fails rule 1 (M_2 = 5 > 3); [1,2,3], [1,2,5], [1,3,5] have M_2 = 2, 2, 3
    (1, 2), (1, 2, 1, 2), (1, 2, 1, 2, 1, 2),
    (1, 3), (1, 3, 1, 3), (1, 3, 1, 3, 1, 3),
    (1, 2, 3), (1, 2, 3, 1, 2, 3),
    (1, 2, 5), (1, 2, 5, 1, 2, 5),
    (1, 3, 5), (1, 3, 5, 1, 3, 5),
]


def test_hdc_tiny_config_by_hand() -> None:
    s = make_space("hdc", {"depth": {"min": 2, "max": 6}}, choices=[1, 2, 3, 5],
                   group_size={"min": 2, "max": 3})
    assert rates_of(s) == TINY_HDC_K3
    assert list(s.rule.labels[3]) == [
        "1-2x1", "1-2x2", "1-2x3", "1-3x1", "1-3x2", "1-3x3", "1-2-3x1", "1-2-3x2",
        "1-2-5x1", "1-2-5x2", "1-3-5x1", "1-3-5x2"]
    assert s.count() == 12


def test_hdc_kernel_5_admits_more() -> None:
    s = make_space("hdc", {"depth": {"min": 2, "max": 6}, "kernel": [3, 5]},
                   choices=[1, 2, 3, 5], group_size={"min": 2, "max": 3})
    k5 = [c.rates for c in s.enumerate() if c.kernel == 5]
    assert (1, 5) in k5 and (1, 5) not in TINY_HDC_K3
    assert [c.rates for c in s.enumerate() if c.kernel == 3] == TINY_HDC_K3
    assert s.rule.param_name(5) == "rates_k5"


def test_hdc_fixed_repeats_without_depth() -> None:
    s = make_space("hdc", {"depth": None}, choices=[1, 2, 3],
                   repeats=2, group_size=3)
    assert rates_of(s) == [(1, 2, 3, 1, 2, 3)]


def test_hdc_paper_example_and_rejected_group() -> None:
    s = make_space("hdc", {"depth": 6}, choices=[1, 2, 5, 9], group_size=3)
    assert rates_of(s) == [(1, 2, 5, 1, 2, 5)]  # [1, 2, 9]: M_2 = 5 > 3
    assert not s.contains(Candidate((1, 2, 9, 1, 2, 9), 3, 8, 16))
    assert not s.contains(Candidate((1, 2, 5, 1, 2), 3, 8, 16))
    assert not s.contains(Candidate((1, 2, 5, 1, 2, 5), 5, 8, 16))  # kernel not a choice


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_hdc_groups_are_hole_free_and_repeating_keeps_them(kernel: int) -> None:
    s = make_space("hdc", {"depth": {"min": 2, "max": 12}, "kernel": kernel},
                   choices=list(range(1, 16)), group_size={"min": 2, "max": 4})
    groups = s.rule.groups(kernel)
    assert groups
    for g in groups:
        assert g[0] == 1 and all(a < b for a, b in itertools.pairwise(g))
        assert coverage(make_candidate(g, kernel).schedule).gridding_free
    for c in s.enumerate():
        rep = hdc_report(c.rates, kernel)
        assert rep.passed and len(set(rep.groups)) == 1
        assert coverage(c.schedule).gridding_free


def make_candidate(rates: tuple[int, ...], kernel: int) -> Candidate:
    return Candidate(rates, kernel, 8, 16)


# -- gapfree: repair, counting, enumeration ---------------------------------------------------

@pytest.mark.parametrize(("rates", "choices", "kernel", "expected"), [
    ((1, 2, 3), [1, 2, 3], 3, (1, 2, 3)),  # hole-free: identity
    ((3, 1), [1, 3], 3, (3, 1)),  # 3 <= RF 3 after [1]: identity
    ((2, 2, 2), [1, 2, 3], 3, (1, 2, 2)),  # first 2 > RF 1 → 1; then RF 3, 7
    ((9, 1, 2), [1, 2, 3, 5, 9], 3, (5, 1, 2)),  # RF after [1, 2] is 7: 9 → 5
    ((4, 4), [1, 2, 4], 3, (1, 2)),  # 4 > 1 → 1 (RF 3); 4 > 3 → 2
    ((1, 9), [1, 5, 9], 5, (1, 5)),  # K=5: RF after [1] is 5
    ((7, 7), [1, 7], 1, (7, 7)),  # K=1: RF 1, nothing can be a hole
    ((2, 4, 8), [1, 2, 4, 8], 3, (1, 2, 4)),
])
def test_repair_table(rates: tuple[int, ...], choices: list[int], kernel: int,
                      expected: tuple[int, ...]) -> None:
    assert repair_gapfree(rates, choices, kernel) == expected
    assert is_hole_free(expected, kernel)


def test_repair_needs_one() -> None:
    with pytest.raises(ValueError, match="needs 1"):
        repair_gapfree((2, 2), [2, 4], 3)


def test_sample_records_repair() -> None:
    s = make_space("gapfree", {"depth": 3}, choices=[1, 2, 3, 5, 9])
    t = optuna.trial.FixedTrial({"kernel": 3, "output_stride": 8, "width": 16, "depth": 3,
                                 "r1": 9, "r2": 1, "r3": 2})
    c = s.sample(t)
    assert c.rates == (5, 1, 2)
    assert t.user_attrs == {"candidate": c.to_dict(), "repaired": True}
    t = optuna.trial.FixedTrial({"kernel": 3, "output_stride": 8, "width": 16, "depth": 3,
                                 "r1": 5, "r2": 1, "r3": 2})
    assert s.sample(t).rates == (5, 1, 2) and t.user_attrs["repaired"] is False


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("choices", [[1, 2, 3, 4, 6], [1, 3, 4, 9]])
def test_gapfree_count_matches_brute_force(kernel: int, choices: list[int]) -> None:
    s = make_space("gapfree", {"depth": {"min": 1, "max": 4}, "kernel": kernel}, choices=choices)
    brute = [r for d in range(1, 5) for r in itertools.product(choices, repeat=d)
             if coverage(make_candidate(r, kernel).schedule).gridding_free]
    assert s.count() == len(brute)
    assert sorted(c.rates for c in s.enumerate()) == sorted(brute)


def test_gapfree_count_is_fast_for_depth_8_and_8_choices() -> None:
    import time
    t0 = time.perf_counter()
    choices = (1, 2, 3, 4, 5, 6, 7, 8)
    count_hole_free.cache_clear()
    hole_free_multisets.cache_clear()
    n = count_hole_free(choices, 8, 3)
    assert time.perf_counter() - t0 < 5
    assert 0 < n < 8**8


def test_distinct_permutations() -> None:
    assert list(distinct_permutations((1, 1, 2))) == [(1, 1, 2), (1, 2, 1), (2, 1, 1)]
    assert list(distinct_permutations((3,))) == [(3,)]
    for ms in [(1, 2, 2, 3), (1, 1, 1, 5, 5)]:
        perms = list(distinct_permutations(ms))
        assert perms == sorted(set(itertools.permutations(ms)))


# -- count == enumerate on small configs ------------------------------------------------------

SMALL = [
    ("free", {"depth": {"min": 1, "max": 3}, "output_stride": [8, 16], "width": [8, 16]},
     {"choices": [1, 2, 4]}),
    ("free", {"depth": {"min": 2, "max": 4}, "kernel": [3, 5], "require_gridding_free": True},
     {"choices": [1, 2, 4, 8]}),
    ("gapfree", {"depth": {"min": 2, "max": 5}, "kernel": [3, 5]}, {"choices": [1, 2, 3, 7]}),
    ("hdc", {"depth": {"min": 2, "max": 9}, "kernel": [3, 5], "width": [8, 16]},
     {"choices": [1, 2, 3, 5, 7, 9]}),
    ("exponential", {"output_stride": [4, 8, 16]},
     {"base": [2, 3], "levels": {"min": 2, "max": 5}, "leading": [0, 1, 2], "trailing": [0, 1]}),
    ("multigrid", {"kernel": [3, 5], "require_gridding_free": True},
     {"grid": [[1, 2, 4], [1, 1, 1], [1, 2, 3]], "base_rate": [1, 2, 3],
      "repeats": {"min": 1, "max": 2}}),
]


@pytest.mark.parametrize(("rule", "top", "opts"), SMALL, ids=[f"{r}{i}" for i, (r, _, _)
                                                               in enumerate(SMALL)])
def test_count_equals_enumerate(rule: str, top: dict, opts: dict) -> None:
    s = make_space(rule, top, **opts)
    all_ = list(s.enumerate())
    assert len(all_) == s.count() == len(set(all_))
    assert all_ == list(s.enumerate())  # deterministic order
    assert all(s.contains(c) for c in all_)


def test_free_count_formula() -> None:
    s = make_space("free", {"depth": {"min": 2, "max": 4}, "width": [8, 16, 32]},
                   choices=[1, 2, 3, 5, 8])
    assert s.count() == 3 * (5**2 + 5**3 + 5**4)
    assert s.contains(Candidate((8, 8), 3, 8, 32))  # gridded, but free allows it
    assert not s.contains(Candidate((8,), 3, 8, 32))  # depth 1 < 2
    assert not s.contains(Candidate((4, 4), 3, 8, 32))  # 4 not a choice
    assert not s.contains(Candidate((1, 1), 3, 16, 32))  # stride not a choice
    assert not s.contains(Candidate((1, 1), 3, 8, 64))  # width not a choice
    assert not s.contains((1, 1))  # type: ignore[arg-type]


def test_hdc_is_inside_gapfree_with_the_same_options() -> None:
    top = {"depth": {"min": 2, "max": 9}, "kernel": [3, 5]}
    choices = [1, 2, 3, 5, 7, 9]
    hdc = make_space("hdc", top, choices=choices)
    gap = make_space("gapfree", top, choices=choices)
    assert all(gap.contains(c) for c in hdc.enumerate())
    assert gap.count() > hdc.count()


# -- limits: refuse work that would take minutes, never hang ----------------------------------

def test_hdc_refuses_huge_group_search() -> None:
    with pytest.raises(SpaceError, match=r"^<hdc>: rates.group_size: .*limit"):
        make_space("hdc", {"depth": {"min": 2, "max": 20}}, choices=list(range(1, 200)),
                   group_size={"min": 2, "max": 10})


def test_huge_gapfree_samples_but_refuses_to_count() -> None:
    s = make_space("gapfree", {"depth": {"min": 2, "max": 40}},
                   choices=[1, 2, 3, 4, 5, 7, 9, 12])
    c = sample_candidates(s, 3, 0)
    assert all(is_hole_free(x.rates, 3) for x in c)
    with pytest.raises(SpaceError, match=r"^<gapfree>: depth: .*sampling still works"):
        s.count()
    d = s.describe()
    assert d["count"] is None and "limit" in d["count_error"]
