"""Backbones (torchvision, timm, registered) with searched per-block dilation rates, and
``apply_schedule``.

A backbone is a torchvision or timm classification net cut before its pooling and classifier
(its *trunk*; timm's: what ``forward_features`` runs), or a user's module given to
``register_backbone``. Its layer table (``nas_dil.schedule.layertable``) is extracted by
tracing the trunk built on the meta device (no weights, no memory: ``layer_table``) and
shipped as package data (``nas_dil.models.tables``, written by ``write_tables``, held equal to
a fresh extraction by the tests); output stride and rates are applied to the stored table
in pure numpy (``dilate``), and the same table then sets each conv's stride, dilation and
padding on the torch modules. Weight shapes never change, so
pretrained weights load at any output stride and any rates.

torchvision and timm are optional dependencies (``pip install 'nas-dil[vision]'``,
``'nas-dil[timm]'``): imported on first use, their absence is one line naming the extra.
docs/backbones.md has the timm families, their conventions and the refusals.

Over 500 lines on purpose: tracing a torchvision or timm trunk into its layer table and
setting strides and rates back on its modules are two halves of one mapping.
"""

from __future__ import annotations

import json
import operator
import re
import urllib.error
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from nas_dil.models import registry
from nas_dil.models.config import TIMM_BACKBONES, TIMM_PREFIX, TV_BACKBONES, ArchConfig
from nas_dil.models.layers import ConvNormAct, DilatedStack, Head
from nas_dil.models.tables import (
    TABLE_DIR,
    BackboneError,
    backbone_table,
    check_dilated,
    check_name,
    seg_table,
    split_schedule,
    table_path,
)
from nas_dil.schedule import Schedule, coverage
from nas_dil.schedule.layertable import (
    IMAGE,
    LayerTable,
    TableOp,
    dilate,
    op_sizes,
    table_cost,
    table_coverage,
    table_rf,
    target_blocks,
)

__all__ = [
    "Backbone",
    "BackboneError",
    "BackboneSegNet",
    "apply_schedule",
    "apply_table",
    "backbone_table",
    "check_backbone",
    "describe_backbone_model",
    "extract_table",
    "layer_table",
    "load_weights",
    "model_table",
    "register_backbone",
    "seg_table",
    "trunk_of",
    "write_tables",
]


def _tvm() -> Any:
    try:
        import torchvision.models as tvm
    except (ImportError, RuntimeError) as e:  # RuntimeError: ops built for another torch
        raise BackboneError(
            f"torchvision backbones need a torchvision that matches torch {torch.__version__} "
            f"({type(e).__name__}: {str(e).splitlines()[0]}); install it with "
            "`pip install 'nas-dil[vision]'` (README: pairing torch and torchvision)"
        ) from None
    return tvm


def _timm() -> Any:
    try:
        import timm
    except (ImportError, RuntimeError) as e:
        raise BackboneError(f"timm backbones need timm ({type(e).__name__}: "
                            f"{str(e).splitlines()[0]}); install it with "
                            "`pip install 'nas-dil[timm]'`") from None
    return timm


# timm's families nas-dil tabulates: class name -> (the children forward_features runs, in
# order; the pattern of a block's module path, what one block rate sets)
TIMM_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "ResNet": (("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"),
               r"layer\d+\.\d+"),  # ResNet, ResNet-D, ResNeSt (split attention blocks)
    "RegNet": (("stem", "s1", "s2", "s3", "s4", "final_conv"), r"s\d+\.b\d+"),
    "ConvNeXt": (("stem", "stages", "norm_pre"), r"stages\.\d+\.blocks\.\d+"),
    "EfficientNet": (("conv_stem", "bn1", "blocks", "conv_head", "bn2"), r"blocks\.\d+\.\d+"),
}


def _timm_family(model: nn.Module) -> str | None:
    cls = type(model)
    if cls.__module__.startswith("timm.") and cls.__name__ in TIMM_FAMILIES:
        return cls.__name__
    return None


def _timm_block_of(family: str) -> Callable[[str], str]:
    pattern = re.compile(TIMM_FAMILIES[family][1])

    def block_of(path: str) -> str:
        m = pattern.match(path)
        return m.group(0) if m else ""  # stems, downsampling layers, final norms: no block

    return block_of


def trunk_of(model: nn.Module) -> nn.Sequential:
    """The feature trunk of a torchvision ResNet, VGG or MobileNetV3, or of a timm ResNet,
    ResNeSt, RegNet, ConvNeXt or EfficientNet (what its ``forward_features`` runs), sharing
    its modules.

    Module paths inside the trunk are those of the model, so the trunk's state_dict keys are
    the model's (pretrained checkpoints load into either).
    """
    family = _timm_family(model)
    if family is not None:
        names = TIMM_FAMILIES[family][0]
        return nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))
    tvm = _tvm()
    if isinstance(model, tvm.ResNet):
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        return nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))
    if isinstance(model, tvm.VGG | tvm.MobileNetV3):
        return nn.Sequential(OrderedDict(features=model.features))
    raise BackboneError(f"model of type {type(model).__name__}: apply_schedule and backbones "
                        "take a torchvision ResNet, VGG or MobileNetV3 or a timm "
                        f"{', '.join(TIMM_FAMILIES)}")


# -- the layer table, by tracing -------------------------------------------------------------

_POINTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid,
                      nn.GELU, nn.Identity, nn.Dropout)
_POINTWISE_FUNCS = {F.relu, F.relu6, F.hardswish, F.hardsigmoid, F.gelu, F.silu, torch.relu,
                    torch.sigmoid}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "contiguous"}
_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
PARAM = -2  # a row index for a learned tensor (layer scale γ) in extract_table


def _block_of(path: str) -> str:
    """The block a module belongs to: its path up to the first Sequential index."""
    parts = path.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[: i + 1])
    return path


def _square(value: Any, what: str, name: str) -> int:
    vals = tuple(value) if isinstance(value, tuple | list) else (value,)
    if len(set(vals)) != 1 or not isinstance(vals[0], int):
        raise BackboneError(f"{name}: {what}={value!r} is not square; layer tables need square")
    return int(vals[0])


@cache
def _leaf_types() -> tuple[type, ...]:
    """Modules traced as one op: norms (timm's BatchNormAct2d/LayerNorm2d subclass torch's),
    timm's DropPath (pointwise) and split attention (``_split_attn_ops``)."""
    out: tuple[type, ...] = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.Conv2d,
                             nn.MaxPool2d, nn.AvgPool2d)  # subclasses too: refused by name
    try:
        from timm.layers import DropPath, SplitAttn
    except ImportError:  # no timm: no timm modules to meet
        return out
    return (*out, DropPath, SplitAttn)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _leaf_types()) or super().is_leaf_module(m, module_qualified_name)


def _module_op(name: str, m: nn.Module, inputs: tuple[int, ...], block: str) -> TableOp | None:
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros" or isinstance(m.padding, str) or type(m).__name__ in (
                "Conv2dSame", "Conv2dSameExport"):  # timm's asymmetric "same" padding
            raise BackboneError(f"{name}: padding={m.padding!r} ({m.padding_mode}, "
                                f"{type(m).__name__}) unsupported: layer tables need symmetric "
                                "zero padding")
        return TableOp(name, "conv", inputs, m.in_channels, m.out_channels,
                       _square(m.kernel_size, "kernel_size", name),
                       _square(m.stride, "stride", name), _square(m.dilation, "dilation", name),
                       _square(m.padding, "padding", name), m.groups, m.bias is not None,
                       block=block)
    if isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
        c = m.num_features if isinstance(m, nn.BatchNorm2d) else m.num_channels
        return TableOp(name, "norm", inputs, c, c, bias=bool(m.affine), block=block)
    if isinstance(m, nn.LayerNorm):  # timm's LayerNorm2d (NCHW) or NHWC: per pixel, over C
        if len(m.normalized_shape) != 1 or (m.elementwise_affine and m.bias is None):
            raise BackboneError(f"{name}: LayerNorm{list(m.normalized_shape)} (bias="
                                f"{m.bias is not None}) has no layer-table rule")
        c = int(m.normalized_shape[0])
        return TableOp(name, "norm", inputs, c, c, bias=bool(m.elementwise_affine), block=block)
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        if type(m).__name__ not in ("MaxPool2d", "AvgPool2d"):  # timm's *Same: one-sided pad
            raise BackboneError(f"{name}: {type(m).__name__} unsupported: layer tables need "
                                "symmetric zero padding")
        if isinstance(m, nn.AvgPool2d) and (m.divisor_override or (
                not m.count_include_pad and _square(m.padding, "padding", name))):
            # count_include_pad matters only where a window reads padding
            raise BackboneError(f"{name}: AvgPool2d without count_include_pad is unsupported")
        dil = m.dilation if isinstance(m, nn.MaxPool2d) else 1
        kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
        return TableOp(name, kind, inputs, kernel=_square(m.kernel_size, "kernel_size", name),
                       stride=_square(m.stride, "stride", name),
                       dilation=_square(dil, "dilation", name),
                       padding=_square(m.padding, "padding", name),
                       ceil_mode=bool(m.ceil_mode), block=block)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if _square(m.output_size, "output_size", name) != 1:
            raise BackboneError(f"{name}: only a global (1×1) adaptive pool is supported")
        return TableOp(name, "global", inputs, block=block)
    if isinstance(m, _POINTWISE_MODULES) or type(m).__name__ == "DropPath":
        return None
    raise BackboneError(f"{name}: module {type(m).__name__} has no layer-table rule")


def _split_attn_ops(name: str, m: nn.Module, x: int, block: str, at: int) -> list[TableOp]:
    """timm's split attention (ResNeSt) as rows from row ``at`` on: its grouped conv (radix ×
    the channels), norm, the attention from a global pool (fc1, norm, fc2), and the gate. The
    radix sum after the gate changes no cost and no support (the table's channels past it are
    the module's, read from the next conv)."""
    ops: list[TableOp] = []

    def add(part: str, src: int) -> int:
        op = _module_op(f"{name}.{part}", m.get_submodule(part), (src,), block)
        if op is None:
            raise BackboneError(f"{name}.{part}: split attention with an unsupported part")
        ops.append(op)
        return at + len(ops) - 1

    feat = add("conv", x)
    if isinstance(m.get_submodule("bn0"), nn.BatchNorm2d):
        feat = add("bn0", feat)
    ops.append(TableOp(f"{name}.gap", "global", (feat,), block=block))
    attn = add("fc1", at + len(ops) - 1)
    if isinstance(m.get_submodule("bn1"), nn.BatchNorm2d):
        attn = add("bn1", attn)
    attn = add("fc2", attn)
    ops.append(TableOp(f"{name}.attn", "gate", (feat, attn), block=block))
    return ops


def extract_table(trunk: nn.Module, in_channels: int = 3,
                  block_of: Callable[[str], str] = _block_of) -> LayerTable:
    """The layer table of ``trunk`` by symbolic tracing (nothing is computed; meta is fine).
    ``block_of`` names each module's block (what one block rate sets; "" for none)."""
    gm = fx.GraphModule(trunk, _Tracer().trace(trunk))
    ops: list[TableOp] = []
    row: dict[str, int] = {}  # fx node name -> table row (IMAGE for the input, PARAM)
    out = None
    for node in gm.graph.nodes:
        args = [a for a in node.args if isinstance(a, fx.Node)]
        ins = tuple(row[a.name] for a in args)
        if node.op == "placeholder":
            row[node.name] = IMAGE
        elif node.op == "get_attr":
            row[node.name] = PARAM
        elif node.op == "call_module":
            target = str(node.target)
            m = gm.get_submodule(target)
            if type(m).__name__ == "SplitAttn":
                ops.extend(_split_attn_ops(target, m, ins[0], block_of(target), len(ops)))
                row[node.name] = len(ops) - 1
                continue
            op = _module_op(target, m, ins[:1], block_of(target))
            if op is None:
                row[node.name] = ins[0]
            else:
                ops.append(op)
                row[node.name] = len(ops) - 1
        elif node.op in ("call_function", "call_method"):
            t = node.target
            local = [j for j in ins if j != PARAM]
            block = ops[local[0]].block if local and local[0] != IMAGE else ""
            if ins and all(j == PARAM for j in ins):
                row[node.name] = PARAM  # γ.reshape(1, -1, 1, 1): still the parameter
            elif t in _ADD or t in ("add", "add_"):
                ops.append(TableOp(f"{node.name}@{block}", "add", ins, block=block))
                row[node.name] = len(ops) - 1
            elif (t in _MUL or t in ("mul", "mul_")) and PARAM in ins:
                # layer scale x · γ: one learned factor per channel
                p = next(a for a in args if row[a.name] == PARAM)
                c = int(_param_of(gm, p).numel())
                ops.append(TableOp(f"{node.name}@{block}", "scale", tuple(local), c, c,
                                   block=block))
                row[node.name] = len(ops) - 1
            elif t in _MUL or t in ("mul", "mul_"):
                # SE: scale · x; list the feature map first
                ins = tuple(sorted(ins, key=lambda j: j != IMAGE and ops[j].kind == "global"))
                ops.append(TableOp(f"{node.name}@{block}", "gate", ins, block=block))
                row[node.name] = len(ops) - 1
            elif (t is F.adaptive_avg_pool2d and node.args[1] in (1, (1, 1))) or (
                    t == "mean" and _global_mean(node)):
                ops.append(TableOp(f"{node.name}@{block}", "global", ins, block=block))
                row[node.name] = len(ops) - 1
            elif t in _POINTWISE_FUNCS or t in _POINTWISE_METHODS:
                row[node.name] = ins[0]
            else:
                raise BackboneError(f"{node.name}: function {t} has no layer-table rule")
        elif node.op == "output":
            out = row[node.args[0].name]
    if out != len(ops) - 1:
        raise BackboneError("the trunk's output is not its last op; cannot tabulate it")
    return LayerTable(tuple(ops), in_channels)


def _param_of(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor:
    """The parameter a node reads (through reshapes): the get_attr at its root."""
    while node.op != "get_attr":
        node = next(a for a in node.args if isinstance(a, fx.Node))
    t = gm.get_parameter(str(node.target))
    return t


def _global_mean(node: fx.Node) -> bool:
    """``x.mean((2, 3), keepdim=True)``: a global average pool (timm's squeeze-excitation)."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return tuple(dims) in ((2, 3), (-2, -1)) and bool(keep) if isinstance(
        dims, tuple | list) else False


def _stock(name: str) -> nn.Module:
    """Backbone ``name``'s trunk as its library builds it (output stride 32, random weights)."""
    check_name(name)
    user = registry.get(name)
    if user is not None:
        m = user.build()
        if not isinstance(m, nn.Module):
            raise BackboneError(f"backbone={name!r}: its build function returned a "
                                f"{type(m).__name__}, not an nn.Module")
        return m
    if name.startswith(TIMM_PREFIX):
        return trunk_of(_timm_model(name.removeprefix(TIMM_PREFIX)))
    return trunk_of(getattr(_tvm(), name)(weights=None))


def _timm_model(model: str) -> nn.Module:
    timm = _timm()
    if not timm.is_model(model):
        raise BackboneError(f"backbone='timm:{model}': timm {timm.__version__} has no model "
                            f"{model!r} (timm.list_models('{model[:6]}*') lists near names)")
    m = timm.create_model(model, pretrained=False)
    if _timm_family(m) is None:
        raise BackboneError(f"backbone='timm:{model}': a timm {type(m).__name__}; nas-dil "
                            f"tabulates the timm families {', '.join(TIMM_FAMILIES)}")
    return m


def _block_rule(name: str, trunk: nn.Module) -> Callable[[str], str]:
    """How module paths of backbone ``name``'s trunk name their blocks."""
    if name.startswith(TIMM_PREFIX):  # the family, by the children forward_features runs
        kids = tuple(n for n, _ in trunk.named_children())
        return _timm_block_of(next(f for f, (k, _) in TIMM_FAMILIES.items() if k == kids))
    return _block_of


@cache
def layer_table(name: str) -> LayerTable:
    """Layer table of backbone ``name`` freshly extracted from torchvision or timm (output
    stride 32); equal to the stored ``tables.trunk_table(name)`` the rest of nas-dil reads
    (tested)."""
    with torch.device("meta"):
        trunk = _stock(name)
    try:
        return extract_table(trunk, block_of=_block_rule(name, trunk))
    except fx.proxy.TraceError as e:  # data-dependent control flow in a module
        raise BackboneError(f"backbone={name!r}: cannot trace its trunk "
                            f"({str(e).splitlines()[0]})") from None


registry.set_table_source(layer_table)  # timm models without a stored table


def write_tables(names: Sequence[str] = TV_BACKBONES + TIMM_BACKBONES,
                 folder: Path = TABLE_DIR) -> list[Path]:
    """Store every backbone's freshly extracted table as JSON (what ``trunk_table`` reads);
    run after a torchvision or timm upgrade changes a trunk (tests/models says when)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        path = folder / table_path(name).name
        t = layer_table(name)
        rows = ",\n".join(json.dumps(op.to_dict(), separators=(",", ":")) for op in t.ops)
        path.write_text(f'{{"in_channels": {t.in_channels}, "ops": [\n{rows}\n]}}\n')
        out.append(path)
    return out


def apply_table(trunk: nn.Module, table: LayerTable) -> None:
    """Set stride, dilation and padding of every conv/pool in ``trunk`` as ``table`` says;
    pools the table skips become ``nn.Identity``. Weights are untouched."""
    for op in table.ops:
        if op.kind not in ("conv", "maxpool", "avgpool", "skip"):
            continue
        m = trunk.get_submodule(op.name)
        if op.kind == "skip":
            parent, _, leaf = op.name.rpartition(".")
            setattr(trunk.get_submodule(parent) if parent else trunk, leaf, nn.Identity())
        elif isinstance(m, nn.Conv2d):
            m.stride, m.dilation, m.padding = (op.stride,) * 2, (op.dilation,) * 2, (
                op.padding,) * 2
        elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d):  # the pool kinds' modules (_module_op)
            m.stride, m.padding = op.stride, op.padding
            if isinstance(m, nn.MaxPool2d):
                m.dilation = op.dilation
        else:  # a table not extracted from this trunk
            raise BackboneError(f"{op.name}: table says {op.kind}, module is {type(m).__name__}")


# -- weights ---------------------------------------------------------------------------------

def _state_dict(name: str, weights: str) -> dict[str, torch.Tensor]:
    if weights == "imagenet" and name not in TV_BACKBONES:  # nas-dil never downloads these
        raise BackboneError(
            f"weights='imagenet' with backbone={name!r}: only torchvision trunks take "
            "'imagenet'; give the path of a state_dict (for timm: torch.save(timm.create_model("
            "name, pretrained=True).state_dict(), path) where timm can download)")
    if weights == "imagenet":
        w = _tvm().get_model_weights(name).DEFAULT
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        if not path.is_file():
            try:
                return torch.hub.load_state_dict_from_url(w.url, map_location="cpu",
                                                          progress=True, weights_only=True)
            except (urllib.error.URLError, OSError) as e:
                raise BackboneError(
                    f"weights='imagenet': {name}'s ImageNet weights are not at {path} and "
                    f"cannot be downloaded ({getattr(e, 'reason', e)}); put {w.url} there "
                    "(or set TORCH_HOME to a folder whose hub/checkpoints/ has it)"
                ) from None
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneError(f"weights={weights!r}: no such file (use 'none', 'imagenet' "
                                "or the path of a state_dict)")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code, a truncated file, not a torch file at all
        why = ": ".join([type(e).__name__, *str(e).splitlines()[:1]])  # EOFError has no text
        raise BackboneError(f"weights={str(path)!r}: cannot load a state_dict ({why})"
                            ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BackboneError(f"weights={str(path)!r}: not a state_dict (name -> tensor)")
    return sd


def _check_state_dict(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], name: str,
                      weights: str) -> None:
    """Every trunk tensor in ``sd`` with its shape, else one line."""
    missing = [k for k in own if k not in sd]
    if missing:
        raise BackboneError(f"weights={weights!r}: {len(missing)} tensors of {name} missing, "
                            f"e.g. {missing[:3]}")
    bad = [k for k in own if sd[k].shape != own[k].shape]
    if bad:
        k = bad[0]
        raise BackboneError(f"weights={weights!r}: {k} has shape {list(sd[k].shape)}, "
                            f"{name} needs {list(own[k].shape)}")


def load_weights(trunk: nn.Module, name: str, weights: str) -> None:
    """Load ``weights`` ('none', 'imagenet' or a state_dict path) into a trunk.

    The state_dict may be the whole torchvision model's (its classifier is ignored) or the
    trunk's; every trunk tensor must be there with its shape.
    """
    if weights == "none":
        return
    sd = _state_dict(name, weights)
    own = trunk.state_dict()
    _check_state_dict(own, sd, name, weights)
    trunk.load_state_dict({k: sd[k] for k in own})


def check_backbone(name: str, weights: str) -> None:
    """What a trial on backbone ``name`` needs, checked before a search writes anything:
    torchvision importable, and the weights there ('imagenet': in torch's hub cache, or
    downloadable now; a path: a state_dict with every trunk tensor at its shape). One
    `BackboneError` line otherwise."""
    check_name(name)
    with torch.device("meta"):
        own = _stock(name).state_dict()  # imports torchvision/timm: its error first
    if weights != "none":
        _check_state_dict(own, _state_dict(name, weights), name, weights)


class Backbone(nn.Module):
    """A torchvision trunk at ``output_stride``, with optional per-block ``rates``.

    One stride-to-dilation rule for every backbone (``layertable.dilate``): it equals
    torchvision's ``replace_stride_with_dilation`` on ResNets (tested); on MobileNetV3 it
    differs from torchvision's ``dilated=True`` in one conv (the formerly strided depthwise
    conv of the last stage keeps dilation 1 there; torchvision gives it 2).
    """

    def __init__(self, name: str, output_stride: int = 32, rates: Sequence[int] | None = None,
                 weights: str = "none") -> None:
        super().__init__()
        self.name = name
        self.table = backbone_table(name, output_stride, rates)
        self.trunk = _stock(name)
        load_weights(self.trunk, name, weights)
        apply_table(self.trunk, self.table)
        self.out_channels = self.table.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


# -- the segmentation net on a backbone ------------------------------------------------------

class BackboneSegNet(nn.Module):
    """Backbone → [1×1 reduce to ``width`` → dilated stack] → head → bilinear up-sampling.

    ``arch.target``: "head" searches the stack on the backbone (rates = the stack's),
    "backbone" the targeted blocks' rates (no stack: the classifier sits on the backbone),
    "both" the block rates then the stack's. ``schedule`` holds the full rate list.
    """

    def __init__(self, schedule: Schedule | str | Sequence[int], arch: ArchConfig,
                 kernel: int | None = None) -> None:
        super().__init__()
        self.arch = a = arch
        self.schedule, bb_rates, head = split_schedule(schedule, a, kernel)
        self.backbone = Backbone(a.backbone, a.output_stride, bb_rates, a.weights)
        c = self.backbone.out_channels
        self.reduce: nn.Module | None = None
        self.stack: DilatedStack | None = None
        if head is not None:
            self.reduce = ConvNormAct(c, a.width, 1, norm=a.norm, act=a.act,
                                      gn_groups=a.gn_groups)
            self.stack = DilatedStack(head, a.width, a.norm, a.act, a.residual, a.gn_groups)
            c = a.width
        self.head = Head(c, a.num_classes, a.context, a.context_rates, a.act)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.backbone(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after the backbone, on its features (what a frozen-backbone trial
        trains on cached features; ``nas_dil.train.features``)."""
        if self.stack is not None:
            assert self.reduce is not None  # set together with stack in __init__
            x = self.stack(self.reduce(x))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.forward_lowres(x), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)

    def extra_repr(self) -> str:
        return f"backbone={self.arch.backbone}, target={self.arch.target}, rates={self.schedule}"


def model_table(model: BackboneSegNet) -> LayerTable:
    """The analytic table of a built net (from its config alone: no tracing)."""
    a = model.arch
    _, bb, head = split_schedule(model.schedule, a)
    return seg_table(backbone_table(a.backbone, a.output_stride, bb), head, a)


def describe_backbone_model(model: BackboneSegNet, h: int, w: int) -> dict[str, Any]:
    """``describe_model``'s keys for a net on a backbone, from its layer table (analytic).

    ``rf_stem`` is the backbone trunk's RF, ``rf_stack`` the searched stack's own (None with
    target "backbone"), ``rf_image`` the whole net's; all nominal, image pixels per axis.
    """
    a = model.arch
    _, bb, head = split_schedule(model.schedule, a)
    trunk = backbone_table(a.backbone, a.output_stride, bb)
    table = seg_table(trunk, head, a)
    cost = table_cost(table, h, w)
    sizes = op_sizes(table, h, w)
    full = table_coverage(table)
    stack = coverage(head) if head is not None else None
    return {
        "schedule": model.schedule.to_dict(),
        "arch": a.to_dict(),
        "input": [h, w],
        "output_lowres": [cost.out_h, cost.out_w],
        "layers": [
            {"name": op.name, "kind": op.kind, "c_in": op.c_in, "c_out": op.c_out,
             "kernel": op.kernel, "stride": op.stride, "dilation": op.dilation,
             "padding": op.padding, "groups": op.groups, "out": list(sz), "macs": m,
             "params": p}
            for op, sz, m, p in zip(table.ops, sizes, cost.op_macs, cost.op_params,
                                    strict=True)
            if op.kind in ("conv", "maxpool", "avgpool")
        ],
        "params": sum(p.numel() for p in model.parameters()),
        "macs": cost.macs,
        "flops": cost.flops,
        "gflops": cost.gflops,
        "rf_stem": table_rf(trunk),
        "rf_stack": stack.rf if stack is not None else None,
        "rf_features": table_rf(seg_table(trunk, head, replace(a, context=False))),
        "rf_image": full.rf,
        "stack_holes_1d": stack.holes_1d if stack is not None else 0,
        "image_holes_1d": full.holes_1d,
    }


# -- a user's own model ----------------------------------------------------------------------

def apply_schedule(model: nn.Module, rates: Sequence[int], *, target: str = "backbone",
                   output_stride: int = 32) -> list[str]:
    """Set searched per-block dilation ``rates`` on a torchvision ResNet/VGG/MobileNetV3 or
    a timm model of a supported family (``timm.create_model(name)``) in place, as ``[arch]
    backbone``/``output_stride``/``target = "backbone"`` build it; returns the names of the
    convs whose dilation the rates set.

    The model must be as its library builds it (no dilation yet; weights may be loaded).
    ``output_stride`` (8, 16, 32) first turns the strides past it into dilations; the rates
    then go to the K>1 convs of the blocks ``target_blocks`` names, one rate per block.
    ``target`` must be "backbone": a torchvision model has no nas-dil head.
    """
    if target != "backbone":
        raise BackboneError(f"target={target!r}: a torchvision model has no nas-dil head; "
                            "apply_schedule sets target='backbone' rates")
    trunk = trunk_of(model)
    first = next(m for m in trunk.modules() if isinstance(m, nn.Conv2d))
    family = _timm_family(model)
    table = extract_table(trunk, int(first.in_channels),
                          _block_of if family is None else _timm_block_of(family))
    dilated = [op.name for op in table.convs() if op.dilation > 1]
    if dilated:
        raise BackboneError(f"{dilated[0]} has dilation already: apply_schedule takes the "
                            "model as torchvision builds it")
    try:
        new = dilate(table, output_stride, [int(r) for r in rates])
    except ValueError as e:
        raise BackboneError(str(e)) from None
    check_dilated(table, new, type(model).__name__, output_stride)
    apply_table(trunk, new)
    blocks = set(target_blocks(table, output_stride))
    return [op.name for op in new.convs() if op.kernel > 1 and op.block in blocks]


# -- a user's own backbone -------------------------------------------------------------------

def register_backbone(name: str, build: Callable[[], nn.Module],
                      rate_convs: Sequence[str] = ()) -> LayerTable:
    """Make a user's trunk a backbone: ``[arch] backbone = name`` (or ``ArchConfig(backbone=
    name)``) then builds ``build()`` as it builds a torchvision or timm trunk.

    ``build`` returns a fresh ``nn.Module`` mapping an image batch to features (no
    dilation yet; weights as the user wants them: ``[arch] weights`` may still name a
    state_dict). ``rate_convs`` names what a per-block rate list sets (targets "backbone" and
    "both"): module paths, one rate each, setting every K>1 conv at or under that path (a
    conv, or a block of convs); with none the net takes target "head" only. The module is
    traced once here (``extract_table``: convs with symmetric zero padding, BatchNorm/
    GroupNorm/LayerNorm, pools, residual adds, squeeze-excitation gates); whatever it cannot
    tabulate is one `BackboneError` line. Returns the layer table, which gives the exact
    analytic cost and support as for every backbone. The registration lives in this process
    (docs/backbones.md: studies whose trials run in other processes).
    """
    if not isinstance(name, str) or not name.isidentifier() or name == "stem" or (
            name in TV_BACKBONES):
        raise BackboneError(f"register_backbone: name={name!r} must be an identifier other "
                            f"than 'stem' and {', '.join(TV_BACKBONES)}")
    entries = tuple(str(p) for p in rate_convs)
    try:
        with torch.device("meta"):
            trunk = build()
    except Exception:  # a build that needs real tensors (loads a file, checks values)
        trunk = build()
    if not isinstance(trunk, nn.Module):
        raise BackboneError(f"register_backbone({name!r}): build() returned a "
                            f"{type(trunk).__name__}, not an nn.Module")

    def block_of(path: str) -> str:
        for e in entries:
            if path == e or path.startswith(e + "."):
                return e
        return _block_of(path)

    first = next((m for m in trunk.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise BackboneError(f"register_backbone({name!r}): the module has no Conv2d")
    try:
        table = extract_table(trunk, int(first.in_channels), block_of)
    except fx.proxy.TraceError as e:
        raise BackboneError(f"register_backbone({name!r}): cannot trace the module "
                            f"({str(e).splitlines()[0]})") from None
    dilated = [op.name for op in table.convs() if op.dilation > 1]
    if dilated:
        raise BackboneError(f"register_backbone({name!r}): {dilated[0]} has dilation "
                            "already; register the trunk as built (output_stride sets it)")
    for entry in entries:
        if not any(op.block == entry and op.kernel > 1 for op in table.convs()):
            raise BackboneError(f"register_backbone({name!r}): rate_convs entry {entry!r} "
                                "names no conv with a kernel > 1")
    registry.add(registry.UserBackbone(name, build, table, entries))
    return table
