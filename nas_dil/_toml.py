"""Typed reading of parsed TOML tables (space files, study files): one `TomlReader` whose
every failure is one line naming the file, the dotted key and the problem.

Every line has one format, ``<file>: <dotted.key>: <problem>``. The reader types a key from
its dataclass field's annotation (`dataclass_kwargs`) and builds the config with `construct`,
whose ``__post_init__`` checks the ranges declared on its fields (`nas_dil._check`): the
same check as a config built in Python, its refusal re-worded here to name the file and key.
No TOML number may be NaN or ±inf (no setting takes them)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from nas_dil._check import Bound, is_int
from nas_dil.errors import UserError

__all__ = ["TomlReader", "annotation_kinds", "is_int"]

T = TypeVar("T")


def _finite(v: object) -> bool:
    """A number that is not NaN or ±inf (TOML spells them nan, inf, -inf)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is None:
        return "" if hi is None else f" <= {hi}"
    return f" >= {lo}" if hi is None else f" in [{lo}, {hi}]"


def annotation_kinds(annotation: str) -> list[str]:
    """The top-level alternatives of a type annotation written as a string:
    ``"Callable[[int], int] | None"`` -> ``["Callable[[int], int]", "None"]``."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(annotation):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(annotation[start:i].strip())
            start = i + 1
    out.append(annotation[start:].strip())
    return out


# annotation kinds a TOML value can take, and how a value of that kind is returned
_KINDS: dict[str, Callable[[object], Any | None]] = {
    "bool": lambda v: v if isinstance(v, bool) else None,
    "int": lambda v: v if is_int(v) else None,
    "float": lambda v: float(v) if _finite(v) else None,  # type: ignore[arg-type]
    # a NUL byte is in no name, path or text a study means (and os calls fail on it)
    "str": lambda v: v if isinstance(v, str) and "\x00" not in v else None,
    "tuple[int, ...]": lambda v: tuple(v) if isinstance(v, list) and all(map(is_int, v))
    else None,
    "tuple[float, ...]": lambda v: tuple(map(float, v)) if isinstance(v, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in v) else None,
}
# how an annotation reads in a message
_SPOKEN = {"tuple[int, ...]": "list of int", "tuple[float, ...]": "list of numbers"}


class TomlReader:
    """Typed accessors over a parsed TOML table; ``error(key, problem)`` builds the one-line
    exception (key None: the problem concerns the whole file)."""

    def __init__(self, error: Callable[[str | None, str], UserError]) -> None:
        self.error = error

    def err(self, key: str | None, problem: str) -> UserError:
        return self.error(key, problem)

    def table(self, v: object, key: str) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise self.err(key, f"expected a table, got {v!r}")
        return v

    def keys(self, t: Mapping[str, Any], allowed: tuple[str, ...], prefix: str,
             why: str = "") -> None:
        for k in t:
            if k not in allowed:
                raise self.err(f"{prefix}{k}", f"unknown key{why} (allowed: {', '.join(allowed)})")

    def named_tables(self, raw: list[Any], key: str, allowed: tuple[str, ...]
                     ) -> Iterator[tuple[str, Mapping[str, Any], str]]:
        """A list of tables with a ``name`` (a bare string is ``{ name = "…" }``): yields the
        dotted key of each item, its table (keys checked) and its non-empty name."""
        for i, item in enumerate(raw):
            at = f"{key}[{i}]"
            t = self.table({"name": item} if isinstance(item, str) else item, at)
            self.keys(t, allowed, f"{at}.")
            yield at, t, self.string(t.get("name"), f"{at}.name", nonempty=True)

    def string(self, v: object, key: str, nonempty: bool = False) -> str:
        if not isinstance(v, str) or (nonempty and not v.strip()):
            raise self.err(key, f"expected a {'non-empty ' if nonempty else ''}string, got {v!r}")
        if "\x00" in v:  # in no name, path or text a study means (and os calls fail on it)
            raise self.err(key, f"expected a string without NUL bytes, got {v!r}")
        return v

    def boolean(self, v: object, key: str) -> bool:
        if not isinstance(v, bool):
            raise self.err(key, f"expected true or false, got {v!r}")
        return v

    def integer(self, v: object, key: str, lo: int | None = None, hi: int | None = None) -> int:
        if (not is_int(v) or (lo is not None and v < lo)  # type: ignore[operator]
                or (hi is not None and v > hi)):  # type: ignore[operator]
            raise self.err(key, f"expected an integer{_bounds(lo, hi)}, got {v!r}")
        return v  # type: ignore[return-value]

    def ranged(self, v: object, key: str, bound: Bound) -> Any:
        """``v`` in a shared range (`nas_dil._check.SEED`), NaN and inf refused."""
        problem = bound.problem(v)
        if problem is not None:
            raise self.err(key, f"{problem}, got {v!r}")
        return v if bound.integer else float(v)  # type: ignore[arg-type]

    def number(self, v: object, key: str, lo: float | None = None) -> float:
        """A finite number (NaN fails ``lo <= v`` as it fails every comparison)."""
        if not _finite(v) or not (lo is None or lo <= v):  # type: ignore[operator]
            raise self.err(key, f"expected a finite number{_bounds(lo, None)}, got {v!r}")
        return float(v)  # type: ignore[arg-type]

    def int_list(self, v: object, key: str, lo: int, hi: int | None = None,
                 what: str | None = None) -> tuple[int, ...]:
        """A list of distinct ints in [lo, hi]; a bare int is a one-item list."""
        what = what or f"integers{_bounds(lo, hi)}"
        items = [v] if is_int(v) else v
        if not isinstance(items, list):
            raise self.err(key, f"expected a list of {what}, got {v!r}")
        if not items:
            raise self.err(key, f"expected a non-empty list of {what}, got []")
        for x in items:
            if not is_int(x) or x < lo or (hi is not None and x > hi):
                raise self.err(key, f"expected a list of {what}, got {x!r}")
        dup = next((x for i, x in enumerate(items) if x in items[:i]), None)
        if dup is not None:
            raise self.err(key, f"duplicate value {dup!r}")
        return tuple(int(x) for x in items)

    def typed(self, v: object, annotation: str, key: str) -> Any:
        """``v`` checked against a type annotation written as a string (a dataclass field's,
        a sampler argument's); alternatives no TOML value can take (callables, classes)
        never match."""
        kinds = annotation_kinds(annotation)
        for kind in kinds:
            check = _KINDS.get(kind)
            got = check(v) if check is not None else None
            if got is not None:
                return got
        if not any(k in _KINDS for k in kinds):
            raise self.err(key, f"cannot be set from a TOML file (expects {annotation})")
        if "float" in kinds and isinstance(v, float) and not math.isfinite(v):
            raise self.err(key, f"expected a finite number, got {v!r}")
        spoken = " | ".join(_SPOKEN.get(k, k) for k in kinds)
        raise self.err(key, f"expected {spoken}, got {v!r}")

    def dataclass_kwargs(self, cls: type, t: Mapping[str, Any], prefix: str,
                         exclude: tuple[str, ...] = (), why_excluded: str = "") -> dict[str, Any]:
        """Keyword arguments of dataclass ``cls`` from table ``t``, each checked against its
        field's annotation; keys in ``exclude`` are refused with ``why_excluded``."""
        hints = {f.name: str(f.type) for f in fields(cls) if f.name not in exclude}
        out: dict[str, Any] = {}
        for k, v in t.items():
            if k in exclude:
                raise self.err(f"{prefix}{k}", why_excluded)
            if k not in hints:
                raise self.err(f"{prefix}{k}",
                               f"unknown key (allowed: {', '.join(sorted(hints))})")
            out[k] = self.typed(v, hints[k], f"{prefix}{k}")
        return out

    def construct(self, cls: Callable[..., T], kwargs: Mapping[str, Any], key: str) -> T:
        """``cls(**kwargs)`` (the config checks its own fields); its refusal re-raised as one
        line of this file (`refusal`)."""
        try:
            return cls(**kwargs)
        except UserError as e:
            raise self.refusal(e, key) from None

    def refusal(self, e: UserError, key: str) -> UserError:
        """A config's own refusal as one line of this file: ``key.<field>`` when one field is
        at fault (``e.field``), else ``key`` with the config's own ``"<key>: "`` dropped."""
        at = f"{key}." if key else ""
        if e.field is not None:
            return self.err(f"{at}{e.field[0]}", e.field[1])
        return self.err(key or None, str(e).removeprefix(f"{key}: "))
