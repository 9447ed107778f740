"""The effective RF (the 95 % window of the path-count map, dead taps at the crop removed):
hand-computed counts and windows, brute force over paths, the project's count map, batch =
scalar, and a layer table = the same chain."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nas_dil.schedule import Schedule, live_taps, net_count_map
from nas_dil.schedule.crop import ConvOp, _sizes, net_ops
from nas_dil.schedule.erf import batch_erf, erf_of_counts, net_counts, net_erf, table_erf
from nas_dil.schedule.layertable import IMAGE, LayerTable, TableOp


def _chain(rates: list[int], name: str = "stack") -> list[ConvOp]:
    return [ConvOp(f"{name}.{i}", 3, 1, r) for i, r in enumerate(rates)]


@pytest.mark.parametrize(("ops", "size", "residual", "lo", "counts"), [
    (_chain([1, 1, 1]), 64, (), -3, [1, 3, 6, 7, 6, 3, 1]),  # THEORY.md's table
    (_chain([1, 1, 1, 1, 1]), 64, (), -5, [1, 5, 15, 30, 45, 51, 45, 30, 15, 5, 1]),
    (_chain([2, 2]), 64, (), -4, [1, 0, 2, 0, 3, 0, 2, 0, 1]),  # gridded: holes carry nothing
    (_chain([5]), 4, (), 0, [1]),  # rate 5 on a 4-px map: both off-centre taps dead
    (_chain([1, 5]), 4, (), -1, [1, 1, 1]),  # the rate-5 layer is a 1×1 conv there
    (_chain([1]), 64, ("stack.0",), -1, [1, 2, 1]),  # x + f(x): the identity adds a path
    ([ConvOp("stem.0", 3, 2, 1), ConvOp("stack.0", 3, 1, 1)], 64, (), -3,
     [1, 1, 2, 1, 2, 1, 1]),  # behind a stride 2 the layer's taps are 2 image px apart
])
def test_counts_by_hand(ops: list[ConvOp], size: int, residual: tuple[str, ...], lo: int,
                        counts: list[int]) -> None:
    got_lo, got = net_counts(ops, size, residual)
    assert (got_lo, got.tolist()) == (lo, counts)


@pytest.mark.parametrize(("lo", "counts", "erf"), [
    (-3, [1, 3, 6, 7, 6, 3, 1], 7),  # ρ = 2 holds (25/27)² = 0.857 only
    (-5, [1, 5, 15, 30, 45, 51, 45, 30, 15, 5, 1], 9),  # ρ = 3: (231/243)² = 0.904; ρ = 4: 0.984
    (0, [1], 1),
    (-1, [1, 2, 1], 3),  # ρ = 0 holds (2/4)²
    (-2, [1, 0, 38, 0, 1], 5),  # ρ = 0 and 1 hold (38/40)² = 0.9025 only
])
def test_erf_window_by_hand(lo: int, counts: list[int], erf: int) -> None:
    c = (lo, np.array(counts, dtype=float))
    assert erf_of_counts(c, c) == erf


def _brute_counts(ops: list[ConvOp], size: int) -> dict[int, int]:
    """Every path through the live taps, one by one: image offset -> number of paths."""
    sizes = _sizes(ops, size)
    per_op, jump = [], 1
    for op, s_in in zip(ops, sizes, strict=False):
        live = live_taps(s_in, op.kernel, op.stride, op.dilation)
        offs = np.arange(op.kernel) * op.dilation - op.dilation * (op.kernel - 1) // 2
        per_op.append([int(o) * jump for o in offs[live]])
        jump *= op.stride
    out: dict[int, int] = {}
    for path in itertools.product(*per_op):
        out[sum(path)] = out.get(sum(path), 0) + 1
    return out


def _brute_erf(m: np.ndarray, c: int) -> int:
    """Grow a centred square window over the 2-D map until it holds 95 % of the mass."""
    total = m.sum()
    for rho in range(m.shape[0]):
        if m[max(c - rho, 0):c + rho + 1, max(c - rho, 0):c + rho + 1].sum() >= 0.95 * total:
            return 2 * rho + 1
    raise AssertionError


@pytest.mark.parametrize("seed", range(12))
def test_counts_and_erf_equal_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ops = [ConvOp(f"stem.{i}", 3, 2, 1) for i in range(int(rng.integers(0, 3)))]
    ops += _chain(rng.integers(1, 8, size=int(rng.integers(1, 5))).tolist())
    size = int(rng.integers(8, 40))
    lo, v = net_counts(ops, size)
    brute = _brute_counts(ops, size)
    assert {lo + i: int(x) for i, x in enumerate(v) if x} == brute
    m = np.outer(v, v)
    assert erf_of_counts((lo, v), (lo, v)) == _brute_erf(m, -lo)


@pytest.mark.parametrize(("rates", "output_stride"), [([1, 2, 5], 8), ([3, 3, 3], 4),
                                                      ([1, 2, 5, 1, 2, 5], 4)])
def test_without_dead_taps_the_counts_are_the_projects_count_map(rates: list[int],
                                                                 output_stride: int) -> None:
    s = Schedule(tuple(rates), (3,))
    ops = net_ops(s, "h", output_stride)
    lo, v = net_counts(ops, 512)  # a crop on which no tap is dead
    m = net_count_map(rates, 3, output_stride=output_stride)
    assert np.array_equal(np.outer(v, v), m)
    assert net_erf(s, 512, 512, output_stride=output_stride) == _brute_erf(m, -lo)


def test_dead_taps_shrink_the_erf_and_depth_grows_it() -> None:
    def erf(r: tuple[int, ...], os_: int) -> int:
        return net_erf(Schedule(r, (3,)), 48, 48, output_stride=os_)

    assert erf((1, 3, 9, 1, 3, 9), 8) < erf((1, 3, 9, 1, 3, 9), 4)  # rate 9 on 6 px: dead
    assert erf((1, 1, 1), 4) < erf((1, 1, 1, 1, 1, 1), 4) < erf((1, 2, 5, 1, 2, 5), 4)
    # the usable RF is the crop (48) for all but the first; the ERF keeps them apart
    assert len({erf(r, 4) for r in ((1, 2, 3), (1, 3, 5), (2, 2, 2, 2, 2, 2))}) == 3


@pytest.mark.parametrize("arch", [
    {},
    {"residual": True},
    {"context": True, "backbone_stride": 16},
    {"context": True, "context_rates": (1, 2, 3), "residual": True},
])
@pytest.mark.parametrize(("kernel", "output_stride", "hw"), [(3, 8, (48, 48)),
                                                              (3, 4, (48, 40)),
                                                              (5, 16, (64, 64))])
def test_batch_equals_one_by_one(arch: dict, kernel: int, output_stride: int,
                                 hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(kernel * output_stride)
    rates = rng.integers(1, 12, size=(25, 4))
    got = batch_erf(rates, kernel, output_stride, *hw, **arch)
    want = [net_erf(Schedule(tuple(r), (kernel,)), *hw, output_stride=output_stride, **arch)
            for r in rates.tolist()]
    assert got.tolist() == want


def test_a_layer_table_gives_the_chains_erf() -> None:
    conv = [TableOp("stem.0", "conv", (IMAGE,), 3, 8, 3, 2, 1, 1),
            TableOp("stack.0", "conv", (0,), 8, 8, 3, 1, 2, 2),
            TableOp("stack.1", "conv", (1,), 8, 8, 3, 1, 5, 5)]
    t = LayerTable(tuple(conv), 3)
    ops = [ConvOp("stem.0", 3, 2, 1), ConvOp("stack.0", 3, 1, 2), ConvOp("stack.1", 3, 1, 5)]
    for size in (40, 8):  # at 8 px the stack runs on 4: the rate-5 taps are dead
        assert table_erf(t, size, size) == erf_of_counts(net_counts(ops, size),
                                                         net_counts(ops, size))
    # an add node: x + f(x) around the last conv, as the stem net's residual stack
    res = LayerTable((*conv, TableOp("add", "add", (1, 2))), 3)
    c = net_counts(ops, 40, ("stack.1",))
    assert table_erf(res, 40, 40) == erf_of_counts(c, c)
