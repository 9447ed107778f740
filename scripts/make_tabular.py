#!/usr/bin/env python
"""Train every candidate of a small finite space once per seed on the embedded synthetic data
and write the tabular dilation benchmark (`benchmarks/tabular_dilation.csv`).

No public NAS benchmark covers dilation schedules; this one makes sampler comparisons run in
seconds and repeat exactly: the search's "tabular" trial kind reads mIoU from the CSV.

    .venv/bin/python scripts/make_tabular.py --workers 2 [--seeds 0 1] [--limit N]

Space: depth 3–4, rates {1, 2, 4, 8} per layer (64 + 256 = 320 schedules), K = 3, one width,
one output stride; FLOPs vary with depth, RF and holes with the rates. Resumable: rows already
in the CSV are skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

RATES = (1, 2, 4, 8)
DEPTHS = (3, 4)
FIELDS = ["schedule", "depth", "kernel", "output_stride", "width", "rf", "rf_stack", "holes",
          "gridding_free", "hdc", "macs", "gflops", "params", "seed", "miou", "pixel_acc",
          "miou_curve", "train_time_s"]

# one budget for every row; recorded in the CSV header comment and docs/benchmarks.md
ARCH = {"output_stride": 4, "stem_width": 16, "width": 16}
DATA = {"image_size": 48, "n_train": 256, "n_val": 64}
TRAIN = {"epochs": 4, "batch_size": 16, "lr": 3e-3, "threads": 1, "device": "cpu"}


def schedules() -> list[tuple[int, ...]]:
    return [r for d in DEPTHS for r in itertools.product(RATES, repeat=d)]


def _train(rates: tuple[int, ...], seed: int) -> dict[str, object]:
    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.schedule import Schedule
    from nas_dil.train import TrainConfig, TrialConfig, run_trial

    cfg = TrialConfig(arch=ArchConfig(**ARCH), data=DataConfig(**DATA),
                      train=TrainConfig(**TRAIN))
    r = run_trial(cfg, Schedule(rates), seed=seed)
    return {
        "schedule": "-".join(map(str, rates)), "depth": len(rates), "kernel": 3,
        "output_stride": ARCH["output_stride"], "width": ARCH["width"], "rf": r.rf,
        "rf_stack": r.rf_stack, "holes": r.holes, "gridding_free": r.gridding_free,
        "hdc": r.hdc, "macs": r.macs, "gflops": r.flops / 1e9, "params": r.params,
        "seed": seed, "miou": round(r.miou, 6), "pixel_acc": round(r.pixel_acc, 6),
        "miou_curve": " ".join(f"{m:.4f}" for m in r.miou_curve),
        "train_time_s": round(r.train_time_s, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/tabular_dilation.csv")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
    p.add_argument("--limit", type=int, default=None, help="train at most N new rows")
    args = p.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, int]] = set()
    if out.exists():
        with out.open() as f:
            done = {(row["schedule"], int(row["seed"])) for row in csv.DictReader(f)}
    todo = [(r, s) for s in args.seeds for r in schedules()
            if ("-".join(map(str, r)), s) not in done]
    if args.limit is not None:
        todo = todo[: args.limit]
    print(f"{len(done)} rows present, {len(todo)} to train", file=sys.stderr)
    new_file = not out.exists() or out.stat().st_size == 0
    t0 = time.perf_counter()
    with out.open("a", newline="") as f, ProcessPoolExecutor(args.workers) as pool:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            w.writeheader()
        futures = [pool.submit(_train, r, s) for r, s in todo]
        for i, fut in enumerate(as_completed(futures), 1):
            w.writerow(fut.result())
            f.flush()  # resumable: every finished row is on disk
            if i % 10 == 0 or i == len(futures):
                el = time.perf_counter() - t0
                print(f"{i}/{len(futures)} rows, {el:.0f} s, eta {el / i * (len(futures) - i):.0f} s",
                      file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
