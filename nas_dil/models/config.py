"""`ArchConfig`: everything about the net except the dilation schedule. Torch-free.

The schedule (rates and stack kernels) is its own value object; a model is (schedule, arch).
Field names match ``nas_dil.schedule.net_cost``'s keywords, so ``cost_kwargs`` is a filter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, NamedTuple, Protocol

from nas_dil._check import MAX_CHANNELS, bounded, check_fields
from nas_dil.errors import UserError
from nas_dil.schedule.netcost import DEFAULT_CONTEXT_RATES, NORMS, stem_plan

__all__ = [
    "ACTS",
    "BACKBONES",
    "NORMS",
    "OUTPUT_STRIDES",
    "PER_NET",
    "TARGETS",
    "TIMM_BACKBONES",
    "TIMM_PREFIX",
    "TV_BACKBONES",
    "ArchConfig",
    "ArchError",
    "ArchTemplate",
    "Place",
    "Placed",
]

ACTS = ("relu", "identity")  # "identity": the linear variant the theory's claims are about
OUTPUT_STRIDES = (2, 4, 8, 16, 32)
# torchvision models (``nas_dil.models.backbones``; needs the extra nas-dil[vision])
TV_BACKBONES = ("resnet18", "resnet50", "resnet101", "mobilenet_v3_large", "vgg16")
BACKBONES = ("stem", *TV_BACKBONES)  # "stem": nas-dil's own small stem (stem_plan)
# timm models: "timm:<name>" (``nas_dil.models.timm_backbones``; needs the extra nas-dil[timm]).
# Any model of a supported family works; these ship their layer tables (no timm at search time)
TIMM_PREFIX = "timm:"
TIMM_BACKBONES = ("timm:resnet18", "timm:resnet26", "timm:resnet50", "timm:resnest14d",
                  "timm:regnetx_002", "timm:regnety_002", "timm:convnext_atto",
                  "timm:efficientnet_b0")
TARGETS = ("head", "backbone", "both")  # what the schedule's rates set (see ArchConfig.target)
TV_OUTPUT_STRIDES = (8, 16, 32)
MAX_CLASSES = 2**16  # the label values a 16-bit mask can hold
MAX_CONTEXT_RATE = 1024  # as the search spaces' rates (spaces.config.MAX_RATE)


class ArchError(UserError, ValueError):
    """An architecture field that is not valid; the message shows the value."""


def known_backbone(name: object) -> bool:
    """A name ``[arch] backbone`` takes (timm names are checked against timm on first use)."""
    from nas_dil.models.registry import registered

    return isinstance(name, str) and (
        name in BACKBONES or name in registered()
        or (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)))


def _int(value: Any, what: str, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ArchError(f"{what}={value!r}: must be an integer >= {lo}")


@dataclass(frozen=True)
class ArchConfig:
    """Architecture of the segmentation net around the dilated stack (see ``schedule.netcost``).

    JSON round trip: ``ArchConfig(**json.loads(json.dumps(cfg.to_dict())))`` (lists become
    tuples again in ``__post_init__``).
    """

    in_channels: int = bounded(3, ge=1, le=MAX_CHANNELS)  # image channels
    num_classes: int = bounded(21, ge=1, le=MAX_CLASSES)  # logits per pixel (21: PASCAL VOC)
    output_stride: int = 8  # image pixels per stack pixel: 2, 4, 8, 16 or 32
    backbone_stride: int | None = None  # stem stages = log2 of this; past output_stride they
    # dilate instead of striding (Yu & Koltun's front end: 32 with output_stride 8). None: same
    stem_width: int = bounded(16, ge=1, le=MAX_CHANNELS)  # channels of the first stem stage,
    # doubling per stage up to width
    width: int = bounded(32, ge=1, le=MAX_CHANNELS)  # channels of the last stem stage and of
    # every stack layer
    norm: str = "bn"  # "bn" BatchNorm, "gn" GroupNorm, "none" (convs get a bias instead)
    gn_groups: int = bounded(8, ge=1, le=MAX_CHANNELS)  # GroupNorm groups, capped per layer to
    # gcd(gn_groups, channels)
    act: str = "relu"  # "relu" or "identity" (linear net, for the theory tests)
    residual: bool = False  # stack layers compute x + f(x), each branch scaled at init by
    # min(1, (3/n)²) for n layers (layers.residual_gain: steadies deep stacks)
    context: bool = False  # Yu & Koltun context module after the classifier
    context_rates: tuple[int, ...] = DEFAULT_CONTEXT_RATES  # dilations of its 3×3 layers
    backbone: str = "stem"  # "stem", a torchvision trunk (TV_BACKBONES), "timm:<name>" or a
    # backbone registered from Python (``nas_dil.models.register_backbone``) before the stack
    target: str = "head"  # rates set: "head" the stack, "backbone" the dilated last stage(s)
    # block by block (one rate per block), "both" the blocks' rates then the stack's
    weights: str = "none"  # backbone weights: "none", "imagenet" or a state_dict path

    def __post_init__(self) -> None:
        check_fields(self, ArchError)  # every range, NaN and inf refused
        if self.output_stride not in OUTPUT_STRIDES or isinstance(self.output_stride, bool):
            raise ArchError(
                f"output_stride={self.output_stride!r}: must be one of "
                f"{', '.join(map(str, OUTPUT_STRIDES))}"
            )
        if self.backbone_stride is None:  # stored resolved, so a saved config is explicit
            object.__setattr__(self, "backbone_stride", self.output_stride)
        _int(self.backbone_stride, "backbone_stride")
        try:
            stem_plan(self.output_stride, self.backbone_stride, self.stem_width, self.width)
        except ValueError as e:
            raise ArchError(str(e)) from None
        if self.norm not in NORMS:
            raise ArchError(f"norm={self.norm!r}: must be one of {', '.join(NORMS)}")
        if self.act not in ACTS:
            raise ArchError(f"act={self.act!r}: must be one of {', '.join(ACTS)}")
        for name in ("residual", "context"):
            if not isinstance(getattr(self, name), bool):
                raise ArchError(f"{name}={getattr(self, name)!r}: must be true or false")
        if isinstance(self.context_rates, str | bytes) or not hasattr(
            self.context_rates, "__iter__"
        ):
            raise ArchError(f"context_rates={self.context_rates!r}: must be a list of integers")
        rates = tuple(self.context_rates)
        if not rates or any(isinstance(r, bool) or not isinstance(r, int)
                            or not 1 <= r <= MAX_CONTEXT_RATE for r in rates):
            raise ArchError(f"context_rates={list(rates)}: need one or more integers in "
                            f"[1, {MAX_CONTEXT_RATE}]")
        object.__setattr__(self, "context_rates", rates)
        self._check_backbone()

    def _check_backbone(self) -> None:
        if not known_backbone(self.backbone):
            raise ArchError(f"backbone={self.backbone!r}: must be one of {', '.join(BACKBONES)}, "
                            "'timm:<model name>' or a name given to register_backbone")
        if self.target not in TARGETS:
            raise ArchError(f"target={self.target!r}: must be one of {', '.join(TARGETS)}")
        if not isinstance(self.weights, str) or not self.weights:
            raise ArchError(f"weights={self.weights!r}: 'none', 'imagenet' or a state_dict path")
        if self.backbone == "stem":
            if self.target != "head" or self.weights != "none":
                raise ArchError(f"backbone='stem' with target={self.target!r}, weights="
                                f"{self.weights!r}: the stem has no blocks and no weights "
                                "(target='head', weights='none')")
        elif self.output_stride not in TV_OUTPUT_STRIDES:
            raise ArchError(f"output_stride={self.output_stride}: backbone={self.backbone!r} "
                            f"runs at {', '.join(map(str, TV_OUTPUT_STRIDES))}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists), so ``json.loads(json.dumps(d)) == d``."""
        d = asdict(self)
        d["context_rates"] = list(self.context_rates)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArchError(f"arch: unknown keys {unknown}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def cost_kwargs(self) -> dict[str, Any]:
        """The fields ``net_cost`` / ``image_schedule`` take (the rest change no count)."""
        if self.backbone != "stem":  # net_cost knows only the stem: never a wrong count
            raise ArchError(f"backbone={self.backbone!r}: net_cost describes the stem net; "
                            "a backbone's cost comes from its layer table "
                            "(nas_dil.models.backbones.model_table)")
        d = asdict(self)
        del d["gn_groups"], d["act"], d["backbone"], d["target"], d["weights"]
        return d


# what a study's [arch] leaves open: the candidate's (output stride, width), the data's classes
PER_NET = ("output_stride", "width", "num_classes")
_DEFAULTS = {f.name: f.default for f in fields(ArchConfig) if f.default is not MISSING}


class Placed(Protocol):
    """What fixes a net's place in a space: a `nas_dil.spaces.Candidate` or a baseline."""

    @property
    def output_stride(self) -> int: ...

    @property
    def width(self) -> int: ...


class Place(NamedTuple):
    """A place without a candidate: (output stride, width)."""

    output_stride: int
    width: int


@dataclass(frozen=True)
class ArchTemplate(Mapping[str, Any]):
    """A study's ``[arch]``: every `ArchConfig` field but `PER_NET`, as the study gives them
    (the rest keep ArchConfig's defaults, read here once). ``at(candidate, num_classes)`` is
    the net a trial of that candidate trains. Hashable (a cache key of analytic rows); a
    read-only mapping of the given fields too (``ArchConfig(**t, output_stride=…)`` still
    works in code written for the plain table)."""

    given: tuple[tuple[str, Any], ...] = ()  # (field, value), sorted; lists as tuples

    def __getitem__(self, name: str) -> Any:
        return dict(self.given)[name]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.given)

    def __len__(self) -> int:
        return len(self.given)

    @classmethod
    def of(cls, arch: Mapping[str, Any]) -> ArchTemplate:
        """From a study's [arch] table (unknown or per-net keys: `ArchError`)."""
        bad = sorted(k for k in arch if k not in _DEFAULTS or k in PER_NET)
        if bad:
            raise ArchError(f"arch: {bad}: not fields a study sets (per net: "
                            f"{', '.join(PER_NET)}; known: {', '.join(sorted(_DEFAULTS))})")
        return cls(tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                for k, v in arch.items())))

    def value(self, name: str) -> Any:
        """A field's value: as given, else ArchConfig's default."""
        return dict(self.given).get(name, _DEFAULTS[name])

    @property
    def backbone(self) -> str:
        return str(self.value("backbone"))

    @property
    def target(self) -> str:
        return str(self.value("target"))

    @property
    def weights(self) -> str:
        return str(self.value("weights"))

    def check(self) -> None:
        """The given fields make a net at ArchConfig's default place (each field's own
        check; the space's places are checked against them by the study's preflight)."""
        ArchConfig(**dict(self.given))

    def at(self, place: Placed, num_classes: int = _DEFAULTS["num_classes"]) -> ArchConfig:
        """The net at ``place``'s output stride and width with ``num_classes`` logits."""
        return ArchConfig(**dict(self.given), output_stride=place.output_stride,
                          width=place.width, num_classes=num_classes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as given, plain JSON (what a study records as its ``arch``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.given}
