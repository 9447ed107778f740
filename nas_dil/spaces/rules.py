"""Rate rules: which rate lists a space admits, and how to count, enumerate and sample them.

Two families:

- `PerLayerRule` (``free``, ``gapfree``, and ``free`` with ``require_gridding_free``): an
  Optuna ``depth`` int and one categorical ``r1 … rN`` per layer over ``rates.choices``. Every
  raw suggestion is already valid for ``free``. For gridding-free spaces a raw suggestion may
  have holes; `repair_gapfree` maps it deterministically onto a hole-free list (identity on
  hole-free inputs), so sampling never rejects and never loops.
- `TableRule` (``hdc``, ``exponential``, ``multigrid``): the valid rate lists are few (tens to
  hundreds) and are built at load time, so one categorical ``rates`` picks among them. Why one
  categorical rather than per-position parameters plus a repair: the constraints couple every
  position (an HDC group must start at 1, rise strictly, obey rule 1 as a whole, and its
  length × repeats must land in the depth range; exponential and multigrid lists are fixed
  formulas of a few options filtered by depth), so a per-position repair would mostly
  overwrite what the sampler chose and teach TPE nothing; a categorical gives every valid
  schedule equal prior mass and lets TPE learn directly which ones score. If the valid lists
  differ between kernel sizes (HDC rule 1 and the gridding filter depend on K), the parameter
  is ``rates_k<K>`` instead, so one name always carries one distribution.

Gridding-freeness never depends on layer order (the per-axis support is a Minkowski sum),
which makes gapfree counting fast: count hole-free multisets with `batch_holes_1d` and
multiply each by its number of distinct orderings.

Over 500 lines on purpose: every rate rule (free, hdc, gapfree, exponential, multigrid)
with its count, enumeration and containment, side by side so they stay consistent.
"""

from __future__ import annotations

import bisect
import itertools
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from math import comb, factorial, prod
from typing import Any

import numpy as np
from optuna.trial import BaseTrial

from nas_dil.schedule import Schedule, batch_holes_1d, coverage, hdc_report
from nas_dil.spaces.config import (
    MAX_DEPTH,
    ExponentialRates,
    FreeRates,
    GapfreeRates,
    HDCRates,
    IntRange,
    MultigridRates,
    SpaceConfig,
)
from nas_dil.spaces.errors import space_error

__all__ = [
    "PerLayerRule",
    "Rule",
    "TableRule",
    "count_hole_free",
    "distinct_permutations",
    "hole_free_multisets",
    "is_hole_free",
    "make_rule",
    "repair_gapfree",
]

Rates = tuple[int, ...]

_BATCH_WORDS = 4_000_000  # bound on uint64 words per batch_holes_1d call (32 MB)
_BATCH_ROWS = 50_000


# -- gridding-free helpers -------------------------------------------------------------------

def is_hole_free(rates: Sequence[int], kernel: int) -> bool:
    """Exact test: the stack's per-axis coverage has no hole inside its RF."""
    return coverage(Schedule(tuple(rates), (kernel,))).gridding_free


def repair_gapfree(rates: Sequence[int], choices: Iterable[int], kernel: int) -> Rates:
    """Map any rate list onto a hole-free one using only ``rates`` and ``choices``.

    Identity on hole-free inputs (exact test). Otherwise walk the layers in ascending-rate
    order (stable) keeping the RF of those already walked, 1 + (K-1)·Σr; a rate larger than
    that RF is replaced by the largest choice <= RF. Proof of validity: the walked layers'
    support is a contiguous interval of width RF, and adding taps spaced <= RF apart to a
    contiguous interval of width RF leaves it contiguous. ``choices`` must contain 1.
    """
    rates = tuple(int(r) for r in rates)
    if is_hole_free(rates, kernel):
        return rates
    allowed = sorted(set(choices))
    if not allowed or allowed[0] != 1:
        raise ValueError(f"choices={allowed}: the gapfree repair needs 1 among the choices")
    out = list(rates)
    rf = 1
    for i in sorted(range(len(out)), key=out.__getitem__):  # sorted() is stable
        if out[i] > rf:
            out[i] = allowed[bisect.bisect_right(allowed, rf) - 1]
        rf += (kernel - 1) * out[i]
    return tuple(out)


def _holes_chunked(rows: np.ndarray, kernel: int) -> np.ndarray:
    """batch_holes_1d on (B, n) rows, in chunks that keep the bit arrays small."""
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    half = (kernel - 1) // 2
    words = (2 * half * int(rows.sum(axis=1).max()) + 64) // 64 + 1
    step = max(1, min(_BATCH_ROWS, _BATCH_WORDS // words))
    return np.concatenate([batch_holes_1d(rows[i:i + step], kernel)
                           for i in range(0, rows.shape[0], step)])


MAX_MULTISETS = 2_000_000  # beyond this, exact gapfree counting would take minutes: refuse


def n_multisets(n_values: int, depth: int) -> int:
    """Multisets of ``depth`` items from ``n_values`` values: C(n + d - 1, d)."""
    return comb(n_values + depth - 1, depth)


@lru_cache(maxsize=512)
def hole_free_multisets(choices: tuple[int, ...], depth: int, kernel: int) -> tuple[Rates, ...]:
    """All hole-free multisets of ``depth`` rates from ``choices``, as ascending tuples,
    in lexicographic order."""
    values = sorted(set(choices))
    total = n_multisets(len(values), depth)
    if total > MAX_MULTISETS:
        raise ValueError(f"{total} multisets of {depth} rates from {values}: more than "
                         f"{MAX_MULTISETS} to test; use fewer choices or a smaller depth")
    out: list[Rates] = []
    combos = itertools.combinations_with_replacement(values, depth)
    while True:
        chunk = list(itertools.islice(combos, _BATCH_ROWS))
        if not chunk:
            return tuple(out)
        arr = np.asarray(chunk, dtype=np.int64).reshape(len(chunk), depth)
        ok = _holes_chunked(arr, kernel) == 0
        out.extend(c for c, good in zip(chunk, ok.tolist(), strict=True) if good)


def _orderings(multiset: Rates) -> int:
    """Number of distinct orderings of a multiset: n! / Π (multiplicity!)."""
    return factorial(len(multiset)) // prod(factorial(c) for c in Counter(multiset).values())


@lru_cache(maxsize=512)
def count_hole_free(choices: tuple[int, ...], depth: int, kernel: int) -> int:
    """Number of hole-free rate lists (ordered) of ``depth`` layers from ``choices``."""
    return sum(_orderings(m) for m in hole_free_multisets(choices, depth, kernel))


def distinct_permutations(items: Sequence[int]) -> Iterator[Rates]:
    """Distinct orderings of ``items`` in lexicographic order (next-permutation)."""
    a = sorted(items)
    n = len(a)
    while True:
        yield tuple(a)
        i = n - 2
        while i >= 0 and a[i] >= a[i + 1]:
            i -= 1
        if i < 0:
            return
        j = n - 1
        while a[j] <= a[i]:
            j -= 1
        a[i], a[j] = a[j], a[i]
        a[i + 1:] = reversed(a[i + 1:])


def _fmt(rates: Sequence[int]) -> str:
    return "-".join(map(str, rates))


# -- rules -----------------------------------------------------------------------------------

class Rule(ABC):
    """The rate part of a space: per kernel size, which rate lists are valid.

    ``cap`` (every method's optional last argument): the largest rate a list may hold, so
    a space bound to a training crop proposes only stacks whose taps all land on the image
    (`nas_dil.spaces.Space.live`). A cap that removes choices renames the parameters it
    touches (suffix ``_le<m>``, m the largest rate kept), so one name still carries one
    distribution; None (the default) changes nothing.
    """

    def __init__(self, config: SpaceConfig) -> None:
        self.config = config
        self.gridding_free = config.require_gridding_free

    @abstractmethod
    def count_rates(self, kernel: int, cap: int | None = None) -> int:
        """Number of distinct valid rate lists with this kernel size."""

    @abstractmethod
    def iter_rates(self, kernel: int, cap: int | None = None) -> Iterator[Rates]:
        """Every valid rate list with this kernel size, in a deterministic order."""

    @abstractmethod
    def contains_rates(self, rates: Rates, kernel: int, cap: int | None = None) -> bool:
        """Whether ``rates`` is valid with this kernel size."""

    @abstractmethod
    def suggest_rates(self, trial: BaseTrial, kernel: int,
                      cap: int | None = None) -> tuple[Rates, bool]:
        """A valid rate list from fixed-distribution suggestions, and whether it was repaired."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The Optuna parameters this rule suggests, JSON-able."""

    @abstractmethod
    def params_for(self, rates: Rates, kernel: int,
                   cap: int | None = None) -> dict[str, Any]:
        """The inverse of `suggest_rates`: the parameters that suggest ``rates`` (which
        `contains_rates` accepts) with this kernel size."""

    # -- per-axis rates (``per_axis = true``): the width's rates, same rule, same depth --------
    @abstractmethod
    def count_by_depth(self, kernel: int, cap: int | None = None) -> dict[int, int]:
        """Valid rate lists with this kernel size, per depth."""

    def iter_rates_of_depth(self, kernel: int, depth: int,
                            cap: int | None = None) -> Iterator[Rates]:
        return (r for r in self.iter_rates(kernel, cap) if len(r) == depth)

    @abstractmethod
    def suggest_rates_w(self, trial: BaseTrial, kernel: int, depth: int,
                        cap: int | None = None) -> tuple[Rates, bool]:
        """The width's rates for a stack of ``depth`` layers, and whether they were repaired."""

    @abstractmethod
    def params_w(self) -> dict[str, Any]:
        """The extra Optuna parameters of ``per_axis``."""

    @abstractmethod
    def params_w_for(self, rates_w: Rates, kernel: int,
                     cap: int | None = None) -> dict[str, Any]:
        """The inverse of `suggest_rates_w` (a valid list of the same depth as the rates)."""


class PerLayerRule(Rule):
    """``free``/``gapfree``: depth, then one categorical per layer (``r1`` … ``rN``)."""

    def __init__(self, config: SpaceConfig) -> None:
        super().__init__(config)
        assert isinstance(config.rates, FreeRates | GapfreeRates) and config.depth is not None
        self.choices = config.rates.choices
        self.depth: IntRange = config.depth
        self._sorted = tuple(sorted(self.choices))
        # gridding-free per-layer spaces are never empty: config validation ensures 1 is a
        # choice, and [1] * depth is hole-free for every K and depth

    def kept(self, cap: int | None) -> tuple[int, ...]:
        """The choices under ``cap``, in file order (all of them when None)."""
        return self.choices if cap is None else tuple(c for c in self.choices if c <= cap)

    def _suffix(self, cap: int | None) -> str:
        kept = self.kept(cap)
        return "" if len(kept) == len(self.choices) or not kept else f"_le{max(kept)}"

    def count_rates(self, kernel: int, cap: int | None = None) -> int:
        return sum(self.count_by_depth(kernel, cap).values())

    def iter_rates(self, kernel: int, cap: int | None = None) -> Iterator[Rates]:
        for d in self.depth.values():
            yield from self.iter_rates_of_depth(kernel, d, cap)

    def contains_rates(self, rates: Rates, kernel: int, cap: int | None = None) -> bool:
        kept = self.kept(cap)
        if len(rates) not in self.depth or any(r not in kept for r in rates):
            return False
        return not self.gridding_free or is_hole_free(rates, kernel)

    def _suggest(self, trial: BaseTrial, prefix: str, depth: int, kernel: int,
                 cap: int | None) -> tuple[Rates, bool]:
        kept, sfx = self.kept(cap), self._suffix(cap)
        raw = tuple(int(trial.suggest_categorical(f"{prefix}{i}{sfx}", kept))
                    for i in range(1, depth + 1))
        if not self.gridding_free:
            return raw, False
        fixed = repair_gapfree(raw, kept, kernel)
        return fixed, fixed != raw

    def suggest_rates(self, trial: BaseTrial, kernel: int,
                      cap: int | None = None) -> tuple[Rates, bool]:
        depth = trial.suggest_int("depth", self.depth.min, self.depth.max)
        return self._suggest(trial, "r", depth, kernel, cap)

    def params_for(self, rates: Rates, kernel: int,
                   cap: int | None = None) -> dict[str, Any]:
        # a valid gapfree list is its own repair, so the raw suggestion is the list itself
        sfx = self._suffix(cap)
        return {"depth": len(rates), **{f"r{i}{sfx}": r for i, r in enumerate(rates, 1)}}

    def params(self) -> dict[str, Any]:
        return {"depth": self.depth.to_json(),
                f"r1..r{self.depth.max}": list(self.choices),
                "repair": "gapfree" if self.gridding_free else None}

    def count_by_depth(self, kernel: int, cap: int | None = None) -> dict[int, int]:
        kept = tuple(sorted(self.kept(cap)))
        if not self.gridding_free:
            return {d: len(kept) ** d for d in self.depth.values()}
        worst = n_multisets(len(kept), self.depth.max)
        if worst > MAX_MULTISETS:  # the same refusal however it is asked
            raise space_error(self.config.path, "depth",
                              f"counting exactly needs {worst} hole-free tests at depth "
                              f"{self.depth.max} (limit {MAX_MULTISETS}); sampling still works")
        return {d: count_hole_free(kept, d, kernel) if kept else 0 for d in self.depth.values()}

    def iter_rates_of_depth(self, kernel: int, depth: int,
                            cap: int | None = None) -> Iterator[Rates]:
        kept = self.kept(cap)
        if not kept:
            return
        if not self.gridding_free:  # choices in file order, last layer fastest
            yield from itertools.product(kept, repeat=depth)
            return
        for multiset in hole_free_multisets(tuple(sorted(kept)), depth, kernel):
            yield from distinct_permutations(multiset)

    def suggest_rates_w(self, trial: BaseTrial, kernel: int, depth: int,
                        cap: int | None = None) -> tuple[Rates, bool]:
        return self._suggest(trial, "w", depth, kernel, cap)

    def params_w(self) -> dict[str, Any]:
        return {f"w1..w{self.depth.max}": list(self.choices)}

    def params_w_for(self, rates_w: Rates, kernel: int,
                     cap: int | None = None) -> dict[str, Any]:
        sfx = self._suffix(cap)
        return {f"w{i}{sfx}": r for i, r in enumerate(rates_w, 1)}


class TableRule(Rule):
    """``hdc``/``exponential``/``multigrid``: one categorical over the valid lists."""

    def __init__(self, config: SpaceConfig) -> None:
        super().__init__(config)
        self.depth = config.depth or IntRange(1, MAX_DEPTH)
        self.tables: dict[int, dict[str, Rates]] = {}  # kernel -> label -> rates (ordered)
        failures: dict[int, tuple[str, str]] = {}
        for k in config.kernel:
            table, failure = self._build(k)
            if failure is not None:
                failures[k] = failure
            else:
                self.tables[k] = table
        src = config.path
        if len(failures) == len(config.kernel):
            key, problem = failures[config.kernel[0]]
            raise space_error(src, key, problem)
        if failures:
            k, (key, problem) = next(iter(failures.items()))
            raise space_error(src, "kernel", f"kernel {k} admits no candidate ({key}: {problem}); "
                              "remove it from the kernel choices")
        labels = {k: tuple(t) for k, t in self.tables.items()}
        self.shared = len(set(labels.values())) == 1  # one parameter name serves every K
        self.labels = labels
        self._sets = {k: frozenset(t.values()) for k, t in self.tables.items()}

    @abstractmethod
    def _raw(self, kernel: int) -> Iterator[tuple[str, Rates]]:
        """(label, rates) before the depth and gridding filters; labels are unique."""

    @abstractmethod
    def _nothing(self, kernel: int) -> tuple[str, str]:
        """(key, problem) when `_raw` yields nothing."""

    def _build(self, kernel: int) -> tuple[dict[str, Rates], tuple[str, str] | None]:
        raw: dict[str, Rates] = {}
        for label, rates in self._raw(kernel):
            raw.setdefault(label, rates)
        if not raw:
            return {}, self._nothing(kernel)
        fit = {lab: r for lab, r in raw.items() if len(r) in self.depth}
        if not fit:
            made = sorted({len(r) for r in raw.values()})
            return {}, ("depth", f"no {self.config.rule} schedule has depth in "
                        f"{self.depth.min}..{self.depth.max} (the options make depths {made})")
        if self.gridding_free:
            ok = self._hole_free_mask(list(fit.values()), kernel)
            fit = {lab: r for (lab, r), good in zip(fit.items(), ok, strict=True) if good}
            if not fit:
                return {}, ("require_gridding_free",
                            f"every {self.config.rule} schedule has holes with kernel {kernel}")
        return fit, None

    @staticmethod
    def _hole_free_mask(rows: list[Rates], kernel: int) -> list[bool]:
        mask = [False] * len(rows)
        by_len: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            by_len.setdefault(len(r), []).append(i)
        for idx in by_len.values():
            arr = np.asarray([rows[i] for i in idx], dtype=np.int64)
            for i, holes in zip(idx, _holes_chunked(arr, kernel).tolist(), strict=True):
                mask[i] = holes == 0
        return mask

    def kept(self, kernel: int, cap: int | None, depth: int | None = None) -> dict[str, Rates]:
        """label -> rates of the lists with every rate <= ``cap`` (and of ``depth`` layers)."""
        return {lab: r for lab, r in self.tables[kernel].items()
                if (cap is None or max(r) <= cap) and (depth is None or len(r) == depth)}

    def _named(self, base: str, kernel: int, cap: int | None,
               depth: int | None = None) -> tuple[str, dict[str, Rates]]:
        """(parameter name, its label -> rates) under ``cap``: renamed when the cap drops a
        list, by the largest rate kept (which fixes the kept set)."""
        kept = self.kept(kernel, cap, depth)
        total = len(self.kept(kernel, None, depth))
        if len(kept) == total or not kept:
            return base, kept
        return f"{base}_le{max(max(r) for r in kept.values())}", kept

    def param_name(self, kernel: int, cap: int | None = None) -> str:
        return self._named("rates" if self.shared else f"rates_k{kernel}", kernel, cap)[0]

    def count_rates(self, kernel: int, cap: int | None = None) -> int:
        return len(self.kept(kernel, cap))

    def iter_rates(self, kernel: int, cap: int | None = None) -> Iterator[Rates]:
        return iter(self.kept(kernel, cap).values())

    def contains_rates(self, rates: Rates, kernel: int, cap: int | None = None) -> bool:
        return (tuple(rates) in self._sets.get(kernel, ())
                and (cap is None or max(rates) <= cap))

    def suggest_rates(self, trial: BaseTrial, kernel: int,
                      cap: int | None = None) -> tuple[Rates, bool]:
        name, kept = self._named("rates" if self.shared else f"rates_k{kernel}", kernel, cap)
        label = trial.suggest_categorical(name, tuple(kept))
        return kept[str(label)], False

    def params_for(self, rates: Rates, kernel: int,
                   cap: int | None = None) -> dict[str, Any]:
        label = next(lab for lab, r in self.tables[kernel].items() if r == tuple(rates))
        return {self.param_name(kernel, cap): label}

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, labels in self.labels.items():
            out.setdefault(self.param_name(k), {"categorical": len(labels)})
        return out

    def count_by_depth(self, kernel: int, cap: int | None = None) -> dict[int, int]:
        return dict(Counter(len(r) for r in self.kept(kernel, cap).values()))

    def param_name_w(self, kernel: int, depth: int, cap: int | None = None) -> str:
        # one name per (depth[, kernel]): one distribution per name, as Optuna needs
        base = f"rates_w_d{depth}" if self.shared else f"rates_w_d{depth}_k{kernel}"
        return self._named(base, kernel, cap, depth)[0]

    def params_w_for(self, rates_w: Rates, kernel: int,
                     cap: int | None = None) -> dict[str, Any]:
        label = next(lab for lab, r in self.tables[kernel].items() if r == tuple(rates_w))
        return {self.param_name_w(kernel, len(rates_w), cap): label}

    def suggest_rates_w(self, trial: BaseTrial, kernel: int, depth: int,
                        cap: int | None = None) -> tuple[Rates, bool]:
        base = f"rates_w_d{depth}" if self.shared else f"rates_w_d{depth}_k{kernel}"
        name, kept = self._named(base, kernel, cap, depth)
        label = trial.suggest_categorical(name, tuple(kept))
        return kept[str(label)], False

    def params_w(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in self.tables:
            for d, n in sorted(self.count_by_depth(k).items()):
                out.setdefault(self.param_name_w(k, d), {"categorical": n})
        return out


MAX_GROUPS = 200_000  # rising groups an hdc space may ask us to test at load time


class HDCRule(TableRule):
    """Groups ``(1, a, b, …)`` rising strictly, rule 1 within the group, rule 2 (gcd 1),
    repeated ``repeats`` times; labels like ``"1-2-5x2"``."""

    def groups(self, kernel: int) -> list[Rates]:
        opts = self.config.rates
        assert isinstance(opts, HDCRates)
        above = sorted(c for c in opts.choices if c > 1)
        sizes = [n for n in opts.group_size.values() if n - 1 <= len(above)]
        total = sum(comb(len(above), n - 1) for n in sizes)
        if total > MAX_GROUPS:
            raise space_error(self.config.path, "rates.group_size",
                              f"{total} candidate groups to test (limit {MAX_GROUPS}); use "
                              "fewer rates.choices or a smaller rates.group_size.max")
        found: list[Rates] = []
        for size in opts.group_size.values():
            if size - 1 > len(above):
                break
            for rest in itertools.combinations(above, size - 1):
                group = (1, *rest)
                rep = hdc_report(group, kernel=kernel)
                if rep.rule1_groups.passed and rep.rule2.passed:
                    found.append(group)
        return found

    def _raw(self, kernel: int) -> Iterator[tuple[str, Rates]]:
        opts = self.config.rates
        assert isinstance(opts, HDCRates)
        for group in self.groups(kernel):
            reps = (opts.repeats.values() if opts.repeats is not None
                    else range(1, self.depth.max // len(group) + 1))
            for n in reps:
                yield f"{_fmt(group)}x{n}", group * n

    def _nothing(self, kernel: int) -> tuple[str, str]:
        opts = self.config.rates
        assert isinstance(opts, HDCRates)
        return ("rates", f"no rising group of {opts.group_size.min}..{opts.group_size.max} "
                f"rates from {list(opts.choices)} starting at 1 obeys HDC rule 1 "
                f"(M_2 <= K={kernel})")


class ExponentialRule(TableRule):
    """``[1]*leading + [base**0 … base**(levels-1)] + [1]*trailing``; labels are the rates."""

    def _raw(self, kernel: int) -> Iterator[tuple[str, Rates]]:
        opts = self.config.rates
        assert isinstance(opts, ExponentialRates)
        for base, levels, lead, trail in itertools.product(
                opts.base, opts.levels.values(), opts.leading, opts.trailing):
            rates = (1,) * lead + tuple(base**i for i in range(levels)) + (1,) * trail
            yield _fmt(rates), rates

    def _nothing(self, kernel: int) -> tuple[str, str]:  # pragma: no cover - options non-empty
        return "rates", "the options make no schedule"


class MultigridRule(TableRule):
    """``[g * base_rate for g in grid] * repeats``; labels are the rates."""

    def _raw(self, kernel: int) -> Iterator[tuple[str, Rates]]:
        opts = self.config.rates
        assert isinstance(opts, MultigridRates)
        for grid, base, n in itertools.product(opts.grid, opts.base_rate,
                                               opts.repeats.values()):
            rates = tuple(g * base for g in grid) * n
            yield _fmt(rates), rates

    def _nothing(self, kernel: int) -> tuple[str, str]:  # pragma: no cover - options non-empty
        return "rates", "the options make no schedule"


def make_rule(config: SpaceConfig) -> Rule:
    """The rule object for a validated config; raises SpaceError if it admits nothing."""
    cls: Callable[[SpaceConfig], Rule] = {
        "free": PerLayerRule,
        "gapfree": PerLayerRule,
        "hdc": HDCRule,
        "exponential": ExponentialRule,
        "multigrid": MultigridRule,
    }[config.rule]
    return cls(config)
