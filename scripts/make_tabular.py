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
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

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


def schedules() -> list[tuple[int, ...]]:
    return [r for d in DEPTHS for r in itertools.product(RATES, repeat=d)]


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
    r = run_trial(cfg, Schedule(tuple(rates)), seed=seed)
    return {
        "schedule": schedule_key(rates), "depth": len(rates), "kernel": KERNEL,
        "output_stride": b["arch"]["output_stride"], "width": b["arch"]["width"], "rf": r.rf,
        "rf_stack": r.rf_stack, "holes": r.holes, "gridding_free": r.gridding_free,
        "hdc": r.hdc, "macs": r.macs, "gflops": r.flops / 1e9, "params": r.params,
        "seed": seed, "miou": round(r.miou, 6), "pixel_acc": round(r.pixel_acc, 6),
        "miou_curve": " ".join(f"{m:.4f}" for m in r.miou_curve),
        "train_time_s": round(r.train_time_s, 2),
    }


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", default="benchmarks/tabular_dilation.csv")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
    p.add_argument("--limit", type=int, default=None, help="train at most N new rows")
    p.add_argument("--only", default=None,
                   help="comma-separated schedules (1-2-4,8-8-8) to train, for budget checks")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, int]] = set()
    if out.exists() and out.stat().st_size > 0:
        done = {(row["schedule"], int(row["seed"])) for row in read_rows(out)}
    space = schedules()
    if args.only:
        space = [tuple(int(x) for x in s.split("-")) for s in args.only.split(",")]
    todo = [(r, s) for s in args.seeds for r in space if (schedule_key(r), s) not in done]
    if args.limit is not None:
        todo = todo[: args.limit]
    print(f"{len(done)} rows present, {len(todo)} to train", file=sys.stderr)
    new_file = not out.exists() or out.stat().st_size == 0
    t0 = time.perf_counter()
    with out.open("a", newline="") as f, ProcessPoolExecutor(args.workers) as pool:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            f.write(f"# nas-dil tabular dilation benchmark; made {time.strftime('%Y-%m-%d')} "
                    f"by scripts/make_tabular.py at git {provenance()}\n")
            f.write(f"# budget: {BUDGET}\n")
            w.writeheader()
        futures = [pool.submit(train_row, r, s) for r, s in todo]
        for i, fut in enumerate(as_completed(futures), 1):
            w.writerow(fut.result())
            f.flush()  # resumable: every finished row is on disk
            if i % 10 == 0 or i == len(futures):
                el = time.perf_counter() - t0
                print(f"{i}/{len(futures)} rows, {el:.0f} s, "
                      f"eta {el / i * (len(futures) - i):.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
