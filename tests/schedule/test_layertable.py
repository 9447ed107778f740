"""Layer tables (pure numpy): hand-built tables against the chain formulas and brute force."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nas_dil.schedule import Schedule, conv_out_size, stack_cost, support_1d
from nas_dil.schedule.layertable import (
    IMAGE,
    LayerTable,
    TableOp,
    _levels,
    dilate,
    sub_table,
    support_rows,
    table_cost,
    table_coverage,
    table_rf,
    table_support,
    target_blocks,
    usable_rf,
)


def _chain(s: Schedule, width: int = 4, c_in: int = 3) -> LayerTable:
    ops = []
    for i, (r, k, st) in enumerate(zip(s.rates, s.kernels, s.strides, strict=True)):
        ops.append(TableOp(f"c{i}", "conv", (i - 1,), c_in if i == 0 else width, width, k, st,
                           r, r * (k - 1) // 2, block=f"b{i}"))
    return LayerTable(tuple(ops), c_in)


@pytest.mark.parametrize("rates,kernels,strides", [
    ((1, 2, 5), (3,), ()), ((2, 4, 8), (3,), ()), ((1, 3, 9), (3, 5, 3), ()),
    ((1, 1, 2, 2), (3,), (2, 1, 2, 1)), ((1,), (7,), (2,)),
])
def test_chain_matches_schedule(rates, kernels, strides) -> None:
    s = Schedule(rates, kernels, strides)
    t = _chain(s)
    _, mask = table_support(t)
    assert (mask == support_1d(s)).all()
    assert table_rf(t) == mask.size
    cov = table_coverage(t)
    assert cov.holes_1d == int((~support_1d(s)).sum())
    if s.stride_free:
        c = table_cost(t, 37, 29)
        ref = stack_cost(s, 4, 37, 29, norm=False, c_in=3)
        assert c.macs == ref.macs and c.params == ref.params - 4 * len(s)  # no biases here


def _brute_support(t: LayerTable, n: int, unit: int) -> set[int]:
    """Forward propagation of indicator sets: which input pixels each unit sees."""
    sizes = [n]
    maps: dict[int, list[set[int]]] = {IMAGE: [{i} for i in range(n)]}
    for i, op in enumerate(t.ops):
        src = maps[op.inputs[0]]
        if op.kind == "conv":
            n_out = conv_out_size(len(src), op.kernel, op.stride, op.dilation, op.padding)
            out = []
            for o in range(n_out):
                seen: set[int] = set()
                for k in range(op.kernel):
                    p = o * op.stride - op.padding + k * op.dilation
                    if 0 <= p < len(src):
                        seen |= src[p]
                out.append(seen)
        elif op.kind == "add":
            out = [set().union(*(maps[j][o] for j in op.inputs)) for o in range(len(src))]
        else:
            out = src
        maps[i] = out
        sizes.append(len(out))
    return maps[len(t) - 1][unit]


def _random_resnet(rng: random.Random) -> LayerTable:
    k0 = rng.choice([3, 5, 7])
    ops = [TableOp("stem", "conv", (IMAGE,), 1, 2, k0, 2, 1, k0 // 2, block="stem")]
    for b in range(rng.randint(2, 5)):
        x = len(ops) - 1
        stride = rng.choice([1, 2])
        k = rng.choice([1, 3, 5])
        ops.append(TableOp(f"l.{b}.a", "conv", (x,), 2, 2, k, stride, 1, k // 2, block=f"l.{b}"))
        ops.append(TableOp(f"l.{b}.b", "conv", (len(ops) - 1,), 2, 2, 3, 1, 1, 1,
                           block=f"l.{b}"))
        short = x
        if stride > 1:
            ops.append(TableOp(f"l.{b}.down", "conv", (x,), 2, 2, 1, stride, block=f"l.{b}"))
            short = len(ops) - 1
        main = len(ops) - 1 - (stride > 1)  # the main path's last conv
        ops.append(TableOp(f"l.{b}.add", "add", (main, short), block=f"l.{b}"))
    return LayerTable(tuple(ops), 1)


@pytest.mark.parametrize("seed", range(12))
def test_support_with_residuals_and_borders_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    t = _random_resnet(rng)
    top = max(_levels(t))  # the net's own output stride
    if rng.random() < 0.7:
        t = dilate(t, rng.choice([o for o in (1, 2, 4, 8, 16, 32) if o <= top]))
    n = rng.randint(9, 60)
    n_out = table_cost(t, n, 1).out_h
    for unit in {0, n_out // 2, n_out - 1}:
        lo, mask = table_support(t, n, unit)
        got = {lo + int(i) for i in np.flatnonzero(mask)}
        assert got == _brute_support(t, n, unit)
    # every unit at once; the usable RF is the widest of them
    rows = support_rows(t, n)
    assert rows.shape == (n_out, n)
    exts = []
    for unit in range(n_out):
        want = _brute_support(t, n, unit)
        assert set(np.flatnonzero(rows[unit]).tolist()) == want
        exts.append(max(want) - min(want) + 1)
    assert usable_rf(t, n) == max(exts)


@pytest.mark.parametrize("seed", range(6))
def test_sub_table_is_the_part_on_its_own(seed: int) -> None:
    rng = random.Random(seed)
    t = _random_resnet(rng)
    start = rng.choice([i for i, op in enumerate(t.ops) if op.name.endswith(".a")])
    sub = sub_table(t, range(start, len(t)))
    # the rows from a block's first conv on, fed by the block's input: the same support as
    # the net built from those rows alone (brute force on the sub-table's own rows)
    assert sub.ops[0].inputs == (IMAGE,) and all(j < i for i, op in enumerate(sub.ops)
                                                  for j in op.inputs)
    n = rng.randint(9, 40)
    n_out = table_cost(sub, n, 1).out_h
    lo, mask = table_support(sub, n, n_out // 2)
    assert {lo + int(i) for i in np.flatnonzero(mask)} == _brute_support(sub, n, n_out // 2)
    assert sub.in_channels == 2 and len(sub) == len(t) - start
    with pytest.raises(ValueError, match="contiguous range"):
        sub_table(t, range(3, 3))


def _stages_table() -> LayerTable:
    """Three blocks at stride 4, 8 (strided first), 8; then two at 16 (strided first)."""
    ops = [TableOp("stem", "conv", (IMAGE,), 3, 8, 3, 4, 1, 1, block="stem")]
    for b, stride in enumerate([1, 2, 1, 2, 1]):
        ops.append(TableOp(f"s.{b}.conv", "conv", (len(ops) - 1,), 8, 8, 3, stride, 1, 1,
                           block=f"s.{b}"))
    return LayerTable(tuple(ops), 3)


def test_dilate_follows_the_torchvision_convention() -> None:
    t = _stages_table()
    assert target_blocks(t, 16) == ("s.3", "s.4")  # OS = the net's own: the last stage
    assert target_blocks(t, 8) == ("s.3", "s.4")
    assert target_blocks(t, 4) == ("s.1", "s.2", "s.3", "s.4")
    d = dilate(t, 4)
    got = [(op.stride, op.dilation, op.padding) for op in d.ops]
    # a strided conv whose stride goes keeps the dilation before it; later ones multiply
    assert got == [(4, 1, 1), (1, 1, 1), (1, 1, 1), (1, 2, 2), (1, 2, 2), (1, 4, 4)]
    r = dilate(t, 4, [3, 1, 5, 7])
    assert [op.dilation for op in r.ops] == [1, 1, 3, 1, 5, 7]
    assert table_cost(r, 64, 64).macs == table_cost(d, 64, 64).macs  # same padding: same size
    with pytest.raises(ValueError, match=r"need 4 positive rates"):
        dilate(t, 4, [1, 2])
    with pytest.raises(ValueError, match="output_stride=3"):
        dilate(t, 3)


def test_global_gate_is_left_out_of_the_local_support() -> None:
    ops = (
        TableOp("c", "conv", (IMAGE,), 1, 4, 3, 1, 1, 1),
        TableOp("pool", "global", (0,)),
        TableOp("fc", "conv", (1,), 4, 4, 1, bias=True),
        TableOp("gate", "gate", (0, 2)),
        TableOp("d", "conv", (3,), 4, 4, 3, 1, 2, 2),
    )
    t = LayerTable(ops, 1)
    assert table_rf(t) == 7
    c = table_cost(t, 10, 10)
    assert c.macs == 100 * 4 * 9 + 16 + 100 * 4 * 4 * 9  # fc at 1×1
    assert c.params == 36 + 20 + 144


def test_json_round_trip() -> None:
    t = _chain(Schedule((1, 2), (3,), (2, 1)))
    assert LayerTable.from_dict(t.to_dict()) == t
