#!/usr/bin/env python
"""nas-dil benchmarks: each prints figures and ratios against a baseline measured in the same
run (these machines are noisy; absolute times alone mean little). One module per benchmark in
scripts/benchmarks/ (its docstring says what it measures).

    .venv/bin/python scripts/bench.py [NAME ...] [--quick] [--json]

No NAME runs them all; --quick: small sizes (each under about 2 minutes; `proxy` reads its
stored run, `gpu` says "skipped" without CUDA).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchmarks  # scripts/benchmarks, found through the line above


def _table() -> str:
    lines = ["benchmarks:"]
    for name in benchmarks.names():
        doc = (benchmarks.load(name).__doc__ or "").strip().split("\n\n")[0]
        lines.append(textwrap.fill(" ".join(doc.split()), 96, initial_indent=f"  {name:14s}",
                                   subsequent_indent=" " * 16))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    names = benchmarks.names()
    p = argparse.ArgumentParser(description=__doc__, epilog=_table(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="*", metavar="NAME",
                   help=f"benchmarks to run ({', '.join(names)}); default: all")
    p.add_argument("--quick", action="store_true", help="small sizes, < 2 minutes each")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    unknown = [n for n in args.which if n not in names]
    if unknown:  # checked here, not by argparse `choices` (which rejects an empty list)
        p.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(names)}")
    which = list(dict.fromkeys(args.which)) or names
    results: dict[str, object] = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    for name in which:
        mod = benchmarks.load(name)
        if not args.json:
            print(f"== {name}", flush=True)
        results[name] = r = mod.run(args.quick)
        if not args.json:
            mod.show(r)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
