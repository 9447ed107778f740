"""The schedule value object: per-layer dilation rates, kernel sizes and strides.

Parsed and validated once, at the boundary; everything downstream trusts it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nas_dil.errors import UserError

__all__ = ["MAX_LAYERS", "Schedule", "ScheduleError", "parse_ints"]

MAX_LAYERS = 256  # deeper stacks are almost surely a typo; keeps path counts finite


class ScheduleError(UserError, ValueError):
    """A schedule, kernel or stride that is not valid; the message shows the values."""


_SEP = re.compile(r"[,\s]+")


def parse_ints(text: str, what: str = "rates") -> tuple[int, ...]:
    """Parse ``"1,2,5"``, ``"1-2-5"``, ``"[1, 2, 5]"`` or ``"1,2,5*2"`` (pattern repeated)."""
    raw = text.strip()
    repeat = 1
    if "*" in raw:  # "1,2,5*2": the whole pattern twice (house style: a pattern can repeat)
        raw, _, times = raw.rpartition("*")
        try:
            repeat = int(times.strip())
        except ValueError:
            raise ScheduleError(
                f"{what}: repeat count {times.strip()!r} is not an integer"
            ) from None
        if repeat < 1:
            raise ScheduleError(f"{what}: repeat count must be >= 1, got {repeat}")
    raw = raw.strip().strip("[]()").strip()
    if not raw:
        raise ScheduleError(f"{what}: empty schedule {text!r}")
    if _SEP.search(raw):
        parts = [p for p in _SEP.split(raw) if p]
    elif raw.startswith("-") or "--" in raw or raw.endswith("-"):
        # "-2" or "1--2" would otherwise lose a minus sign silently
        raise ScheduleError(f"{what}={text!r}: negative or empty entry")
    else:
        parts = raw.split("-")  # "1-2-5": dashes separate only when nothing else does
    values: list[int] = []
    for p in parts:
        try:
            values.append(int(p))
        except ValueError:
            raise ScheduleError(f"{what}={text!r}: {p!r} is not an integer") from None
    return tuple(values) * repeat


def _as_tuple(value: int | Iterable[int], n: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    out = tuple(value)
    if len(out) == 1:
        return out * n
    if len(out) != n:
        raise ScheduleError(f"{what}={list(out)} has {len(out)} entries for {n} layers")
    return out


def _check_ints(values: Sequence[Any], what: str) -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ScheduleError(f"{what}={list(values)}: {v!r} is not an integer")


@dataclass(frozen=True)
class Schedule:
    """A stack of K×K convolutions with per-layer dilation ``rates``.

    ``kernels`` and ``strides`` have one entry per layer (a single int broadcasts).
    Rates are in the stack's own input pixels; strides compound into the jump.
    """

    rates: tuple[int, ...]  # dilation per layer, >= 1
    kernels: tuple[int, ...] = ()  # odd kernel size per layer, >= 1 (empty: 3 everywhere)
    strides: tuple[int, ...] = ()  # stride per layer, >= 1 (empty: 1 everywhere)

    def __post_init__(self) -> None:
        rates = tuple(self.rates)
        _check_ints(rates, "rates")
        n = len(rates)
        if n == 0:
            raise ScheduleError("rates=[]: a schedule needs at least one layer")
        if n > MAX_LAYERS:
            raise ScheduleError(f"{n} layers: at most {MAX_LAYERS} are supported")
        if any(r < 1 for r in rates):
            raise ScheduleError(f"rates={list(rates)}: every rate must be a positive integer")
        kernels = _as_tuple(self.kernels or 3, n, "kernels")
        _check_ints(kernels, "kernels")
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise ScheduleError(f"kernels={list(kernels)}: every kernel size must be odd and >= 1")
        strides = _as_tuple(self.strides or 1, n, "strides")
        _check_ints(strides, "strides")
        if any(s < 1 for s in strides):
            raise ScheduleError(f"strides={list(strides)}: every stride must be >= 1")
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "kernels", kernels)
        object.__setattr__(self, "strides", strides)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def parse(
        cls, text: str, kernel: int | str = 3, strides: str | None = None
    ) -> Schedule:
        """``Schedule.parse("1,2,5", kernel=3)``; kernel may also be per layer (``"3,3,5"``)."""
        rates = parse_ints(text, "rates")
        ks = parse_ints(kernel, "kernel") if isinstance(kernel, str) else kernel
        ss = parse_ints(strides, "strides") if strides else ()
        return cls(rates, ks if isinstance(ks, tuple) else (ks,), ss)

    @classmethod
    def coerce(cls, value: Schedule | str | Sequence[int], kernel: int = 3) -> Schedule:
        """Accept a Schedule, a string or a list of rates (the Python API's boundary)."""
        if isinstance(value, Schedule):
            return value
        if isinstance(value, str):
            return cls.parse(value, kernel=kernel)
        return cls(tuple(value), (kernel,))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schedule:
        unknown = set(d) - {"rates", "kernels", "strides"}
        if unknown:
            raise ScheduleError(f"schedule: unknown keys {sorted(unknown)}")
        return cls(
            tuple(d["rates"]), tuple(d.get("kernels", ())), tuple(d.get("strides", ()))
        )

    def to_dict(self) -> dict[str, list[int]]:
        return {
            "rates": list(self.rates),
            "kernels": list(self.kernels),
            "strides": list(self.strides),
        }

    # -- views ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rates)

    @property
    def uniform_kernel(self) -> int | None:
        """The kernel size if every layer shares it, else None."""
        return self.kernels[0] if len(set(self.kernels)) == 1 else None

    @property
    def stride_free(self) -> bool:
        return all(s == 1 for s in self.strides)

    def __str__(self) -> str:
        return ",".join(map(str, self.rates))
