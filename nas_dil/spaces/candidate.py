"""`Candidate`: one point of a search space, everything a trial needs about the net shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas_dil._toml import is_int
from nas_dil.schedule import Schedule, ScheduleError, parse_ints
from nas_dil.spaces.errors import space_error

__all__ = ["OUTPUT_STRIDES", "Candidate"]

OUTPUT_STRIDES = (4, 8, 16, 32)  # the stem net takes 4-16 (32 too), torchvision backbones
# 8-32: the study's [arch] decides which (nas_dil.models.ArchConfig, checked at preflight)
_FIELDS = ("rates", "kernel", "output_stride", "width")
_OPTIONAL = ("rates_w", "smooth", "tail")  # degridding dimensions: absent when off


def _rate_tuple(value: object, key: str, allow_empty: bool) -> tuple[int, ...]:
    rates = tuple(value) if not isinstance(value, str) and hasattr(value, "__iter__") else value
    if (not isinstance(rates, tuple) or (not rates and not allow_empty)
            or not all(is_int(r) and r >= 1 for r in rates)):
        raise space_error("candidate", key,
                          f"expected a {'' if allow_empty else 'non-empty '}list of positive "
                          f"integers, got {value!r}")
    return rates


@dataclass(frozen=True)
class Candidate:
    """A dilated stack of ``len(rates)`` K×K layers, ``width`` channels, at ``output_stride``.

    Candidates are equal (and hash equal) exactly when all fields are equal. The degridding
    dimensions (docs/theory.md) default to off; then they are absent from `to_dict` and
    `key`, so candidates stored before they existed read back equal, with the same keys.
    """

    rates: tuple[int, ...]  # dilation per layer (along the height), each >= 1
    kernel: int  # K×K for every stack layer (odd, >= 1)
    output_stride: int  # resolution of the stack's input: 4, 8, 16 or 32
    width: int  # channels of the dilated stack, >= 1
    rates_w: tuple[int, ...] = ()  # per-axis rates: dilation along the width (empty: square)
    smooth: bool = False  # Wang & Ji shared pre-filter before every layer with a rate > 1
    tail: tuple[int, ...] = ()  # DRN degridding tail: layers after the stack, never residual

    def __post_init__(self) -> None:
        rates = tuple(self.rates) if not isinstance(self.rates, str) else self.rates
        if (not isinstance(rates, tuple) or not rates
                or not all(is_int(r) and r >= 1 for r in rates)):
            raise space_error("candidate", "rates",
                              f"expected a non-empty list of positive integers, got {self.rates!r}")
        if not is_int(self.kernel) or self.kernel < 1 or self.kernel % 2 == 0:
            raise space_error("candidate", "kernel",
                              f"expected an odd integer >= 1, got {self.kernel!r}")
        if not is_int(self.output_stride) or self.output_stride not in OUTPUT_STRIDES:
            raise space_error("candidate", "output_stride",
                              f"expected one of {list(OUTPUT_STRIDES)}, got {self.output_stride!r}")
        if not is_int(self.width) or self.width < 1:
            raise space_error("candidate", "width",
                              f"expected an integer >= 1, got {self.width!r}")
        object.__setattr__(self, "rates", rates)
        rates_w = _rate_tuple(self.rates_w, "rates_w", allow_empty=True)
        if rates_w and len(rates_w) != len(rates):
            raise space_error("candidate", "rates_w",
                              f"expected {len(rates)} rates (one per layer), got {list(rates_w)}")
        object.__setattr__(self, "rates_w", () if rates_w == rates else rates_w)
        if not isinstance(self.smooth, bool):
            raise space_error("candidate", "smooth", f"expected true or false, got {self.smooth!r}")
        object.__setattr__(self, "tail", _rate_tuple(self.tail, "tail", allow_empty=True))

    @property
    def depth(self) -> int:
        """Searched layers (the tail not included; `n_layers` counts it)."""
        return len(self.rates)

    @property
    def n_layers(self) -> int:
        """Every K×K layer of the stack: searched layers, then the tail."""
        return len(self.rates) + len(self.tail)

    @property
    def plain(self) -> bool:
        """No degridding dimension set (a candidate as before they existed)."""
        return not (self.rates_w or self.smooth or self.tail)

    @property
    def schedule(self) -> Schedule:
        """The stack as a stride-1 Schedule with this kernel on every layer: the searched
        layers, then the tail (square, unsmoothed, never residual)."""
        n, t = len(self.rates), len(self.tail)
        return Schedule(
            self.rates + self.tail, (self.kernel,), (),
            (self.rates_w + self.tail) if self.rates_w else (),
            ((True,) * n + (False,) * t) if self.smooth else (), t)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"rates": [1, 2, 5], "kernel": 3, "output_stride": 8, "width": 32}``,
        plus ``rates_w`` / ``smooth`` / ``tail`` only when set."""
        out: dict[str, Any] = {"rates": list(self.rates), "kernel": self.kernel,
                               "output_stride": self.output_stride, "width": self.width}
        if self.rates_w:
            out["rates_w"] = list(self.rates_w)
        if self.smooth:
            out["smooth"] = True
        if self.tail:
            out["tail"] = list(self.tail)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        if not isinstance(d, Mapping):
            raise space_error("candidate", None, f"expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_FIELDS) - set(_OPTIONAL))
        if unknown:
            raise space_error("candidate", unknown[0],
                              f"unknown key (expected {list(_FIELDS + _OPTIONAL)})")
        missing = [f for f in _FIELDS if f not in d]
        if missing:
            raise space_error("candidate", missing[0], "missing")
        rates = d["rates"]
        if isinstance(rates, str) or not hasattr(rates, "__iter__"):
            raise space_error("candidate", "rates", f"expected a list of integers, got {rates!r}")
        extra = {k: d[k] for k in _OPTIONAL if k in d}
        for k in ("rates_w", "tail"):
            if k in extra and (isinstance(extra[k], str) or not hasattr(extra[k], "__iter__")):
                raise space_error("candidate", k, f"expected a list of integers, got {extra[k]!r}")
        return cls(tuple(rates), d["kernel"], d["output_stride"], d["width"], **extra)

    def key(self) -> str:
        """Stable string, e.g. ``"r=1-2-5|k=3|os=8|w=32"`` (parse back with `from_key`);
        set degridding dimensions append ``|rw=…``, ``|sm=1``, ``|t=…``."""
        rates = "-".join(map(str, self.rates))
        out = f"r={rates}|k={self.kernel}|os={self.output_stride}|w={self.width}"
        if self.rates_w:
            out += "|rw=" + "-".join(map(str, self.rates_w))
        if self.smooth:
            out += "|sm=1"
        if self.tail:
            out += "|t=" + "-".join(map(str, self.tail))
        return out

    @classmethod
    def from_key(cls, key: str) -> Candidate:
        """Inverse of `key`."""
        parts: dict[str, str] = {}
        for part in key.strip().split("|"):
            name, sep, value = part.partition("=")
            if not sep or name in parts:
                raise space_error("candidate", None, f"malformed key {key!r}")
            parts[name.strip()] = value.strip()
        if not {"r", "k", "os", "w"} <= set(parts) <= {"r", "k", "os", "w", "rw", "sm", "t"}:
            raise space_error("candidate", None,
                              f"key {key!r} must have the fields r, k, os, w (and optionally "
                              "rw, sm, t)")
        try:
            rates = parse_ints(parts["r"], "rates")
            k, os_, w = int(parts["k"]), int(parts["os"]), int(parts["w"])
            rates_w = parse_ints(parts["rw"], "rates_w") if "rw" in parts else ()
            tail = parse_ints(parts["t"], "tail") if "t" in parts else ()
            if parts.get("sm", "1") != "1":
                raise ValueError(f"sm={parts['sm']!r} (only sm=1 is written)")
        except (ScheduleError, ValueError) as e:
            raise space_error("candidate", None, f"malformed key {key!r}: {e}") from None
        return cls(rates, k, os_, w, rates_w, "sm" in parts, tail)

    def __str__(self) -> str:
        return self.key()
