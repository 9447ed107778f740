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

Where the whole net is expressible (``target = "backbone"``, no context module),
`mmseg_config_text` writes a config file that builds it in mmseg 1.x (``export --mmseg``:
``mmseg_config.py``) and `to_mmseg_state_dict` renames the export's weights for it
(``mmseg_weights.pth``); `from_mmseg_state_dict` is its inverse. tests/export/test_mmseg.py
parses the file with mmengine and, where mmseg is importable, builds the model and compares it
with `load_exported`'s, conv by conv and on one input.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from nas_dil.models.config import ArchConfig
from nas_dil.models.tables import net_table, split_schedule
from nas_dil.schedule import Schedule
from nas_dil.schedule.layertable import LayerTable

__all__ = ["MMSEG_BASE", "MMSEG_CONFIG_FILE", "MMSEG_WEIGHTS_FILE", "MmsegExportError",
           "from_mmseg_state_dict", "mmseg_checkpoint", "mmseg_config_text", "mmseg_fragment",
           "to_mmseg_state_dict"]

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



# -- the config file and the checkpoint that build in mmseg ----------------------------------

MMSEG_CONFIG_FILE = "mmseg_config.py"
MMSEG_WEIGHTS_FILE = "mmseg_weights.pth"
# mmseg 1.x's FCN base model (EncoderDecoder, SyncBN, ImageNet-mean data preprocessor); the
# written file overrides its ResNetV1c backbone, its 512-channel head and its auxiliary head
MMSEG_BASE = "mmseg::_base_/models/fcn_r50-d8.py"
# export state_dict prefix -> mmseg checkpoint prefix: torchvision's ResNet and mmseg's
# ResNet(deep_stem=False) name every trunk tensor alike (conv1, bn1, layerN.M.convK/bnK,
# downsample.0/1); nas-dil's 1×1 classifier is FCNHead(num_convs=0)'s conv_seg
_PREFIXES = (("backbone.trunk.", "backbone."), ("head.classifier.", "decode_head.conv_seg."))


class MmsegExportError(ValueError):
    """A net mmseg cannot build as it is (the reasons, one phrase each, joined)."""


def _mmseg_model(schedule: Mapping[str, Any], arch: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model`` overrides of the written config (over `MMSEG_BASE`)."""
    frag = mmseg_fragment(schedule, arch)
    if not frag["expressible"]:
        raise MmsegExportError("; ".join(frag["not_expressible"]))
    a = ArchConfig.from_dict(dict(arch))
    bb = dict(frag["config"]["model"]["backbone"])
    c = 512 if bb["depth"] == 18 else 2048  # the last stage's channels (BasicBlock: 512)
    backbone = {"type": "ResNet", "depth": bb["depth"], "in_channels": a.in_channels,
                "deep_stem": False, "avg_down": False, "style": "pytorch",
                "strides": tuple(bb["strides"]), "dilations": tuple(bb["dilations"]),
                "contract_dilation": bb["contract_dilation"],
                **({"multi_grid": tuple(bb["multi_grid"])} if "multi_grid" in bb else {}),
                "out_indices": (0, 1, 2, 3), "norm_eval": False, "init_cfg": None}
    head = {"type": "FCNHead", "in_channels": c, "in_index": 3, "channels": c,
            "num_convs": 0, "concat_input": False, "dropout_ratio": 0.0,
            "num_classes": a.num_classes, "align_corners": False}
    return {"pretrained": None, "backbone": backbone, "decode_head": head,
            "auxiliary_head": None}


def _py(v: Any, indent: int = 0) -> str:
    """A Python literal in mmseg's config style (dict(key=…) for str-keyed dicts)."""
    if isinstance(v, dict):
        pad = " " * (indent + 4)
        items = ",\n".join(f"{pad}{k}={_py(x, indent + 4)}" for k, x in v.items())
        return f"dict(\n{items})"
    if isinstance(v, tuple):
        return "(" + ", ".join(_py(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def mmseg_config_text(schedule: Mapping[str, Any], arch: Mapping[str, Any], *,
                      weights_file: str | None = MMSEG_WEIGHTS_FILE,
                      base: str = MMSEG_BASE) -> str:
    """The content of ``mmseg_config.py``: ``_base_`` (`MMSEG_BASE`), the searched backbone
    (mmseg ``ResNet``, ``deep_stem=False``: torchvision's 7×7 stem, the layout of the
    exported weights, not ResNetV1c's deep stem), nas-dil's 1×1 classifier as an
    ``FCNHead(num_convs=0)`` with ``num_classes``, no auxiliary head, ``pretrained=None`` and
    ``init_cfg=None`` (the base's ``open-mmlab://resnet50_v1c`` is a deep-stem checkpoint),
    and ``load_from`` the converted checkpoint beside the file (`to_mmseg_state_dict`).
    MmsegExportError when mmseg cannot build the net."""
    model = _mmseg_model(schedule, arch)
    rates = list(schedule.get("rates", ()))
    lines = [
        "# mmsegmentation 1.x config of a nas-dil export (schedule.json beside this file).",
        f"# Searched rates {rates} on {arch.get('backbone')} at output stride "
        f"{arch.get('output_stride')}.",
        "# Backbone: mmseg `ResNet` with deep_stem=False: torchvision's layout (one 7×7 stem "
        "conv), that",
        "# of the exported weights; not ResNetV1c (three 3×3 stem convs), so the base's V1c",
        "# checkpoint (`pretrained`) is switched off and the converted weights are loaded "
        "whole.",
        "# Head: nas-dil's 1×1 classifier on the last stage = FCNHead(num_convs=0); logits are",
        "# up-sampled bilinearly (align_corners=False), as nas-dil does. The base's data",
        "# preprocessor (ImageNet mean/std on RGB) is nas-dil's normalisation. Its SyncBN needs",
        "# a distributed launch to train; for one GPU set norm_cfg=dict(type='BN', "
        "requires_grad=True).",
        f"_base_ = [{base!r}]",
        "",
        f"model = {_py(model)}",
        "",
    ]
    if weights_file is not None:
        lines += ["# the export's weights in mmseg's names (nas_dil.export.mmseg."
                  "to_mmseg_state_dict)",
                  f"load_from = '{{{{ fileDirname }}}}/{weights_file}'", ""]
    else:
        lines += ["# exported without weights: the net starts from its initial weights",
                  "load_from = None", ""]
    return "\n".join(lines)


def _rename(state: Mapping[str, Any], pairs: tuple[tuple[str, str], ...],
            what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in state.items():
        new = next((to + k[len(fr):] for fr, to in pairs if k.startswith(fr)), None)
        if new is None:
            raise MmsegExportError(f"{what} key {k!r}: mmseg's ResNet + FCNHead have no "
                                   f"counterpart (expected a key under "
                                   f"{', '.join(fr for fr, _ in pairs)})")
        out[new] = v
    return out


def to_mmseg_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """An export's state_dict (a torchvision ResNet trunk + 1×1 classifier) in the names of
    the model `mmseg_config_text` describes; `from_mmseg_state_dict` inverts it."""
    return _rename(state, _PREFIXES, "state_dict")


def from_mmseg_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """`to_mmseg_state_dict` backwards: an mmseg checkpoint's ``state_dict`` in nas-dil's
    names (loads into `load_exported`'s net)."""
    return _rename(state, tuple((b, a) for a, b in _PREFIXES), "mmseg state_dict")


def mmseg_checkpoint(state: Mapping[str, Any], meta: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
    """What ``load_from`` reads: ``{"meta": …, "state_dict": to_mmseg_state_dict(state)}``."""
    return {"meta": dict(meta or {}), "state_dict": to_mmseg_state_dict(state)}
