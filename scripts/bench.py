#!/usr/bin/env python
"""nas-dil benchmarks: each prints figures and ratios against a baseline measured in the same
run (these machines are noisy; absolute times alone mean little).

    .venv/bin/python scripts/bench.py scoring [--quick] [--json]

Benchmarks:
  scoring  analytic scoring (RF, M_i, rule 1, exact holes, coverage) of 6-layer schedules:
           vectorised `score_batch` vs a plain per-schedule Python loop over the scalar
           functions. Target >= 1 M schedules/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_scoring(quick: bool) -> dict[str, Any]:
    from nas_dil.schedule import Schedule, coverage, m_values, score_batch

    rng = np.random.default_rng(0)
    n_vec = 200_000 if quick else 1_000_000
    n_loop = 2_000 if quick else 20_000
    repeats = 3 if quick else 5
    cases = {
        # a search space's typical rate set: many orderings of the same multisets
        "rates 1-16": rng.integers(1, 17, size=(n_vec, 6)),
        # worst case for the dedupe: almost every row is a new multiset
        "rates 1-64": rng.integers(1, 65, size=(n_vec, 6)),
    }

    def loop(rows: np.ndarray) -> None:
        for row in rows.tolist():
            s = Schedule(tuple(row))
            cov = coverage(s)
            m = m_values(row)
            _ = (cov.rf, cov.holes, cov.coverage, m[1] <= 3)

    out: dict[str, Any] = {"layers": 6, "kernel": 3, "cases": {}}
    for name, rates in cases.items():
        score_batch(rates[:1000])  # warm caches and page in numpy's kernels
        t_vec = _best_of(lambda r=rates: score_batch(r), repeats)
        t_loop = _best_of(lambda r=rates: loop(r[:n_loop]), 1)
        vec_rate = len(rates) / t_vec
        loop_rate = n_loop / t_loop
        out["cases"][name] = {
            "vectorised_per_s": round(vec_rate),
            "loop_per_s": round(loop_rate),
            "speedup": round(vec_rate / loop_rate, 1),
            "target_met": vec_rate >= 1e6,
            "batch": len(rates),
        }
    return out


BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {"scoring": bench_scoring}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("which", nargs="*", default=list(BENCHMARKS), choices=[[], *BENCHMARKS])
    p.add_argument("--quick", action="store_true", help="small sizes, < 2 minutes in all")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    for name in args.which or list(BENCHMARKS):
        results[name] = BENCHMARKS[name](args.quick)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        for name in args.which or list(BENCHMARKS):
            print(f"== {name}")
            for case, r in results[name].get("cases", {}).items():
                print(f"  {case:12s} vectorised {r['vectorised_per_s']:>12,}/s  "
                      f"loop {r['loop_per_s']:>9,}/s  speedup {r['speedup']:>7}x  "
                      f"target>=1M/s {'met' if r['target_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
