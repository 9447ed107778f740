"""Hybrid Dilated Convolution rules (Wang et al., WACV 2018), each with a verdict and a reason.

M_n = r_n,  M_i = max[M_{i+1} - 2 r_i,  M_{i+1} - 2 (M_{i+1} - r_i),  r_i].
Rule 1: M_2 <= K (here K of layer 1, the layer that must fill gaps of size M_2).
Rule 2: the rates of a group share no common factor > 1.
Rule 3: sawtooth: the schedule splits into groups of rising rates (length >= 2), ideally repeated.

All rates are effective rates (r_i · J_i) so strided stacks are judged in input pixels.
`rule1` applies the recursion to the whole schedule, exactly as THEORY.md states (and as its
brute-force counts were made); `rule1_groups` applies it within each sawtooth group, which
is how the paper uses it for repeated groups such as [1, 2, 5, 1, 2, 5].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from math import gcd

__all__ = ["HDCReport", "RuleVerdict", "hdc_report", "m_values", "sawtooth_groups"]


@dataclass(frozen=True)
class RuleVerdict:
    passed: bool
    reason: str


def m_values(rates: Sequence[int]) -> list[int]:
    """M_1 … M_n for a list of rates (the recursion runs from the last layer back)."""
    if not rates:
        raise ValueError(f"{rates=}: need at least one rate")
    m = [0] * len(rates)
    m[-1] = int(rates[-1])
    for i in range(len(rates) - 2, -1, -1):
        r, nxt = int(rates[i]), m[i + 1]
        m[i] = max(nxt - 2 * r, nxt - 2 * (nxt - r), r)
    return m


def sawtooth_groups(rates: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of strictly rising rates as half-open index ranges [start, end)."""
    groups: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(rates)):
        if rates[i] <= rates[i - 1]:
            groups.append((start, i))
            start = i
    groups.append((start, len(rates)))
    return groups


def _fmt(rates: Sequence[int]) -> str:
    return "[" + ", ".join(map(str, rates)) + "]"


def _rule1(rates: Sequence[int], kernel: int) -> RuleVerdict:
    if len(rates) < 2:
        return RuleVerdict(True, f"one layer: nothing to fill (K={kernel})")
    m2 = m_values(rates)[1]
    if m2 <= kernel:
        return RuleVerdict(True, f"M_2={m2} <= K={kernel}")
    return RuleVerdict(False, f"M_2={m2} > K={kernel}: layer 1 cannot fill gaps of {m2}")


@dataclass(frozen=True)
class HDCReport:
    rates: tuple[int, ...]  # effective rates judged
    kernel: int  # K used by rule 1
    m: tuple[int, ...]  # M_1 … M_n of the whole schedule
    groups: tuple[tuple[int, ...], ...]  # rising groups (rule 3's split)
    group_m: tuple[tuple[int, ...], ...]  # M recursion within each group
    group_gcd: tuple[int, ...]  # gcd of each group's rates
    rule1: RuleVerdict  # whole schedule
    rule1_groups: RuleVerdict  # every group on its own
    rule2: RuleVerdict
    rule3: RuleVerdict

    @property
    def passed(self) -> bool:
        """The paper's recipe: rules 1 (per group), 2 and 3 all hold."""
        return self.rule1_groups.passed and self.rule2.passed and self.rule3.passed


def hdc_report(rates: Sequence[int], kernel: int = 3) -> HDCReport:
    rates = tuple(int(r) for r in rates)
    spans = sawtooth_groups(rates)
    groups = tuple(rates[a:b] for a, b in spans)
    gcds = tuple(reduce(gcd, g) for g in groups)

    bad1 = [(i, g) for i, g in enumerate(groups) if not _rule1(g, kernel).passed]
    if bad1:
        i, g = bad1[0]
        rule1_groups = RuleVerdict(
            False, f"group {i + 1} {_fmt(g)}: {_rule1(g, kernel).reason}"
        )
    else:
        rule1_groups = RuleVerdict(True, f"every group has M_2 <= K={kernel}")

    bad2 = [(i, g, c) for i, (g, c) in enumerate(zip(groups, gcds, strict=True)) if c > 1]
    if bad2:
        i, g, c = bad2[0]
        rule2 = RuleVerdict(False, f"group {i + 1} {_fmt(g)} shares the factor {c}")
    else:
        rule2 = RuleVerdict(True, "no group shares a factor > 1")

    flat = [(i, g) for i, g in enumerate(groups) if len(g) < 2]
    if len(rates) < 2:
        rule3 = RuleVerdict(False, "one layer: no rising group")
    elif flat:
        where = ", ".join(f"{_fmt(g)} at layer {spans[i][0] + 1}" for i, g in flat)
        rule3 = RuleVerdict(False, f"rates do not rise in {where}")
    else:
        shape = ("one group" if len(groups) == 1
                 else "repeated" if len(set(groups)) == 1 else "not identical")
        rule3 = RuleVerdict(
            True, f"{len(groups)} rising group(s) {' '.join(map(_fmt, groups))}, {shape}"
        )

    return HDCReport(
        rates=rates,
        kernel=kernel,
        m=tuple(m_values(rates)),
        groups=groups,
        group_m=tuple(tuple(m_values(g)) for g in groups),
        group_gcd=gcds,
        rule1=_rule1(rates, kernel),
        rule1_groups=rule1_groups,
        rule2=rule2,
        rule3=rule3,
    )
