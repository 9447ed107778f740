#!/usr/bin/env python
"""The synthetic data's signal, measured with the real trainer (`run_trial`), not a stand-in:
mean ± std mIoU over seeds for a too-small-RF, a gridded and a hole-free schedule of the same
depth and width (the last two of the same RF).

    .venv/bin/python scripts/check_signal.py [--seeds 0 1 2] [--epochs 8] [--lr 3e-3]
"""

from __future__ import annotations

import argparse
import statistics
import sys

SCHEDULES = {"[1,1,1] RF too small": "1,1,1", "[2,2,4] gridded": "2,2,4",
             "[1,2,5] hole-free": "1,2,5"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args()
    import torch

    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig, run_trial

    torch.set_num_threads(2)
    rows = {}
    for label, sched in SCHEDULES.items():
        mious = []
        for seed in args.seeds:  # the seed changes the data and the training
            cfg = TrialConfig(
                arch=ArchConfig(output_stride=4, stem_width=16, width=32),
                data=DataConfig(image_size=64, n_train=512, n_val=512, seed=seed),
                train=TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, device="cpu"),
            )
            mious.append(run_trial(cfg, sched, seed=seed).result.miou)
        rows[label] = mious
        print(f"| {label} | {statistics.mean(mious):.3f} ± {statistics.stdev(mious):.3f} | "
              + " ".join(f"{m:.3f}" for m in mious) + " |", flush=True)
    best = rows["[1,2,5] hole-free"]
    for label, mious in rows.items():
        if mious is best:
            continue
        d = [b - m for b, m in zip(best, mious, strict=True)]
        print(f"[1,2,5] − {label}: paired difference {statistics.mean(d):+.3f} ± "
              f"{statistics.stdev(d):.3f}, wins {sum(x > 0 for x in d)}/{len(d)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
