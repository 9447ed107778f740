"""The schedule value object: per-layer dilation rates, kernel sizes and strides.

Parsed and validated once, at the boundary; everything downstream trusts it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nas_dil.errors import UserError

__all__ = ["MAX_LAYERS", "MAX_RF", "Schedule", "ScheduleError", "parse_ints"]

MAX_LAYERS = 256  # deeper stacks are almost surely a typo; keeps path counts finite
# widest RF (per axis, the stack's input pixels) a schedule may have: every RF, offset and
# RF² stays exact in int64/float64 arithmetic, and coverage stays bounded (see coverage.py)
MAX_RF = 2**40


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
    if "," in raw:  # commas separate; an empty entry ("1,,2", "1,2,") is a typo, not a 1,2
        parts = [p.strip() for p in raw.split(",")]
        if not all(parts):
            raise ScheduleError(f"{what}={text!r}: empty entry between commas")
    elif _SEP.search(raw):
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
    if len(values) * repeat > MAX_LAYERS:  # before the expansion: `1*10**9` is one line, at once
        raise ScheduleError(f"{what}={text!r}: {len(values)} entries *{repeat} = "
                            f"{len(values) * repeat} layers: at most {MAX_LAYERS} are supported")
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


def _check_flags(values: Sequence[Any], n: int, what: str) -> tuple[bool, ...]:
    out = tuple(values)
    if len(out) not in (0, n) or not all(isinstance(v, bool) for v in out):
        raise ScheduleError(f"{what}={list(out)}: need {n} true/false entries (or none)")
    return out if any(out) else ()


@dataclass(frozen=True)
class Schedule:
    """A stack of K×K convolutions with per-layer dilation ``rates``.

    ``kernels`` and ``strides`` have one entry per layer (a single int broadcasts).
    Rates are in the stack's own input pixels; strides compound into the jump.

    Degridding variants (docs/theory.md), each off by default and then absent from
    ``to_dict`` (so stored schedules and trial keys do not change):
    - ``rates_w``: per-axis dilation, layer i is (rates[i], rates_w[i]) along (height, width).
    - ``smooth``: per layer, a Wang & Ji pre-filter of (2r_h-1)×(2r_w-1) shared by all channels
      before the dilated conv (none where r_h = r_w = 1).
    - ``tail``: the last ``tail`` layers are a DRN degridding tail: never residual, even when
      the architecture makes the other layers residual.
    """

    rates: tuple[int, ...]  # dilation per layer (along the height), >= 1
    kernels: tuple[int, ...] = ()  # odd kernel size per layer, >= 1 (empty: 3 everywhere)
    strides: tuple[int, ...] = ()  # stride per layer, >= 1 (empty: 1 everywhere)
    rates_w: tuple[int, ...] = ()  # dilation per layer along the width (empty: = rates)
    smooth: tuple[bool, ...] = ()  # Wang & Ji pre-filter per layer (empty: none)
    tail: int = 0  # trailing layers that never get a residual path (DRN degridding tail)

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
        rates_w = tuple(self.rates_w)
        if rates_w:
            _check_ints(rates_w, "rates_w")
            if len(rates_w) != n or any(r < 1 for r in rates_w):
                raise ScheduleError(
                    f"rates_w={list(rates_w)}: need {n} positive integers, one per layer")
            if rates_w == rates:
                rates_w = ()  # square after all: one spelling per schedule
        smooth = _check_flags(self.smooth, n, "smooth")
        if isinstance(self.tail, bool) or not isinstance(self.tail, int) or not (
                0 <= self.tail < n):
            raise ScheduleError(f"tail={self.tail!r}: must be an integer in [0, {n - 1}]")
        # the RF bound, in Python ints before any numpy array sees the values
        for axis in (rates, rates_w) if rates_w else (rates,):
            rf, jump = 1, 1
            for i, (r, k, st) in enumerate(zip(axis, kernels, strides, strict=True)):
                rf += ((k - 1) * r + (2 * (r - 1) if smooth and smooth[i] else 0)) * jump
                jump *= st
                if rf > MAX_RF or jump > MAX_RF:
                    raise ScheduleError(
                        f"rates={_short(axis)}: the receptive field exceeds {MAX_RF} px "
                        "(2**40), the most nas-dil analyses")
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "kernels", kernels)
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "rates_w", rates_w)
        object.__setattr__(self, "smooth", smooth)

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
        unknown = set(d) - {"rates", "kernels", "strides", "rates_w", "smooth", "tail"}
        if unknown:
            raise ScheduleError(f"schedule: unknown keys {sorted(unknown)}")
        return cls(
            tuple(d["rates"]), tuple(d.get("kernels", ())), tuple(d.get("strides", ())),
            tuple(d.get("rates_w", ())), tuple(d.get("smooth", ())), d.get("tail", 0),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; the degridding fields appear only when set (old keys stay valid)."""
        out: dict[str, Any] = {
            "rates": list(self.rates),
            "kernels": list(self.kernels),
            "strides": list(self.strides),
        }
        if self.rates_w:
            out["rates_w"] = list(self.rates_w)
        if self.smooth:
            out["smooth"] = list(self.smooth)
        if self.tail:
            out["tail"] = self.tail
        return out

    def axis(self, name: str) -> Schedule:
        """The schedule one axis sees ("h" or "w"): square rates, the same layers."""
        if name not in ("h", "w"):
            raise ValueError(f"axis={name!r}: must be 'h' or 'w'")
        if not self.rates_w:
            return self
        rates = self.rates if name == "h" else self.rates_w
        return Schedule(rates, self.kernels, self.strides, (), self.smooth, self.tail)

    @property
    def square(self) -> bool:
        """Both axes share the rates (no ``rates_w``)."""
        return not self.rates_w

    @property
    def plain(self) -> bool:
        """No degridding variant: square, unsmoothed, no tail (the original schedule)."""
        return not (self.rates_w or self.smooth or self.tail)

    def smoothed(self, i: int) -> bool:
        """Whether layer ``i`` has a pre-filter (flag set and a rate > 1 on some axis)."""
        return bool(self.smooth) and self.smooth[i] and max(
            self.rates[i], (self.rates_w or self.rates)[i]) > 1

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


def _short(values: Sequence[int]) -> str:
    shown = ", ".join(map(str, values[:8]))
    return f"[{shown}{', …' if len(values) > 8 else ''}]"
