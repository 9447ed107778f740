"""`Candidate`: one point of a search space, everything a trial needs about the net shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas_dil._toml import is_int
from nas_dil.schedule import Schedule, ScheduleError, parse_ints
from nas_dil.spaces.errors import space_error

__all__ = ["OUTPUT_STRIDES", "Candidate"]

OUTPUT_STRIDES = (4, 8, 16)  # output strides a backbone stem can produce
_FIELDS = ("rates", "kernel", "output_stride", "width")


@dataclass(frozen=True)
class Candidate:
    """A dilated stack of ``len(rates)`` K×K layers, ``width`` channels, at ``output_stride``.

    Candidates are equal (and hash equal) exactly when all four fields are equal.
    """

    rates: tuple[int, ...]  # dilation per layer, each >= 1
    kernel: int  # K×K for every stack layer (odd, >= 1)
    output_stride: int  # resolution of the stack's input: 4, 8 or 16
    width: int  # channels of the dilated stack, >= 1

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

    @property
    def depth(self) -> int:
        return len(self.rates)

    @property
    def schedule(self) -> Schedule:
        """The stack as a stride-1 Schedule with this kernel on every layer."""
        return Schedule(self.rates, (self.kernel,))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"rates": [1, 2, 5], "kernel": 3, "output_stride": 8, "width": 32}``."""
        return {"rates": list(self.rates), "kernel": self.kernel,
                "output_stride": self.output_stride, "width": self.width}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        if not isinstance(d, Mapping):
            raise space_error("candidate", None, f"expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise space_error("candidate", unknown[0], f"unknown key (expected {list(_FIELDS)})")
        missing = [f for f in _FIELDS if f not in d]
        if missing:
            raise space_error("candidate", missing[0], "missing")
        rates = d["rates"]
        if isinstance(rates, str) or not hasattr(rates, "__iter__"):
            raise space_error("candidate", "rates", f"expected a list of integers, got {rates!r}")
        return cls(tuple(rates), d["kernel"], d["output_stride"], d["width"])

    def key(self) -> str:
        """Stable string, e.g. ``"r=1-2-5|k=3|os=8|w=32"`` (parse back with `from_key`)."""
        rates = "-".join(map(str, self.rates))
        return f"r={rates}|k={self.kernel}|os={self.output_stride}|w={self.width}"

    @classmethod
    def from_key(cls, key: str) -> Candidate:
        """Inverse of `key`."""
        parts: dict[str, str] = {}
        for part in key.strip().split("|"):
            name, sep, value = part.partition("=")
            if not sep or name in parts:
                raise space_error("candidate", None, f"malformed key {key!r}")
            parts[name.strip()] = value.strip()
        if set(parts) != {"r", "k", "os", "w"}:
            raise space_error("candidate", None,
                              f"key {key!r} must have exactly the fields r, k, os, w")
        try:
            rates = parse_ints(parts["r"], "rates")
            k, os_, w = int(parts["k"]), int(parts["os"]), int(parts["w"])
        except (ScheduleError, ValueError) as e:
            raise space_error("candidate", None, f"malformed key {key!r}: {e}") from None
        return cls(rates, k, os_, w)

    def __str__(self) -> str:
        return self.key()
