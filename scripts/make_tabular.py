#!/usr/bin/env python
"""Train every candidate of a small finite space once per seed on the embedded synthetic data
and write the tabular dilation benchmark (`benchmarks/tabular_dilation.csv`).

No public NAS benchmark covers dilation schedules; this one makes sampler comparisons run in
seconds and repeat exactly: the search's "tabular" trial kind reads mIoU from the CSV
(`studies/tabular.toml`, space `search_spaces/tabular.toml`).

    .venv/bin/python scripts/make_tabular.py --workers 2 [--seeds 0 1] [--limit N] [--out F]

Space: depth 3–4, rates {1, 2, 4, 8} per layer (64 + 256 = 320 schedules), K = 3, one width,
one output stride; FLOPs vary with depth, RF and holes with the rates. Budget: `BUDGET` below
(quickstart-like: 48 px, 512 training images, 8 epochs, lr 0.01), written into the CSV's
leading `#` comment lines with the git commit of the code and data generator. Resumable: rows
already in the CSV are skipped, so an interrupted run continues where it stopped.

``--v2`` (issue 15) builds `benchmarks/tabular_v2.csv`: the space `search_spaces/tabular_v2.toml`
(depth 2–3, rates {1, 2, 3, 5}, width 8 or 16: 160 candidates, 4 GFLOPs levels; the usable
RF at the crop), every candidate trained with seeds 0, 1, 2 at `V2_BUDGET` (40 px, 64 steps).
Runs are appended to `benchmarks/tabular_v2_runs.csv` as they finish (resumable, seed-major);
the table (one row per candidate: every seed's mIoU and curve, their mean and std) is
rewritten from it at the end, holding only candidates with every seed.

    nice -n 10 .venv/bin/python scripts/make_tabular.py --v2 --workers 2
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

RATES = (1, 2, 4, 8)
DEPTHS = (3, 4)
KERNEL = 3
FIELDS = ["schedule", "depth", "kernel", "output_stride", "width", "rf", "rf_stack", "holes",
          "gridding_free", "hdc", "macs", "gflops", "params", "seed", "miou", "pixel_acc",
          "miou_curve", "train_time_s"]

# one budget for every row; recorded in the CSV header comment and docs/benchmarks.md
ARCH: dict[str, Any] = {"output_stride": 4, "stem_width": 8, "width": 16}
DATA: dict[str, Any] = {"source": "synthetic", "image_size": 48, "n_train": 512, "n_val": 64}
TRAIN: dict[str, Any] = {"epochs": 8, "batch_size": 16, "lr": 0.01, "threads": 1,
                         "device": "cpu"}
BUDGET: dict[str, dict[str, Any]] = {"arch": ARCH, "data": DATA, "train": TRAIN}


def schedules(rates: tuple[int, ...] = RATES,
              depths: tuple[int, ...] = DEPTHS) -> list[tuple[int, ...]]:
    return [r for d in depths for r in itertools.product(rates, repeat=d)]


def schedule_key(rates: tuple[int, ...] | list[int]) -> str:
    """The table's schedule column: rates joined by '-' (``1-2-4``)."""
    return "-".join(str(int(r)) for r in rates)


def train_row(rates: tuple[int, ...], seed: int, epochs: int | None = None,
              budget: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train one schedule at the table's budget (or ``budget``; ``epochs`` overrides the
    number of epochs) and return its CSV row."""
    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.schedule import Schedule
    from nas_dil.train import TrainConfig, TrialConfig, run_trial

    b = budget or BUDGET
    train = dict(b["train"]) | ({"epochs": epochs} if epochs is not None else {})
    cfg = TrialConfig(arch=ArchConfig(**b["arch"]), data=DataConfig(**b["data"]),
                      train=TrainConfig(**train))
    r = run_trial(cfg, Schedule(tuple(rates)), seed=seed).result
    return {
        "schedule": schedule_key(rates), "depth": len(rates), "kernel": KERNEL,
        "output_stride": b["arch"]["output_stride"], "width": b["arch"]["width"], "rf": r.rf,
        "rf_nominal": r.rf_nominal, "dead_taps": r.dead_taps,
        "rf_stack": r.rf_stack, "holes": r.holes, "gridding_free": r.gridding_free,
        "hdc": r.hdc, "macs": r.macs, "gflops": r.flops / 1e9, "params": r.params,
        "seed": seed, "miou": round(r.miou, 6), "pixel_acc": round(r.pixel_acc, 6),
        "miou_curve": " ".join(f"{m:.4f}" for m in r.miou_curve),
        "train_time_s": round(r.train_time_s, 2),
    }


def write_as_done(futures: list[Any], w: csv.DictWriter, f: Any, what: str,
                  t0: float) -> None:
    """Write each finished row as it comes (flushed: an interrupted build resumes from the
    file), with a progress line every 10."""
    for i, fut in enumerate(as_completed(futures), 1):
        w.writerow(fut.result())
        f.flush()
        if i % 10 == 0 or i == len(futures):
            el = time.perf_counter() - t0
            print(f"{i}/{len(futures)} {what}, {el:.0f} s, "
                  f"eta {el / i * (len(futures) - i):.0f} s", file=sys.stderr)


def provenance() -> str:
    """Git commit (and whether the tree was dirty) of the code that made the table."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "nas_dil"], cwd=repo,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (+ uncommitted changes under nas_dil/)" if dirty else "")


def read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows, skipping its leading ``#`` comment lines."""
    with path.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


# -- v2 (issue 15): a space where FLOPs vary, the usable RF, several seeds per row -----------

V2_SPACE = "search_spaces/tabular_v2.toml"
V2_SEEDS = (0, 1, 2)
# one budget for every run of v2 (the candidate sets width and output stride); sized so the
# 480 runs fit ~50 min on 2 shared cores at nice 10 (timed first: docs/benchmarks.md §13)
V2_BUDGET: dict[str, dict[str, Any]] = {
    "arch": {"stem_width": 8},
    "data": {"source": "synthetic", "image_size": 40, "n_train": 512, "n_val": 64},
    # 64 steps = 2 epochs of 512 images; 4 evaluations (the curve)
    "train": {"epochs": None, "steps": 64, "eval_every_steps": 16, "batch_size": 16,
              "lr": 0.01, "threads": 1, "device": "cpu"},
}
# the runs file: one row per (candidate, seed), appended as runs finish (resumable)
RUN_FIELDS = ["schedule", "depth", "kernel", "output_stride", "width", "rf", "rf_nominal",
              "dead_taps", "rf_stack", "holes", "gridding_free", "hdc", "macs", "gflops",
              "params", "seed", "miou", "pixel_acc", "miou_curve", "train_time_s"]
# the table: one row per candidate; the analytic columns, then every seed's mIoU and curve
CAND_FIELDS = RUN_FIELDS[:RUN_FIELDS.index("seed")]


def v2_candidates(space_path: Path) -> list[tuple[tuple[int, ...], int, int]]:
    """(rates, width, output stride) of every candidate of the v2 space (K 3)."""
    from nas_dil.spaces import load_space

    return [(tuple(c.rates), c.width, c.output_stride)
            for c in load_space(space_path).enumerate()]


def v2_budget(width: int, output_stride: int) -> dict[str, dict[str, Any]]:
    return V2_BUDGET | {"arch": V2_BUDGET["arch"] | {"width": width,
                                                     "output_stride": output_stride}}


def v2_train(job: tuple[tuple[int, ...], int, int, int]) -> dict[str, Any]:
    rates, width, os_, seed = job
    return train_row(rates, seed, budget=v2_budget(width, os_))


def run_key(row: Mapping[str, Any]) -> tuple[str, int, int, int]:
    return (str(row["schedule"]), int(row["width"]), int(row["output_stride"]),
            int(row["seed"]))


def assemble(runs: list[dict[str, str]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One table row per candidate that has a run of every seed in ``seeds``: its analytic
    columns, ``miou`` = the seed mean, ``miou_std`` (population std over the seeds), and
    ``miou_s<k>``, ``miou_curve_s<k>``, ``pixel_acc_s<k>`` per seed."""
    by: dict[tuple[str, int, int], dict[int, dict[str, str]]] = {}
    for r in runs:
        k = run_key(r)
        by.setdefault(k[:3], {})[k[3]] = r
    out = []
    for _key, per in sorted(by.items(), key=lambda kv: (float(next(iter(kv[1].values()))
                                                              ["gflops"]), kv[0])):
        if not all(s in per for s in seeds):
            continue
        first = per[seeds[0]]
        m = [float(per[s]["miou"]) for s in seeds]
        row: dict[str, Any] = {f: first[f] for f in CAND_FIELDS}
        row |= {"seeds": " ".join(map(str, seeds)), "miou": round(float(np.mean(m)), 6),
                "miou_std": round(float(np.std(m)), 6)}
        for s in seeds:
            row |= {f"miou_s{s}": per[s]["miou"], f"pixel_acc_s{s}": per[s]["pixel_acc"],
                    f"miou_curve_s{s}": per[s]["miou_curve"]}
        row["train_time_s"] = round(float(np.mean([float(per[s]["train_time_s"])
                                                   for s in seeds])), 2)
        out.append(row)
    return out


def table_fields(seeds: Sequence[int]) -> list[str]:
    return (CAND_FIELDS + ["seeds", "miou", "miou_std"]
            + [f"{c}_s{s}" for s in seeds for c in ("miou", "pixel_acc", "miou_curve")]
            + ["train_time_s"])


def header(kind: str, budget: Mapping[str, Any], extra: Sequence[str] = ()) -> str:
    import torch

    lines = [f"nas-dil {kind}; made {time.strftime('%Y-%m-%d')} by scripts/make_tabular.py "
             f"at git {provenance()}, torch {torch.__version__}, numpy {np.__version__}",
             f"budget: {dict(budget)}", *extra]
    return "".join(f"# {ln}\n" for ln in lines)


def write_table(out: Path, runs_path: Path, seeds: Sequence[int],
                extra: Sequence[str] = ()) -> int:
    """(Re)write the wide table from the runs file; returns its row count."""
    rows = assemble(read_rows(runs_path), seeds)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        f.write(header("tabular dilation benchmark v2 (issue 15): one row per candidate, "
                       f"seeds {' '.join(map(str, seeds))}, miou = their mean", V2_BUDGET,
                       extra))
        w = csv.DictWriter(f, fieldnames=table_fields(seeds))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out)  # never a half-written table
    return len(rows)


def main_v2(args: argparse.Namespace) -> int:
    repo = Path(__file__).resolve().parents[1]
    out = Path(args.out or repo / "benchmarks" / "tabular_v2.csv")
    runs_path = out.with_name(out.stem + "_runs.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    seeds = tuple(args.seeds) if args.seeds is not None else V2_SEEDS
    cands = v2_candidates(repo / V2_SPACE)
    done: set[tuple[str, int, int, int]] = set()
    if runs_path.exists() and runs_path.stat().st_size > 0:
        done = {run_key(r) for r in read_rows(runs_path)}
    # seed-major: an interrupted build has whole seeds first, then a partial one
    todo = [(r, w, o, s) for s in seeds for r, w, o in cands
            if (schedule_key(r), w, o, s) not in done]
    if args.limit is not None:
        todo = todo[: args.limit]
    print(f"{len(cands)} candidates × seeds {list(seeds)}: {len(done)} runs present, "
          f"{len(todo)} to train", file=sys.stderr)
    new_file = not runs_path.exists() or runs_path.stat().st_size == 0
    t0 = time.perf_counter()
    with runs_path.open("a", newline="") as f, ProcessPoolExecutor(args.workers) as pool:
        w = csv.DictWriter(f, fieldnames=RUN_FIELDS)
        if new_file:
            f.write(header("tabular dilation benchmark v2, runs (one per candidate and seed)",
                           V2_BUDGET))
            w.writeheader()
        write_as_done([pool.submit(v2_train, j) for j in todo], w, f, "runs", t0)
    wall = time.perf_counter() - t0
    extra = [f"this invocation: {len(todo)} runs in {wall:.0f} s wall, {args.workers} "
             f"workers, load average at the end {os.getloadavg()[0]:.1f}"] if todo else []
    n = write_table(out, runs_path, seeds, extra + list(args.note or []))
    print(f"{out}: {n} rows ({len(cands)} candidates)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--v2", action="store_true",
                   help="the v2 table (issue 15): search_spaces/tabular_v2.toml, seeds 0 1 2, "
                        "runs in <out stem>_runs.csv, one row per candidate in --out")
    p.add_argument("--out", default=None,
                   help="default benchmarks/tabular_dilation.csv (v2: benchmarks/tabular_v2.csv)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 (v2: 0 1 2)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
    p.add_argument("--limit", type=int, default=None, help="train at most N new rows")
    p.add_argument("--only", default=None,
                   help="comma-separated schedules (1-2-4,8-8-8) to train, for budget checks")
    p.add_argument("--note", action="append",
                   help="v2: a line for the table's # header (the budget of the build)")
    args = p.parse_args(argv)
    if args.v2:
        return main_v2(args)
    out = Path(args.out or "benchmarks/tabular_dilation.csv")
    seeds = args.seeds if args.seeds is not None else [0]
    out.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, int]] = set()
    if out.exists() and out.stat().st_size > 0:
        done = {(row["schedule"], int(row["seed"])) for row in read_rows(out)}
    space = schedules()
    if args.only:
        space = [tuple(int(x) for x in s.split("-")) for s in args.only.split(",")]
    todo = [(r, s) for s in seeds for r in space if (schedule_key(r), s) not in done]
    if args.limit is not None:
        todo = todo[: args.limit]
    print(f"{len(done)} rows present, {len(todo)} to train", file=sys.stderr)
    new_file = not out.exists() or out.stat().st_size == 0
    t0 = time.perf_counter()
    with out.open("a", newline="") as f, ProcessPoolExecutor(args.workers) as pool:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if new_file:
            f.write(f"# nas-dil tabular dilation benchmark; made {time.strftime('%Y-%m-%d')} "
                    f"by scripts/make_tabular.py at git {provenance()}\n")
            f.write(f"# budget: {BUDGET}\n")
            w.writeheader()
        write_as_done([pool.submit(train_row, r, s) for r, s in todo], w, f, "rows", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
