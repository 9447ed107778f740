"""Parse and validate a search-space TOML file into frozen config dataclasses.

A space is data. Its keys (every shipped file documents each one with a comment):

    name = "hdc"                        # optional; defaults to the file's stem
    description = "…"                   # optional free text
    depth = 6 | { min = 3, max = 9 }    # layers in the stack (required by free/gapfree;
                                        #   for the other rules an optional filter)
    kernel = [3]                        # K×K choices (odd ints in [1, 63]); an int is a
                                        #   one-item list
    output_stride = [8, 16]             # subset of 4, 8, 16, 32 (the [arch] decides)
    width = [16, 32]                    # channel choices (ints in [1, 4096])
    require_gridding_free = false       # optional: keep only hole-free stacks
    smooth = [false, true]              # optional: smoothed dilated convs (Wang & Ji) as a
                                        #   choice; default [false]
    tail = [[], [2, 1]]                 # optional: DRN degridding tails to choose from (lists
                                        #   of rates, [] = none); default [[]]
    per_axis = false                    # optional: true draws a width rate per layer too
                                        #   (same rule, same depth): (r_h, r_w)
    avoid_dead_taps = false             # optional, older files: true reads as the study's
                                        #   dead_taps = "avoid" (only stacks whose taps all
                                        #   land on the image at its crop; search/dead_taps.py)
    [rates]
    rule = "free" | "gapfree" | "hdc" | "exponential" | "multigrid"
    …                                   # the rule's own options (see the *Rates classes)

Every problem raises `SpaceError("<file>: <dotted.key>: <problem>")`: unknown keys, wrong
types, bad values (every number is an integer with a range: NaN, inf and floats are refused
as not integers), min > max, unknown rule. Whether a valid config admits any candidate at
all is checked by the rules (`nas_dil.spaces.rules`), also at load time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas_dil._check import MAX_CHANNELS, MAX_KERNEL
from nas_dil._toml import TomlReader, is_int
from nas_dil.spaces.candidate import OUTPUT_STRIDES
from nas_dil.spaces.errors import space_error

__all__ = [
    "MAX_DEPTH",
    "MAX_RATE",
    "RULES",
    "ExponentialRates",
    "FreeRates",
    "GapfreeRates",
    "HDCRates",
    "IntRange",
    "MultigridRates",
    "RateOptions",
    "SpaceConfig",
    "parse_config",
]

MAX_DEPTH = 64  # deeper stacks are almost surely a typo (and gapfree counts grow fast)
MAX_RATE = 1024  # larger rates are almost surely a typo (and coverage costs O(RF))
RULES = ("free", "gapfree", "hdc", "exponential", "multigrid")

_TOP_KEYS = ("name", "description", "depth", "kernel", "output_stride", "width",
             "require_gridding_free", "smooth", "tail", "per_axis", "avoid_dead_taps", "rates")
MAX_TAIL = 8  # layers in one degridding tail (DRN uses 2)


@dataclass(frozen=True)
class IntRange:
    """An inclusive integer range; TOML ``5`` or ``{ min = 3, max = 9 }``."""

    min: int  # smallest value allowed (inclusive)
    max: int  # largest value allowed (inclusive)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max

    def values(self) -> range:
        return range(self.min, self.max + 1)

    def to_json(self) -> int | dict[str, int]:
        return self.min if self.min == self.max else {"min": self.min, "max": self.max}


@dataclass(frozen=True)
class FreeRates:
    """Each layer picks any rate from ``choices``."""

    rule: ClassVar[str] = "free"
    keys: ClassVar[tuple[str, ...]] = ("rule", "choices")
    choices: tuple[int, ...]  # rates a layer may take (distinct ints, 1 … MAX_RATE)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "choices": list(self.choices)}


@dataclass(frozen=True)
class GapfreeRates:
    """Each layer picks a rate from ``choices``; the stack's exact coverage has no holes."""

    rule: ClassVar[str] = "gapfree"
    keys: ClassVar[tuple[str, ...]] = ("rule", "choices")
    choices: tuple[int, ...]  # rates a layer may take; must include 1 (the repair needs it)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "choices": list(self.choices)}


@dataclass(frozen=True)
class HDCRates:
    """Identical rising groups (HDC rule 3), each starting at 1, obeying rules 1 and 2."""

    rule: ClassVar[str] = "hdc"
    keys: ClassVar[tuple[str, ...]] = ("rule", "choices", "group_size", "repeats")
    choices: tuple[int, ...]  # rates a group may use; must include 1 (groups start at 1)
    group_size: IntRange  # layers per group (>= 2); default 2 … min(4, len(choices))
    repeats: IntRange | None  # times the group repeats; None: every count that fits depth

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "choices": list(self.choices),
                               "group_size": self.group_size.to_json()}
        if self.repeats is not None:
            out["repeats"] = self.repeats.to_json()
        return out


@dataclass(frozen=True)
class ExponentialRates:
    """Yu & Koltun: ``[1]*leading + [base**0, …, base**(levels-1)] + [1]*trailing``."""

    rule: ClassVar[str] = "exponential"
    keys: ClassVar[tuple[str, ...]] = ("rule", "base", "levels", "leading", "trailing")
    base: tuple[int, ...]  # growth factors to choose from (ints >= 2); default [2]
    levels: IntRange  # number of exponential layers (>= 1)
    leading: tuple[int, ...]  # choices for the count of rate-1 layers before (ints >= 0)
    trailing: tuple[int, ...]  # choices for the count of rate-1 layers after (ints >= 0)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "base": list(self.base), "levels": self.levels.to_json(),
                "leading": list(self.leading), "trailing": list(self.trailing)}


@dataclass(frozen=True)
class MultigridRates:
    """DeepLab multi-grid: ``[g * base_rate for g in grid] * repeats``."""

    rule: ClassVar[str] = "multigrid"
    keys: ClassVar[tuple[str, ...]] = ("rule", "grid", "base_rate", "repeats")
    grid: tuple[tuple[int, ...], ...]  # unit-rate patterns to choose from; default [[1, 2, 4]]
    base_rate: tuple[int, ...]  # block rates that scale the grid; default [1]
    repeats: IntRange  # times the scaled grid repeats; default 1

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "grid": [list(g) for g in self.grid],
                "base_rate": list(self.base_rate), "repeats": self.repeats.to_json()}


RateOptions = FreeRates | GapfreeRates | HDCRates | ExponentialRates | MultigridRates


@dataclass(frozen=True)
class SpaceConfig:
    """A validated space file; `nas_dil.spaces.Space` turns it into candidates."""

    path: Path  # where it was read from (used in every error message)
    name: str  # short name; defaults to the file's stem
    description: str  # one-line summary for reports
    depth: IntRange | None  # layers in the stack; None: whatever the rule makes
    kernel: tuple[int, ...]  # K choices (odd, distinct)
    output_stride: tuple[int, ...]  # output-stride choices (distinct, from 4/8/16/32)
    width: tuple[int, ...]  # channel choices (distinct, >= 1)
    require_gridding_free: bool  # only hole-free stacks (always true for gapfree and hdc)
    rates: RateOptions  # the rate rule and its options
    smooth: tuple[bool, ...] = (False,)  # smoothing choices (Wang & Ji pre-filter)
    tail: tuple[tuple[int, ...], ...] = ((),)  # degridding-tail choices; () = none
    per_axis: bool = False  # each layer draws (r_h, r_w) by the same rule
    avoid_dead_taps: bool = False  # older files: a study that refuses dead taps avoids them
    # (nas_dil.search.dead_taps binds the space to its crop, `Space.live`)

    @property
    def rule(self) -> str:
        return self.rates.rule

    @property
    def degridding(self) -> bool:
        """Whether any degridding dimension is on (else the space is as it always was)."""
        return self.smooth != (False,) or self.tail != ((),) or self.per_axis

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "path": str(self.path),
            "depth": None if self.depth is None else self.depth.to_json(),
            "kernel": list(self.kernel),
            "output_stride": list(self.output_stride),
            "width": list(self.width),
            "require_gridding_free": self.require_gridding_free,
            "rates": self.rates.to_json(),
            # degridding keys only when set: old spaces describe themselves as before
            **({"smooth": list(self.smooth)} if self.smooth != (False,) else {}),
            **({"tail": [list(t) for t in self.tail]} if self.tail != ((),) else {}),
            **({"per_axis": True} if self.per_axis else {}),
            **({"avoid_dead_taps": True} if self.avoid_dead_taps else {}),
        }


# -- readers ---------------------------------------------------------------------------------

class _Reader(TomlReader):
    """`TomlReader` raising SpaceError naming the file, plus depth-like ranges."""

    def __init__(self, source: object) -> None:
        super().__init__(lambda key, problem: space_error(source, key, problem))

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str,
                   why: str = "") -> None:
        self.keys(table, allowed, prefix, why)

    def int_range(self, v: object, key: str, lo: int, hi: int) -> IntRange:
        """``5`` or ``{ min = 3, max = 9 }`` with lo <= min <= max <= hi."""
        if is_int(v):
            n = self.integer(v, key, lo, hi)
            return IntRange(n, n)
        if not isinstance(v, Mapping):
            raise self.err(key, f"expected an integer or {{ min = …, max = … }}, got {v!r}")
        self.check_keys(v, ("min", "max"), f"{key}.")
        for sub in ("min", "max"):
            if sub not in v:
                raise self.err(f"{key}.{sub}", "missing")
        a = self.integer(v["min"], f"{key}.min", lo, hi)
        b = self.integer(v["max"], f"{key}.max", lo, hi)
        if a > b:
            raise self.err(key, f"min {a} > max {b}")
        return IntRange(a, b)


# -- the parser ------------------------------------------------------------------------------

def parse_config(data: Mapping[str, Any], path: str | Path) -> SpaceConfig:
    """Validate a parsed TOML table; ``path`` names the file in error messages."""
    rd = _Reader(path)
    if not isinstance(data, Mapping):
        raise rd.err(None, f"expected a TOML table, got {type(data).__name__}")
    rd.check_keys(data, _TOP_KEYS, "")
    for required in ("kernel", "output_stride", "width", "rates"):
        if required not in data:
            raise rd.err(required, "missing")

    name = rd.string(data.get("name", Path(path).stem), "name", nonempty=True)
    description = rd.string(data.get("description", ""), "description")
    depth = (rd.int_range(data["depth"], "depth", 1, MAX_DEPTH) if "depth" in data else None)
    kernel = rd.int_list(data["kernel"], "kernel", 1, MAX_KERNEL,
                         what=f"odd integers in [1, {MAX_KERNEL}]")
    even = [k for k in kernel if k % 2 == 0]
    if even:
        raise rd.err("kernel", f"expected a list of odd integers in [1, {MAX_KERNEL}], "
                               f"got {even[0]!r}")
    stride_what = f"output strides from {list(OUTPUT_STRIDES)}"
    output_stride = rd.int_list(data["output_stride"], "output_stride", 1, what=stride_what)
    bad = [s for s in output_stride if s not in OUTPUT_STRIDES]
    if bad:
        raise rd.err("output_stride", f"expected a list of {stride_what}, got {bad[0]!r}")
    width = rd.int_list(data["width"], "width", 1, MAX_CHANNELS)
    rgf_given = "require_gridding_free" in data
    rgf = rd.boolean(data.get("require_gridding_free", False), "require_gridding_free")

    table = data["rates"]
    if not isinstance(table, Mapping):
        raise rd.err("rates", f"expected a table ([rates]), got {table!r}")
    if "rule" not in table:
        raise rd.err("rates.rule", f"missing (one of {', '.join(RULES)})")
    rule = table["rule"]
    if rule not in RULES:
        raise rd.err("rates.rule", f"unknown rule {rule!r} (expected one of {', '.join(RULES)})")
    rates = _RULE_PARSERS[rule](rd, table, depth)

    if rule in ("gapfree", "hdc"):
        if rgf_given and not rgf:
            raise rd.err("require_gridding_free",
                         f"rule {rule!r} is gridding-free by construction; false contradicts it")
        rgf = True
    if rgf and isinstance(rates, FreeRates | GapfreeRates) and 1 not in rates.choices:
        raise rd.err("rates.choices", "a gridding-free per-layer space needs 1 among the choices "
                     f"(the repair falls back to it), got {list(rates.choices)}")
    smooth = _smooth_choices(rd, data.get("smooth", [False]))
    tail = _tail_choices(rd, data.get("tail", [[]]))
    per_axis = rd.boolean(data.get("per_axis", False), "per_axis")
    avoid = rd.boolean(data.get("avoid_dead_taps", False), "avoid_dead_taps")
    return SpaceConfig(Path(path), name, description, depth, kernel, output_stride, width, rgf,
                       rates, smooth, tail, per_axis, avoid)


def _smooth_choices(rd: _Reader, v: object) -> tuple[bool, ...]:
    items = [v] if isinstance(v, bool) else v
    if not isinstance(items, list) or not items or not all(isinstance(x, bool) for x in items):
        raise rd.err("smooth", f"expected true, false or a list of them, got {v!r}")
    if len(set(items)) != len(items):
        raise rd.err("smooth", f"duplicate value in {v!r}")
    return tuple(items)


def _tail_choices(rd: _Reader, v: object) -> tuple[tuple[int, ...], ...]:
    if not isinstance(v, list) or not v or not all(isinstance(x, list) for x in v):
        raise rd.err("tail", f"expected a list of rate lists ([[], [2, 1]]), got {v!r}")
    out: list[tuple[int, ...]] = []
    for i, t in enumerate(v):
        if len(t) > MAX_TAIL:
            raise rd.err(f"tail[{i}]", f"at most {MAX_TAIL} layers, got {len(t)}")
        tail = tuple(rd.integer(x, f"tail[{i}]", 1, MAX_RATE) for x in t)
        if tail in out:
            raise rd.err(f"tail[{i}]", f"duplicate tail {list(tail)}")
        out.append(tail)
    return tuple(out)


def _options(rd: _Reader, table: Mapping[str, Any], keys: tuple[str, ...], rule: str) -> None:
    rd.check_keys(table, keys, "rates.", f" for rule {rule!r}")


def _choices(rd: _Reader, table: Mapping[str, Any]) -> tuple[int, ...]:
    if "choices" not in table:
        raise rd.err("rates.choices", "missing (a list of positive integers)")
    return rd.int_list(table["choices"], "rates.choices", 1, MAX_RATE,
                       what=f"positive integers <= {MAX_RATE}")


def _need_depth(rd: _Reader, depth: IntRange | None, rule: str) -> None:
    if depth is None:
        raise rd.err("depth", f"missing (rule {rule!r} needs depth = N or {{ min = …, max = … }})")


def _parse_free(rd: _Reader, t: Mapping[str, Any], depth: IntRange | None) -> FreeRates:
    _options(rd, t, FreeRates.keys, "free")
    _need_depth(rd, depth, "free")
    return FreeRates(_choices(rd, t))


def _parse_gapfree(rd: _Reader, t: Mapping[str, Any], depth: IntRange | None) -> GapfreeRates:
    _options(rd, t, GapfreeRates.keys, "gapfree")
    _need_depth(rd, depth, "gapfree")
    return GapfreeRates(_choices(rd, t))


def _parse_hdc(rd: _Reader, t: Mapping[str, Any], depth: IntRange | None) -> HDCRates:
    _options(rd, t, HDCRates.keys, "hdc")
    choices = _choices(rd, t)
    if 1 not in choices:
        raise rd.err("rates.choices", f"hdc groups start at rate 1; got {list(choices)}")
    if "group_size" in t:
        group_size = rd.int_range(t["group_size"], "rates.group_size", 2, MAX_DEPTH)
    else:
        group_size = IntRange(2, max(2, min(len(choices), 4)))  # HDC groups are short
    repeats = (rd.int_range(t["repeats"], "rates.repeats", 1, MAX_DEPTH)
               if "repeats" in t else None)
    if repeats is None and depth is None:
        raise rd.err("depth", "missing (rule 'hdc' needs depth or rates.repeats)")
    return HDCRates(choices, group_size, repeats)


def _parse_exponential(rd: _Reader, t: Mapping[str, Any],
                       depth: IntRange | None) -> ExponentialRates:
    _options(rd, t, ExponentialRates.keys, "exponential")
    base = rd.int_list(t.get("base", [2]), "rates.base", 2, MAX_RATE)
    if "levels" not in t:
        raise rd.err("rates.levels", "missing (an integer or { min = …, max = … })")
    levels = rd.int_range(t["levels"], "rates.levels", 1, MAX_DEPTH)
    leading = rd.int_list(t.get("leading", [0]), "rates.leading", 0, MAX_DEPTH)
    trailing = rd.int_list(t.get("trailing", [0]), "rates.trailing", 0, MAX_DEPTH)
    top = max(base) ** (levels.max - 1)
    if top > MAX_RATE:
        raise rd.err("rates.levels", f"base {max(base)} with {levels.max} levels reaches rate "
                     f"{top} > {MAX_RATE}")
    return ExponentialRates(base, levels, leading, trailing)


def _parse_multigrid(rd: _Reader, t: Mapping[str, Any], depth: IntRange | None) -> MultigridRates:
    _options(rd, t, MultigridRates.keys, "multigrid")
    raw = t.get("grid", [[1, 2, 4]])
    if not isinstance(raw, list) or not raw:
        raise rd.err("rates.grid", f"expected a non-empty list of rate lists, got {raw!r}")
    grids: list[tuple[int, ...]] = []
    for i, g in enumerate(raw):
        if not isinstance(g, list):
            raise rd.err(f"rates.grid[{i}]", f"expected a list of positive integers, got {g!r}")
        grid = tuple(_grid_items(rd, g, f"rates.grid[{i}]"))
        if grid in grids:
            raise rd.err(f"rates.grid[{i}]", f"duplicate grid {list(grid)}")
        grids.append(grid)
    base_rate = rd.int_list(t.get("base_rate", [1]), "rates.base_rate", 1, MAX_RATE)
    top = max(max(g) for g in grids) * max(base_rate)
    if top > MAX_RATE:
        raise rd.err("rates.base_rate", f"grid × base_rate reaches rate {top} > {MAX_RATE}")
    repeats = rd.int_range(t.get("repeats", 1), "rates.repeats", 1, MAX_DEPTH)
    return MultigridRates(tuple(grids), base_rate, repeats)


def _grid_items(rd: _Reader, g: list[Any], key: str) -> Iterator[int]:
    if not g:
        raise rd.err(key, "expected a non-empty list of positive integers, got []")
    for x in g:  # a grid may repeat a value ((1, 1, 1) is DeepLab's baseline)
        yield rd.integer(x, key, 1, MAX_RATE)


_Parser = Callable[[_Reader, Mapping[str, Any], IntRange | None], RateOptions]
_RULE_PARSERS: dict[str, _Parser] = {
    "free": _parse_free,
    "gapfree": _parse_gapfree,
    "hdc": _parse_hdc,
    "exponential": _parse_exponential,
    "multigrid": _parse_multigrid,
}
