"""The backbones' layer tables as package data, and the whole net's table. Torch-free.

Each trunk's table (``nas_dil.schedule.layertable``) is extracted once by tracing the
torchvision or timm model on the meta device (``backbones.layer_table``) and stored as JSON
under ``nas_dil/models/tables/`` (timm's as ``timm-<model>.json``; ``backbones.write_tables``
writes them; a test holds every stored table equal to a fresh extraction, so they cannot go
stale). A registered backbone's table lives in ``registry``. The search scores backbones from
these files in pure numpy: no torch, no torchvision at search time.

``split_schedule`` is the one reading of a rate list for a net on a backbone (what
``arch.target`` makes of it); ``seg_table`` / ``net_table`` the whole net's rows, named as
``BackboneSegNet``'s modules; ``candidate_schedule`` a space's candidate as that rate list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path

from nas_dil.errors import UserError
from nas_dil.models import registry
from nas_dil.models.config import TIMM_PREFIX, TV_BACKBONES, ArchConfig
from nas_dil.schedule import Schedule, ScheduleError
from nas_dil.schedule.layertable import LayerTable, TableOp, dilate, target_blocks

__all__ = ["TABLE_DIR", "BackboneError", "backbone_table", "block_kernels", "candidate_schedule",
           "check_dilated", "check_name", "needs_extraction", "net_table", "rate_blocks",
           "searched_rows", "seg_table", "split_schedule", "table_path", "trunk_table"]

TABLE_DIR = Path(__file__).with_name("tables")  # <backbone>.json: LayerTable.to_dict()


class BackboneError(UserError, ValueError):
    """A backbone name, weights source or model nas-dil cannot use; one line."""


def check_name(name: str) -> None:
    """A torchvision trunk, "timm:<model>" (the model is checked when it is first built or
    tabulated) or a registered backbone; else one line."""
    if name in TV_BACKBONES or registry.get(name) is not None or (
            name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)):
        return
    raise BackboneError(f"backbone={name!r}: must be one of {', '.join(TV_BACKBONES)}, "
                        "'timm:<model name>' or a name given to register_backbone")


def table_path(name: str) -> Path:
    """Where backbone ``name``'s stored table lives (``timm-<model>.json`` for timm's)."""
    check_name(name)
    if name.startswith(TIMM_PREFIX):
        return TABLE_DIR / f"timm-{name.removeprefix(TIMM_PREFIX)}.json"
    return TABLE_DIR / f"{name}.json"


def needs_extraction(name: str) -> bool:
    """A timm model whose table is not stored: ``trunk_table`` extracts it (torch, timm)."""
    return (name.startswith(TIMM_PREFIX) and registry.get(name) is None
            and not table_path(name).is_file())


def trunk_table(name: str) -> LayerTable:
    """The layer table of backbone ``name`` as its library builds it (its own output stride):
    stored (torchvision, the shipped timm models), registered (``register_backbone``), or, for
    another timm model, extracted from timm once per process (needs torch and timm: the
    extraction is registered when ``nas_dil.models.backbones`` is imported)."""
    user = registry.get(name)
    if user is not None:
        return user.table
    path = table_path(name)
    if needs_extraction(name):
        extract = registry.table_source()
        if extract is None:
            raise BackboneError(f"backbone={name!r}: no stored layer table; it is extracted "
                                "from timm once nas_dil.models.backbones is imported")
        return extract(name)
    return _stored_table(path, name)


@cache
def _stored_table(path: Path, name: str) -> LayerTable:
    try:
        return LayerTable.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:  # a broken install
        raise BackboneError(f"backbone={name!r}: cannot read its layer table {path} "
                            f"({type(e).__name__}: {e}); reinstall nas-dil") from None


def backbone_table(name: str, output_stride: int = 32,
                   rates: Sequence[int] | None = None) -> LayerTable:
    """The trunk's table at ``output_stride``, with per-block ``rates`` if given."""
    t = trunk_table(name)
    user = registry.get(name)
    try:
        new = dilate(t, output_stride, None if user is not None else rates)
    except ValueError as e:
        raise BackboneError(f"backbone={name!r}: {e}") from None
    check_dilated(t, new, name, output_stride)
    if user is not None and rates is not None:
        new = _set_block_rates(new, user.rate_blocks, rates, name)
    return new


def check_dilated(t: LayerTable, new: LayerTable, name: str, output_stride: int) -> None:
    """``new`` (``dilate(t, output_stride)``) removed no even kernel's stride: an even kernel
    has no symmetric "same" padding at stride 1 (timm pads it on one side only, ConvNeXt's
    2×2 downsampling) and layer tables hold symmetric padding; one line otherwise."""
    for old, op in zip(t.ops, new.ops, strict=True):
        if op.kind == "conv" and op.stride != old.stride and old.kernel % 2 == 0:
            raise BackboneError(
                f"backbone={name!r} at output_stride={output_stride}: {old.name} is a "
                f"{old.kernel}×{old.kernel} stride-{old.stride} conv, which has no symmetric "
                f"stride-1 form; use output_stride={_own_stride(t)}")


def _own_stride(t: LayerTable) -> int:
    s = 1
    for op in t.ops:
        if op.kind in ("conv", "maxpool", "avgpool"):
            s *= op.stride
    return s


def _set_block_rates(t: LayerTable, blocks: Sequence[str], rates: Sequence[int],
                     name: str) -> LayerTable:
    """A registered backbone's rates: one per listed block, on its K>1 convs."""
    rs = [int(r) for r in rates]
    if len(rs) != len(blocks) or any(r < 1 for r in rs):
        raise BackboneError(f"backbone={name!r}: rates={rs}: need {len(blocks)} positive rates, "
                            f"one per block of {', '.join(blocks)}")
    rate_of = dict(zip(blocks, rs, strict=True))
    ops = []
    for op in t.ops:
        if op.kind == "conv" and op.kernel > 1 and op.block in rate_of:
            if not op.same_padding:
                raise BackboneError(f"backbone={name!r}: {op.name}: padding={op.padding} is "
                                    f"not 'same' for kernel={op.kernel}; cannot re-dilate it")
            d = rate_of[op.block]
            op = replace(op, dilation=d, padding=d * (op.kernel - 1) // 2)
        ops.append(op)
    return LayerTable(tuple(ops), t.in_channels)


def rate_blocks(name: str, output_stride: int) -> tuple[str, ...]:
    """The blocks a per-block rate list sets at ``output_stride`` (``target_blocks``; for a
    registered backbone the blocks it was registered with, at every output stride)."""
    user = registry.get(name)
    if user is not None:
        return user.rate_blocks
    return target_blocks(trunk_table(name), output_stride)


def block_kernels(name: str, output_stride: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(the blocks a per-block rate list sets at ``output_stride``, each block's kernel)."""
    t = trunk_table(name)
    blocks = rate_blocks(name, output_stride)
    return blocks, tuple(max(op.kernel for op in t.convs() if op.block == b) for b in blocks)


def split_schedule(schedule: Schedule | str | Sequence[int], arch: ArchConfig,
                   kernel: int | None = None
                   ) -> tuple[Schedule, tuple[int, ...] | None, Schedule | None]:
    """(full schedule, backbone block rates or None, head schedule or None) for ``arch.target``.

    A rate list (not a Schedule) takes the blocks' own kernels, then ``kernel`` (3) for the
    head's layers; a Schedule must carry the blocks' kernels first.
    """
    name = arch.backbone
    blocks, bb_k_all = block_kernels(name, arch.output_stride)
    n_bb = len(blocks) if arch.target in ("backbone", "both") else 0
    bb_k = bb_k_all[:n_bb]
    rates = schedule.rates if isinstance(schedule, Schedule) else Schedule.coerce(schedule).rates
    if (arch.target == "backbone" and len(rates) != n_bb) or (
            arch.target == "both" and len(rates) <= n_bb):
        need = f"{n_bb}" if arch.target == "backbone" else f"more than {n_bb}"
        then = "" if arch.target == "backbone" else ", then the head's layers"
        raise ScheduleError(f"rates={list(rates)}: target={arch.target!r} on {name} at "
                            f"output_stride={arch.output_stride} needs {need} rates (blocks "
                            f"{', '.join(blocks)}{then})")
    if isinstance(schedule, Schedule):
        s = schedule
        if s.kernels[:n_bb] != bb_k:
            raise ScheduleError(f"kernels={list(s.kernels)}: the targeted blocks of {name} "
                                f"have kernels {list(bb_k)}")
    else:
        s = Schedule(rates, bb_k + (3 if kernel is None else kernel,) * (len(rates) - n_bb))
    if not s.stride_free:
        raise ScheduleError(f"strides={list(s.strides)}: searched layers keep resolution")
    if not s.plain:  # BackboneSegNet's stack and seg_table know square, unsmoothed layers
        raise ScheduleError(f"rates={list(s.rates)}: per-axis rates, smoothing and tails are "
                            "for the stem net (backbone='stem'), not a torchvision backbone")
    bb = s.rates[:n_bb] if n_bb else None
    head = Schedule(s.rates[n_bb:], s.kernels[n_bb:]) if arch.target != "backbone" else None
    return s, bb, head


def candidate_schedule(rates: Sequence[int], kernel: int, arch: ArchConfig) -> Schedule:
    """A space's candidate (``rates``, stack ``kernel``) as the schedule of the net ``arch``:
    on a backbone the targeted blocks keep their own kernels, ``kernel`` is the head's."""
    return split_schedule(tuple(rates), arch, kernel)[0]


def seg_table(trunk: LayerTable, head: Schedule | None, arch: ArchConfig) -> LayerTable:
    """The whole net's table: the trunk's rows (under ``backbone.trunk.``) then the head's,
    named as ``BackboneSegNet``'s modules (so a row finds its module by name)."""
    a = arch
    ops = [TableOp(f"backbone.trunk.{op.name}", op.kind, op.inputs, op.c_in, op.c_out,
                   op.kernel, op.stride, op.dilation, op.padding, op.groups, op.bias,
                   op.ceil_mode, op.block) for op in trunk.ops]
    has_norm = a.norm != "none"

    def conv(name: str, c_in: int, c_out: int, k: int = 1, d: int = 1,
             norm: str | None = None) -> None:
        """A conv row named ``name`` (biased unless a norm row ``norm`` follows)."""
        ops.append(TableOp(name, "conv", (len(ops) - 1,), c_in, c_out, k, 1, d,
                           d * (k - 1) // 2, bias=norm is None))
        if norm is not None:
            ops.append(TableOp(norm, "norm", (len(ops) - 1,), c_out, c_out, bias=True))

    c = trunk.out_channels
    if head is not None:  # ConvNormAct modules: "<name>.conv", "<name>.norm" when normed
        conv("reduce.conv", c, a.width, norm="reduce.norm" if has_norm else None)
        for i, (r, k) in enumerate(zip(head.rates, head.kernels, strict=True)):
            x = len(ops) - 1
            name = f"stack.layers.{i}"
            conv(f"{name}.conv", a.width, a.width, k, r,
                 norm=f"{name}.norm" if has_norm else None)
            if a.residual:
                ops.append(TableOp(f"stack.add{i}", "add", (x, len(ops) - 1)))
        c = a.width
    conv("head.classifier", c, a.num_classes)
    if a.context:
        n = a.num_classes
        for i, r in enumerate(a.context_rates):
            conv(f"head.context.conv{i}", n, n, 3, r)
        conv("head.context.out", n, n)
    return LayerTable(tuple(ops), trunk.in_channels)


def net_table(schedule: Schedule | str | Sequence[int], arch: ArchConfig,
              kernel: int | None = None) -> tuple[LayerTable, Schedule]:
    """(the whole net's table, its full schedule) for ``schedule`` on ``arch``'s backbone."""
    s, bb, head = split_schedule(schedule, arch, kernel)
    return seg_table(backbone_table(arch.backbone, arch.output_stride, bb), head, arch), s


def searched_rows(table: LayerTable, arch: ArchConfig) -> tuple[range, frozenset[str]]:
    """(the searched part's rows of a ``seg_table``: first to last, as a range; the names of
    its searched K>1 convs). The searched convs are the stack's and, for target "backbone" or
    "both", the K>1 convs of the targeted blocks (what the rates set)."""
    blocks = set(rate_blocks(arch.backbone, arch.output_stride)) if (
        arch.target != "head") else set()
    idx = [i for i, op in enumerate(table.ops)
           if op.block in blocks or op.name.startswith(("reduce.", "stack."))]
    names = frozenset(op.name for op in table.ops if op.kind == "conv" and op.kernel > 1 and (
        op.block in blocks or op.name.startswith("stack.")))
    return range(idx[0], idx[-1] + 1), names
