"""`score_batch` against a set-based brute force: wide rates, several kernels, many blocks.

The vectorised path sorts rows, dedupes multisets, shares prefixes between neighbours and
composes bit-packed supports with word-crossing shifts; every one of those is exercised here
against the plain definition (the set of reachable offsets, grown one layer at a time).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_dil.schedule import batch, batch_holes_1d, batch_m, batch_rf, m_values, score_batch


def _brute_seen(rates: tuple[int, ...], kernel: int) -> int:
    """Distinct offsets Σ t_i·r_i, |t_i| <= (K-1)/2: the offsets that reach the unit."""
    h = (kernel - 1) // 2
    reach = {0}
    for r in rates:
        reach = {a + t * r for a in reach for t in range(-h, h + 1)}
    return len(reach)


def _check(rates: np.ndarray, kernel: int) -> None:
    sc = score_batch(rates, kernel)
    cache: dict[tuple[int, ...], int] = {}
    for i, row in enumerate(rates.tolist()):
        key = tuple(sorted(row))
        if key not in cache:
            cache[key] = _brute_seen(key, kernel)
        seen = cache[key]
        rf = 1 + (kernel - 1) * sum(row)
        assert sc.rf[i] == rf, row
        assert sc.holes_1d[i] == rf - seen, (row, kernel)
        assert sc.holes[i] == rf * rf - seen * seen
        assert sc.coverage[i] == (seen * seen) / (rf * rf)  # same float, not just close
        assert bool(sc.gridding_free[i]) is (seen == rf)
        m = m_values(row)
        assert sc.m[i].tolist() == m
        assert bool(sc.hdc_rule1[i]) is (len(row) < 2 or m[1] <= kernel)
    assert np.array_equal(batch_holes_1d(rates, kernel, dedupe=False), sc.holes_1d)
    assert np.array_equal(batch_holes_1d(rates, kernel), sc.holes_1d)
    assert np.array_equal(batch_rf(rates, kernel), sc.rf)
    assert np.array_equal(batch_m(rates), sc.m)
    assert sc.rf.dtype == sc.holes.dtype == sc.holes_1d.dtype == sc.m.dtype == np.int64
    assert sc.coverage.dtype == np.float64 and sc.m.shape == rates.shape


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 7), hi=st.sampled_from([4, 17, 64, 65, 130, 300]),
       kernel=st.sampled_from([1, 3, 5, 7]), seed=st.integers(0, 2**31))
def test_wide_rates_match_brute_force(n: int, hi: int, kernel: int, seed: int) -> None:
    """Rates past 64 shift whole words; duplicates and permutations hit the dedupe."""
    rng = np.random.default_rng(seed)
    rates = rng.integers(1, hi + 1, size=(30, n))
    rates[:5, 0] = hi  # the widest rate of the draw, e.g. exactly 64 (a one-word shift)
    perm = np.array([rng.permutation(row) for row in rates[:10]])
    _check(np.vstack([rates, perm, rates[:3]]), kernel)


@pytest.mark.parametrize("kernel", [3, 5])
def test_many_blocks_and_shared_prefixes(kernel: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks: prefixes shared within a block, phases switching, blocks of one column."""
    rng = np.random.default_rng(kernel)
    rates = np.vstack([rng.integers(1, 9, size=(400, 5)), rng.integers(1, 70, size=(100, 5))])
    expected = score_batch(rates, kernel)
    _check(rates, kernel)
    for chunk in (1, 7, 64):
        monkeypatch.setattr(batch, "_CHUNK", chunk)
        got = score_batch(rates, kernel)
        assert np.array_equal(got.holes_1d, expected.holes_1d), chunk
        assert np.array_equal(batch_holes_1d(rates, kernel, dedupe=False), expected.holes_1d)


def test_every_multiset_small_rates() -> None:
    """All 4-layer schedules over rates 1-6 (every ordering): more than one default block."""
    rates = np.array(list(itertools.product(range(1, 7), repeat=4)), dtype=np.int64)
    for kernel in (3, 5):
        _check(rates, kernel)


def test_large_batch_wide_rates() -> None:
    """The benchmark's worst case in small: rates 1-64, mostly distinct multisets."""
    rates = np.random.default_rng(0).integers(1, 65, size=(12_000, 3))
    _check(rates, 3)


@pytest.mark.parametrize(
    ("rates", "kernel"),
    [
        ([[255, 1], [1, 255], [256, 1], [128, 127]], 3),  # uint8 / uint16 columns
        ([[65535, 1], [65536, 2], [3, 70000]], 3),  # uint16 / int64 columns
        ([[64, 64, 64], [64, 128, 1], [63, 65, 1], [127, 129, 1]], 3),  # word boundaries
        ([[1, 2, 3] * 8], 3),  # 24 layers
        ([[1, 2] * 35, [2] * 70], 3),  # past the sorting network (np.sort per row)
        ([list(range(60, 72)), list(range(71, 59, -1))], 5),  # no int64 multiset key
        ([[200, 199, 1, 2, 7, 150, 4], [1, 2, 4, 7, 150, 199, 200]] * 60, 3),  # argsort key
    ],
)
def test_edge_batches(rates: list[list[int]], kernel: int) -> None:
    _check(np.asarray(rates, dtype=np.int64), kernel)


def test_empty_batch() -> None:
    sc = score_batch(np.zeros((0, 4), dtype=np.int64))
    assert sc.rf.shape == sc.holes_1d.shape == sc.coverage.shape == (0,)
    assert sc.m.shape == (0, 4)
