"""Ranged numbers, declared once per config field and checked the same way from every door.

Validation home (the rule; docs/architecture.md repeats it):

- a number's range is declared on its dataclass field, once: ``lr: float = bounded(3e-3,
  gt=0)``; the config's ``__post_init__`` (or ``validate``) runs `check_fields`, so a config
  built in Python, read from a TOML file (`nas_dil._toml.TomlReader.construct`) or from a CLI
  flag (`flag_type`) passes the same check and fails with the same words;
- NaN and ±inf fail every ranged number (``nan <= 0`` is False, so a bare ``v <= 0`` test lets
  NaN through: here a value passes only when ``lo <= v <= hi`` is True);
- what the file alone decides is checked where it is parsed; what needs the space, storage,
  cluster or data is checked in preflight (``nas_dil.search.preflight``).

Why not pydantic (installed as a dependency of the stack): the configs are plain frozen
dataclasses whose annotations already type every TOML key (``TomlReader.typed``); pydantic
would restate each type in a second model, its errors are multi-line, and it would coerce
("3" → 3) where a study file must be refused. What was missing was only NaN-awareness and a
single place per range, which this small module gives.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from nas_dil.errors import UserError

__all__ = ["MAX_CHANNELS", "MAX_KERNEL", "SEED", "SEED_MAX", "Bound", "bound_of", "bounded",
           "check_fields", "field_flag", "flag_type", "is_int"]

# sizes shared by several rooms (a space file, the [arch] table, CLI flags)
SEED_MAX = 2**32 - 1  # numpy's RandomState (Optuna's samplers) takes seeds in [0, 2**32)
MAX_KERNEL = 63  # larger K×K stack kernels are almost surely a typo
MAX_CHANNELS = 4096  # widest layer: a 3×3 conv of 4096 → 4096 channels is 151 M weights
_KEY = "nas_dil.bound"  # dataclass field metadata key


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass(frozen=True)
class Bound:
    """``ge <= v <= le`` (``gt``, ``lt``: strictly), an int or a finite number; None: no bound."""

    integer: bool  # True: an int (not a bool, not 2.0); False: a finite int or float
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def spoken(self) -> str:
        """``an integer >= 1``, ``a finite number > 0``, ``an integer in [1, 64]``."""
        what = "an integer" if self.integer else "a finite number"
        lo = "[" if self.ge is not None else "(" if self.gt is not None else None
        hi = "]" if self.le is not None else ")" if self.lt is not None else None
        if lo and hi:
            a, b = (self.ge if lo == "[" else self.gt), (self.le if hi == "]" else self.lt)
            return f"{what} in {lo}{_g(a)}, {_g(b)}{hi}"  # type: ignore[arg-type]
        parts = [f">= {_g(self.ge)}" if self.ge is not None else "",
                 f"> {_g(self.gt)}" if self.gt is not None else "",
                 f"<= {_g(self.le)}" if self.le is not None else "",
                 f"< {_g(self.lt)}" if self.lt is not None else ""]
        return " ".join([what, *filter(None, parts)])

    def ok(self, v: object) -> bool:
        if not (is_int(v) if self.integer else _number(v)):
            return False
        if not self.integer:  # a number must fit a float and be finite (NaN, ±inf are not)
            try:
                if not math.isfinite(v):  # type: ignore[arg-type]
                    return False
            except OverflowError:  # an int past the largest float
                return False
        # written so that NaN fails every comparison it meets: each must be True to pass
        return ((self.ge is None or v >= self.ge)  # type: ignore[operator]
                and (self.gt is None or v > self.gt)  # type: ignore[operator]
                and (self.le is None or v <= self.le)  # type: ignore[operator]
                and (self.lt is None or v < self.lt))  # type: ignore[operator]

    def problem(self, v: object) -> str | None:
        """None when ``v`` is in range, else ``expected …`` (without the value)."""
        return None if self.ok(v) else f"expected {self.spoken()}"


SEED = Bound(True, ge=0, le=SEED_MAX)  # every seed: a study's, a sampler's, data, CLI --seed


def _g(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def bounded(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None,
            integer: bool | None = None, bound: Bound | None = None) -> Any:
    """A dataclass field whose value must lie in the range (None passes when the annotation
    allows it), or in ``bound`` (a shared one: `SEED`). ``integer`` defaults from the
    default's type (an int default: an integer; give it for a None or float default)."""
    if integer is None:
        integer = is_int(default)
    meta = {_KEY: bound or Bound(integer, ge, gt, le, lt)}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def bound_of(f: Field[Any]) -> Bound | None:
    return f.metadata.get(_KEY)


def check_fields(obj: object, error: Callable[[str], UserError], owner: str = "") -> None:
    """Every bounded field of dataclass ``obj`` in its range, else ``error`` of one line
    ``"<owner>: <field>=<value>: expected …"`` with ``.field = (name, "expected …, got v")``
    set (a file reader names its file and the key from it)."""
    for f in fields(obj):  # type: ignore[arg-type]
        b = bound_of(f)
        if b is None:
            continue
        v = getattr(obj, f.name)
        if v is None and "None" in str(f.type):
            continue
        problem = b.problem(v)
        if problem is not None:
            e = error(f"{owner + ': ' if owner else ''}{f.name}={v!r}: {problem}")
            e.field = (f.name, f"{problem}, got {v!r}")
            raise e


def flag_type(bound: Bound, flag: str) -> Callable[[str], Any]:
    """An argparse ``type`` for a CLI flag with the range ``bound`` (a config field's, via
    `bound_of`, or the flag's own): NaN, inf, words and out-of-range values are one usage
    line, exit 2. The function carries ``.bound`` (the fuzz test reads it)."""
    def parse(text: str) -> Any:
        try:
            v: Any = int(text) if bound.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected {bound.spoken()}") from None
        if not bound.ok(v):
            raise argparse.ArgumentTypeError(f"{text}: expected {bound.spoken()}")
        return v

    parse.__name__ = flag  # argparse names the type in "invalid <name> value" messages
    parse.bound = bound  # type: ignore[attr-defined]
    return parse


def field_flag(cls: type, name: str, flag: str) -> Callable[[str], Any]:
    """`flag_type` with the range of dataclass ``cls``'s field ``name``: one rule for the
    flag and the config it fills."""
    f = next(f for f in fields(cls) if f.name == name)
    b = bound_of(f)
    if b is None:
        raise TypeError(f"{cls.__name__}.{name} declares no range")
    return flag_type(b, flag)
