"""The exported net as an mmsegmentation config fragment, where mmseg can express it.

mmseg's ``ResNet`` backbone (``style="pytorch"``: torchvision's layout, stride on the 3×3
conv) takes per-stage ``strides`` and ``dilations``, ``contract_dilation`` (the first block of
a dilated stage gets half the dilation: torchvision's convention) and ``multi_grid`` (the last
stage's per-block dilations, as given). Its Bottleneck dilates the 3×3 conv, its BasicBlock
only the first of its two 3×3 convs (torchvision's net and nas-dil's rates dilate both).

The fragment is derived, then verified: each candidate setting is expanded the way mmseg's
``ResLayer`` builds its blocks and compared with the nas-dil net's layer table conv by conv
(stride and dilation); only an exact match is written. Everything else says why not: rates
that differ within an earlier stage (beyond what ``multi_grid`` covers), BasicBlock ResNets
with any dilation, MobileNetV3 and VGG (no such mmseg backbone settings), and the nas-dil head
stack (mmseg has no decode head with per-layer dilations). Pure numpy; no mmseg needed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from nas_dil.models.config import ArchConfig
from nas_dil.models.tables import net_table, split_schedule
from nas_dil.schedule import Schedule
from nas_dil.schedule.layertable import LayerTable

__all__ = ["mmseg_fragment"]

_DEPTH = {"resnet18": 18, "resnet50": 50, "resnet101": 101}
_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _block_convs(table: LayerTable) -> dict[str, dict[str, tuple[int, int]]]:
    """block ("layer4.0") -> {conv leaf name: (stride, dilation)} of its K×K and down convs."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    prefix = "backbone.trunk."
    for op in table.convs():
        if not op.name.startswith(prefix + "layer"):
            continue
        block, _, leaf = op.name[len(prefix):].partition(".")[2].partition(".")
        stage = op.name[len(prefix):].split(".")[0]
        out.setdefault(f"{stage}.{block}", {})[leaf] = (op.stride, op.dilation)
    return out


def _mmseg_blocks(n_blocks: list[int], bottleneck: bool, strides: tuple[int, ...],
                  dilations: tuple[int, ...], contract: bool,
                  multi_grid: tuple[int, ...] | None) -> dict[str, dict[str, tuple[int, int]]]:
    """What mmseg's ResNet(style="pytorch") builds: the same shape as `_block_convs`."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for s, (n, st, d) in enumerate(zip(n_blocks, strides, dilations, strict=True)):
        mg = multi_grid if s == len(n_blocks) - 1 else None  # mmseg: the last stage only
        for i in range(n):
            if mg is not None:
                di = mg[i]
            elif i == 0 and d > 1 and contract:
                di = d // 2
            else:
                di = d
            stride = st if i == 0 else 1
            convs = ({"conv1": (1, 1), "conv2": (stride, di), "conv3": (1, 1)} if bottleneck
                     else {"conv1": (stride, di), "conv2": (1, 1)})
            if i == 0 and (bottleneck or s > 0):  # channels or stride change: a 1×1 down
                convs["downsample.0"] = (st, 1)
            out[f"{_STAGES[s]}.{i}"] = convs
    return out


def _resnet(table: LayerTable, name: str, output_stride: int) -> dict[str, Any] | None:
    """The mmseg ResNet settings that build exactly ``table``'s trunk, or None."""
    have = _block_convs(table)
    n_blocks = [sum(1 for b in have if b.startswith(st + ".")) for st in _STAGES]
    bottleneck = any("conv3" in c for c in have.values())
    strides = tuple(2 if 4 * 2 ** s <= output_stride else 1 for s in range(4))
    strides = (1, *strides[1:])  # layer1 never strides (the stem's max-pool does)

    def stage_dil(s: int) -> int:
        """The stage's dilation as the (non-first) blocks have it."""
        b = f"{_STAGES[s]}.{min(1, n_blocks[s] - 1)}"
        return have[b]["conv2" if bottleneck else "conv1"][1]

    last = tuple(have[f"layer4.{i}"]["conv2" if bottleneck else "conv1"][1]
                 for i in range(n_blocks[3]))
    dilations = tuple(stage_dil(s) for s in range(4))
    for contract, mg in itertools.product((True, False), (None, last)):
        built = _mmseg_blocks(n_blocks, bottleneck, strides, dilations, contract, mg)
        if built == have:
            return {"type": "ResNet", "depth": _DEPTH[name], "style": "pytorch",
                    "strides": list(strides), "dilations": list(dilations),
                    "contract_dilation": contract,
                    **({"multi_grid": list(mg)} if mg is not None else {})}
    return None


def mmseg_fragment(schedule: Mapping[str, Any], arch: Mapping[str, Any]) -> dict[str, Any]:
    """``{"expressible", "config", "not_expressible"}`` for an exported net (its
    ``model_config``'s schedule and arch): ``config`` is the mmseg fragment
    (``{"model": {"backbone": {...}}}``) when the backbone is expressible, None otherwise;
    ``not_expressible`` lists the parts mmseg cannot take, one phrase each; ``expressible``
    is true when nothing is left out."""
    a = ArchConfig.from_dict(dict(arch))
    s = Schedule.from_dict(dict(schedule))
    reasons: list[str] = []
    config: dict[str, Any] | None = None
    if a.backbone == "stem":
        reasons.append("the nas-dil stem net has no mmseg backbone")
    elif a.backbone not in _DEPTH:
        reasons.append(f"{a.backbone}: mmseg's MobileNetV3/VGG backbones take no per-block "
                       "dilations")
    else:
        table, _ = net_table(s, a)
        bb = _resnet(table, a.backbone, a.output_stride)
        if bb is None:
            why = ("mmseg's BasicBlock dilates only its first 3×3 conv"
                   if a.backbone == "resnet18" else
                   "per-block rates outside the last stage (mmseg's multi_grid covers the "
                   "last stage only)")
            reasons.append(f"{a.backbone} at output_stride={a.output_stride} with these "
                           f"dilations: {why}")
        else:
            config = {"model": {"backbone": bb}}
    if a.backbone != "stem" and a.target in ("head", "both"):
        head = split_schedule(s, a)[2]
        rates = list(head.rates) if head is not None else []
        reasons.append(f"the nas-dil head stack (rates {rates}): mmseg has no decode head "
                       "with per-layer dilations")
    if a.context:
        reasons.append("the context module (rates "
                       f"{list(a.context_rates)}): no mmseg equivalent")
    return {"expressible": not reasons, "config": config, "not_expressible": reasons}

