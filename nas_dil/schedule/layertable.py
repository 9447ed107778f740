"""Exact cost and coverage of any conv net given as a layer table (a DAG). Pure numpy.

A *layer table* is the net's graph reduced to what changes cost or geometry: convolutions,
pools, norms, residual adds, global pools and the gates they feed (squeeze-and-excitation).
Pointwise ops (activations, dropout) change neither and are left out. ``nas_dil.models``
extracts one from a torchvision model once (``backbones.layer_table``); this module then
answers, for any output stride and any per-block rates, without torch:

- ``dilate``: strides past the output stride become dilations (the convention of torchvision's
  ResNet and of timm: a conv whose stride is removed keeps the dilation before it; every later
  conv multiplies its dilation by the strides removed), and a per-block rate list sets the
  dilation of every K>1 conv in the targeted blocks (``target_blocks``). Pools past the output
  stride are removed, as Yu & Koltun removed VGG's pool4 and pool5.
- ``table_cost``: MACs and params, the convention of ``cost.py`` (what ``FlopCounterMode``
  reports: conv MACs only; params of convs, conv biases and norm affines).
- ``table_support``: per axis, the exact set of input pixels that reach one output unit,
  residual identity paths included (an add is the union of its inputs' sets). With ``n`` the
  input length, padding blocks paths exactly as zero padding does (what a crop can supply);
  without, the nominal support on an unbounded image. ``table_coverage`` summarises it.

Global pools are broadcast back by a gate (SE): the gate makes every pixel reach every unit,
but uniformly; the support here is that of the local (convolutional) paths.

Sizes per axis follow ``conv_out_size`` (pools with ``ceil_mode`` as torch computes them).
Kernels, strides, dilations and padding are square (the same on both axes), so the 2-D
support is the outer product of the per-axis ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from nas_dil.schedule.cost import Cost
from nas_dil.schedule.coverage import Coverage, _largest_run

__all__ = [
    "IMAGE",
    "KINDS",
    "LayerTable",
    "TableOp",
    "dead_taps",
    "dilate",
    "op_sizes",
    "sub_table",
    "support_rows",
    "table_cost",
    "table_coverage",
    "table_rf",
    "table_support",
    "target_blocks",
    "usable_rf",
]

IMAGE = -1  # the input of the net, as an op index
KINDS = ("conv", "maxpool", "avgpool", "norm", "add", "gate", "global", "skip", "scale")
# conv: Conv2d; maxpool/avgpool: spatial pools; norm: BatchNorm/GroupNorm (params only);
# add: sum of its inputs (residual); gate: x · g with g one value per channel (SE);
# global: global average pool to 1×1; skip: a removed op (identity), kept for its name;
# scale: x · γ, a learned factor per channel (layer scale; c_out params, no MACs)


@dataclass(frozen=True)
class TableOp:
    """One row: a module (``name`` is its path in the torch model) or an add/gate node."""

    name: str
    kind: str  # one of KINDS
    inputs: tuple[int, ...]  # indices of earlier rows; IMAGE (-1) is the net's input
    c_in: int = 0  # channels in (conv, norm)
    c_out: int = 0  # channels out (conv, norm)
    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = False  # conv bias; for norm: affine weight and bias
    ceil_mode: bool = False  # pools
    block: str = ""  # enclosing block ("layer4.0", "features.13"); what a block rate sets

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: must be one of {', '.join(KINDS)}")
        for f in ("kernel", "stride", "dilation", "groups"):
            if getattr(self, f) < 1:
                raise ValueError(f"{self.name}: {f}={getattr(self, f)} must be >= 1")
        if self.padding < 0:
            raise ValueError(f"{self.name}: padding={self.padding} must be >= 0")

    @property
    def same_padding(self) -> bool:
        """Padding that keeps the size at stride 1 (what changing the dilation must keep)."""
        return 2 * self.padding == self.dilation * (self.kernel - 1)

    def to_dict(self) -> dict[str, object]:
        return {f: (list(v) if isinstance(v, tuple) else v)
                for f, v in self.__dict__.items()}


@dataclass(frozen=True)
class LayerTable:
    """A net as rows in topological order; the last row is its output."""

    ops: tuple[TableOp, ...]
    in_channels: int

    def __post_init__(self) -> None:
        if not self.ops:
            raise ValueError("a layer table needs at least one op")
        for i, op in enumerate(self.ops):
            if not op.inputs or any(j < IMAGE or j >= i for j in op.inputs):
                raise ValueError(f"{op.name}: inputs={list(op.inputs)} must be earlier rows")

    def __len__(self) -> int:
        return len(self.ops)

    # per-table facts every pass needs, computed once (cached_property writes the instance
    # __dict__ directly, so the frozen dataclass keeps its fields, equality and hash)
    @cached_property
    def _global_rows(self) -> list[bool]:
        return _is_global_rows(self)

    @cached_property
    def _length_cache(self) -> dict[int, list[int]]:
        return {}

    @property
    def out_channels(self) -> int:
        return _channels(self)[-1]

    def convs(self) -> list[TableOp]:
        return [op for op in self.ops if op.kind == "conv"]

    def extend(self, ops: Iterable[TableOp]) -> LayerTable:
        """Rows appended after the output (their inputs index this table's rows)."""
        return LayerTable(self.ops + tuple(ops), self.in_channels)

    def to_dict(self) -> dict[str, object]:
        return {"in_channels": self.in_channels, "ops": [op.to_dict() for op in self.ops]}

    @classmethod
    def from_dict(cls, d: dict) -> LayerTable:
        ops = tuple(TableOp(**{**o, "inputs": tuple(o["inputs"])}) for o in d["ops"])
        return cls(ops, int(d["in_channels"]))


def _channels(t: LayerTable) -> list[int]:
    out: list[int] = []
    for op in t.ops:
        c0 = t.in_channels if op.inputs[0] == IMAGE else out[op.inputs[0]]
        out.append(op.c_out if op.kind == "conv" else c0)
    return out


def _is_global(t: LayerTable) -> list[bool]:
    """Rows whose value is one number per channel (a global pool, or computed from one)."""
    return t._global_rows


def _is_global_rows(t: LayerTable) -> list[bool]:
    g: list[bool] = []
    for op in t.ops:
        if op.kind == "global":
            g.append(True)
        elif op.kind == "gate":
            g.append(False)
        else:
            g.append(all(j != IMAGE and g[j] for j in op.inputs))
    return g


def _out_len(n: int, op: TableOp) -> int:
    eff = op.dilation * (op.kernel - 1) + 1
    span = n + 2 * op.padding - eff
    if op.kind in ("maxpool", "avgpool") and op.ceil_mode:
        out = -(-span // op.stride) + 1
        if (out - 1) * op.stride >= n + op.padding:  # torch: the last window starts inside
            out -= 1
        return out
    return span // op.stride + 1


def _lengths(t: LayerTable, n: int) -> list[int]:
    """Each row's output length along one axis of input length n (sizes are per axis)."""
    cache = t._length_cache
    if n not in cache:
        cache[n] = _lengths_of(t, n)
    return cache[n]


def _lengths_of(t: LayerTable, n: int) -> list[int]:
    out: list[int] = []
    g = _is_global(t)
    for op in t.ops:
        ins = [n if j == IMAGE else out[j] for j in op.inputs]
        if op.kind in ("conv", "maxpool", "avgpool"):
            m = _out_len(ins[0], op)
            if m < 1:
                raise ValueError(f"{op.name}: input length {ins[0]} is too small (output {m})")
        elif op.kind == "global":
            m = 1
        elif op.kind in ("add", "gate"):
            local = [s for j, s in zip(op.inputs, ins, strict=True) if j == IMAGE or not g[j]]
            m = local[0] if local else 1
            if any(s != m for s in local):
                raise ValueError(f"{op.name}: inputs of lengths {local} cannot be added")
        else:
            m = ins[0]
        out.append(m)
    return out


def op_sizes(t: LayerTable, h: int, w: int) -> list[tuple[int, int]]:
    """(h, w) of each row's output on an h×w input."""
    return list(zip(_lengths(t, h), _lengths(t, w), strict=True))


@dataclass(frozen=True)
class TableCost(Cost):
    """``Cost`` plus each row's share (MACs and params per row, in table order)."""

    op_macs: tuple[int, ...]
    op_params: tuple[int, ...]
    out_h: int
    out_w: int


def table_cost(t: LayerTable, h: int, w: int) -> TableCost:
    """MACs and params of the net on one h×w image (``cost.py``'s convention)."""
    sizes = op_sizes(t, h, w)
    macs: list[int] = []
    params: list[int] = []
    for op, (hh, ww) in zip(t.ops, sizes, strict=True):
        if op.kind == "conv":
            per_out = (op.c_in // op.groups) * op.kernel * op.kernel
            macs.append(hh * ww * op.c_out * per_out)
            params.append(op.c_out * per_out + (op.c_out if op.bias else 0))
        elif op.kind == "norm":
            macs.append(0)
            params.append(2 * op.c_out if op.bias else 0)
        elif op.kind == "scale":
            macs.append(0)
            params.append(op.c_out)
        else:
            macs.append(0)
            params.append(0)
    return TableCost(sum(macs), sum(params), tuple(macs), tuple(params), *sizes[-1])


def _back(positions: np.ndarray, op: TableOp, n_in: int | None) -> np.ndarray:
    """Input positions an op's output positions read (padding drops those off the input)."""
    if op.kind not in ("conv", "maxpool", "avgpool"):
        return positions
    taps = np.arange(op.kernel, dtype=np.int64) * op.dilation - op.padding
    out = np.unique((positions[:, None] * op.stride + taps[None, :]).ravel())
    if n_in is not None:
        out = out[(out >= 0) & (out < n_in)]
    return out


def table_support(t: LayerTable, n: int | None = None, unit: int = 0) -> tuple[int, np.ndarray]:
    """Input positions (per axis) that reach output unit ``unit`` along local paths.

    Returns ``(lo, mask)``: position ``lo + i`` reaches the unit iff ``mask[i]``. With ``n``
    (the input length) positions outside ``[0, n)`` are padding and end their path, and the
    unit must exist at that size; with ``n=None`` nothing is clipped (the nominal support;
    unit 0 then sits at the origin of a grid that extends both ways).
    """
    sizes = None
    if n is not None:
        sizes = _lengths(t, n)
        if not 0 <= unit < sizes[-1]:
            raise ValueError(f"unit={unit}: the output has {sizes[-1]} units at input {n}")
    g = _is_global(t)
    need: dict[int, np.ndarray] = {len(t) - 1: np.array([unit], dtype=np.int64)}
    image: list[np.ndarray] = []
    for i in range(len(t) - 1, -1, -1):
        if i not in need:
            continue
        op = t.ops[i]
        for j in op.inputs:
            if j != IMAGE and g[j]:
                continue  # a broadcast value: reaches every unit alike, not a local path
            n_in = None if sizes is None else (n if j == IMAGE else sizes[j])
            p = _back(need[i], op, n_in)
            if j == IMAGE:
                image.append(p)
            else:
                need[j] = np.union1d(need[j], p) if j in need else p
        del need[i]
    pos = np.unique(np.concatenate(image)) if image else np.zeros(0, dtype=np.int64)
    if pos.size == 0:
        return 0, np.zeros(0, dtype=bool)
    lo = int(pos[0])
    mask = np.zeros(int(pos[-1]) - lo + 1, dtype=bool)
    mask[pos - lo] = True
    return lo, mask


def table_rf(t: LayerTable) -> int:
    """Nominal RF per axis in input pixels (extent of the unbounded support)."""
    return int(table_support(t)[1].size)


def table_coverage(t: LayerTable, n: int | None = None, unit: int = 0) -> Coverage:
    """``Coverage`` of one output unit (nominal with ``n=None``; at input length ``n``)."""
    sup = table_support(t, n, unit)[1]
    rf = int(sup.size)
    seen = int(sup.sum())
    return Coverage(rf=rf, seen_1d=seen, holes_1d=rf - seen, holes=rf * rf - seen * seen,
                    coverage=(seen * seen) / (rf * rf) if rf else 0.0,
                    largest_gap=_largest_run(~sup), gridding_free=rf == seen)


def _back_rows(rows: np.ndarray, op: TableOp, n_in: int) -> np.ndarray:
    """``_back`` for every output unit at once: (units, n_out) -> (units, n_in) bool."""
    if op.kind not in ("conv", "maxpool", "avgpool"):
        return rows
    out = np.zeros((rows.shape[0], n_in), dtype=bool)
    p = np.arange(rows.shape[1], dtype=np.int64) * op.stride - op.padding
    for k in range(op.kernel):
        x = p + k * op.dilation
        ok = (x >= 0) & (x < n_in)
        if ok.any():
            out[:, x[ok]] |= rows[:, ok]  # x is distinct within one tap: no write conflicts
    return out


def support_rows(t: LayerTable, n: int) -> np.ndarray:
    """(units, n) bool: row u holds the input positions (per axis, input length ``n``) that
    reach output unit u along local paths; zero padding ends paths (``table_support`` of
    every unit at once)."""
    sizes = _lengths(t, n)
    g = _is_global(t)
    need: dict[int, np.ndarray] = {len(t) - 1: np.eye(sizes[-1], dtype=bool)}
    image = np.zeros((sizes[-1], n), dtype=bool)
    for i in range(len(t) - 1, -1, -1):
        rows = need.pop(i, None)
        if rows is None:
            continue
        for j in t.ops[i].inputs:
            if j != IMAGE and g[j]:
                continue  # a broadcast value (as in table_support)
            p = _back_rows(rows, t.ops[i], n if j == IMAGE else sizes[j])
            if j == IMAGE:
                image |= p
            else:
                need[j] = need[j] | p if j in need else p
    return image


def usable_rf(t: LayerTable, n: int) -> int:
    """RF per axis that an input of length ``n`` can supply: the widest extent (first to
    last pixel) of any output unit's support once zero padding ends paths (<= n and <=
    nominal); ``nas_dil.schedule.crop``'s ``rf_usable`` for a layer table."""
    rows = support_rows(t, n)
    seen = rows.any(axis=1)
    if not seen.any():
        return 0
    first = rows.argmax(axis=1)
    last = n - 1 - rows[:, ::-1].argmax(axis=1)
    return int((last - first + 1)[seen].max())


def dead_taps(t: LayerTable, n: int) -> dict[str, tuple[int, ...]]:
    """Per conv (K>1) at input length ``n``: the tap indices (0…K-1, per axis) that read only
    padding from every output position. They get no gradient and keep their initial value;
    a conv whose off-centre taps are all dead is a 1×1 conv at that size."""
    lengths = _lengths(t, n)
    out: dict[str, tuple[int, ...]] = {}
    for op in t.ops:
        if op.kind != "conv" or op.kernel == 1:
            continue
        j = op.inputs[0]
        n_in = n if j == IMAGE else lengths[j]
        n_out = _out_len(n_in, op)
        first = np.arange(op.kernel) * op.dilation - op.padding  # read by output 0
        last = first + (n_out - 1) * op.stride  # read by the last output
        dead = tuple(int(i) for i in np.flatnonzero((last < 0) | (first >= n_in)))
        if dead:
            out[op.name] = dead
    return out


def sub_table(t: LayerTable, rows: range) -> LayerTable:
    """Rows ``rows`` (contiguous) of ``t`` as a net of their own: inputs from before the
    range become the sub-net's input (IMAGE). For the coverage of a part of a net, in the
    part's own input pixels."""
    if not rows or rows.step != 1 or rows.start < 0 or rows.stop > len(t):
        raise ValueError(f"rows={rows}: need a non-empty contiguous range of {len(t)} rows")
    c_in = t.in_channels if rows.start == 0 else _channels(t)[rows.start - 1]
    ops = tuple(replace(op, inputs=tuple(dict.fromkeys(
        IMAGE if j < rows.start else j - rows.start for j in op.inputs)))
        for op in t.ops[rows.start:rows.stop])
    return LayerTable(ops, c_in)


def _levels(t: LayerTable) -> list[int]:
    """Total stride at each row's output (global rows: 0, they have no grid)."""
    g = _is_global(t)
    lv: list[int] = []
    for i, op in enumerate(t.ops):
        if g[i]:
            lv.append(0)
            continue
        lin = max(1 if j == IMAGE else lv[j] for j in op.inputs)
        lv.append(lin * (op.stride if op.kind in ("conv", "maxpool", "avgpool") else 1))
    return lv


def _blocks(t: LayerTable) -> list[str]:
    """Blocks holding a K>1 conv, in order of first appearance."""
    out: list[str] = []
    for op in t.ops:
        if op.kind == "conv" and op.kernel > 1 and op.block and op.block not in out:
            out.append(op.block)
    return out


def target_blocks(t: LayerTable, output_stride: int) -> tuple[str, ...]:
    """The blocks a per-block rate list sets: those past the output stride (the dilated
    stages), or, when none is (output stride = the net's own), those of the last stage."""
    lv = _levels(t)
    level_of: dict[str, int] = {}
    for op, lvl in zip(t.ops, lv, strict=True):
        if op.block:
            level_of[op.block] = max(level_of.get(op.block, 0), lvl)
    blocks = _blocks(t)
    past = [b for b in blocks if level_of[b] > output_stride]
    if past:
        return tuple(past)
    top = max(level_of[b] for b in blocks)
    return tuple(b for b in blocks if level_of[b] == top)


def _with_dilation(op: TableOp, d: int) -> TableOp:
    if op.kernel == 1:
        return op  # a 1×1 conv has no taps to spread
    if not op.same_padding:
        raise ValueError(f"{op.name}: padding={op.padding} is not 'same' for "
                         f"dilation={op.dilation}, kernel={op.kernel}; cannot re-dilate it")
    return replace(op, dilation=d, padding=d * (op.kernel - 1) // 2)


def dilate(t: LayerTable, output_stride: int,
           block_rates: Sequence[int] | None = None) -> LayerTable:
    """The table at ``output_stride`` (strides past it become dilations), and with
    ``block_rates`` (one per ``target_blocks``) the dilation of every K>1 conv of each
    targeted block. ``t`` is the net as built (its own output stride, no dilation)."""
    lv = _levels(t)
    top = max(lv)
    if output_stride not in {1 << i for i in range(top.bit_length())} or output_stride > top:
        raise ValueError(f"output_stride={output_stride}: must be a power of 2 <= {top}")
    targets = target_blocks(t, output_stride)
    rate_of: dict[str, int] = {}
    if block_rates is not None:
        rates = [int(r) for r in block_rates]
        if len(rates) != len(targets) or any(r < 1 for r in rates):
            raise ValueError(f"rates={rates}: need {len(targets)} positive rates, one per "
                             f"block of {', '.join(targets)}")
        rate_of = dict(zip(targets, rates, strict=True))
    removed: list[int] = []  # product of the strides removed up to each row's output
    new: list[TableOp] = []
    for i, op in enumerate(t.ops):
        r_in = max(1 if j == IMAGE else removed[j] for j in op.inputs)
        lin = lv[i] // (op.stride if op.kind in ("conv", "maxpool", "avgpool") else 1)
        r_out = r_in
        if op.kind in ("conv", "maxpool", "avgpool"):
            past = op.stride > 1 and lin * op.stride > output_stride
            if past:
                r_out = r_in * op.stride
            if past and op.kind != "conv":
                op = replace(op, kind="skip", kernel=1, stride=1, dilation=1, padding=0)
            else:
                op = replace(op, stride=1) if past else op
                if r_in > 1:
                    op = _with_dilation(op, op.dilation * r_in)
        if op.kind == "conv" and op.block in rate_of:
            op = _with_dilation(op, rate_of[op.block])
        removed.append(r_out)
        new.append(op)
    return LayerTable(tuple(new), t.in_channels)
