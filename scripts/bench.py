#!/usr/bin/env python
"""nas-dil benchmarks: each prints figures and ratios against a baseline measured in the same
run (these machines are noisy; absolute times alone mean little).

    .venv/bin/python scripts/bench.py scoring [--quick] [--json]

Benchmarks:
  scoring  analytic scoring (RF, M_i, rule 1, exact holes, coverage) of 6-layer schedules:
           vectorised `score_batch` vs a plain per-schedule Python loop over the scalar
           functions. Target >= 1 M schedules/s.
  trial    training throughput (images/s) inside `run_trial` vs a plain hand-written PyTorch
           loop over the same net, data and steps, interleaved rounds, best of each.
           Target >= 0.97x.
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


def bench_trial(quick: bool) -> dict[str, Any]:
    import torch
    from torch.nn import functional as F

    from nas_dil.data import DataConfig, load_data
    from nas_dil.models import ArchConfig, build_model
    from nas_dil.train import TrainConfig, TrialConfig, resolve_device, run_trial

    device = resolve_device("auto")
    size = 64
    steps = 20 if quick else 60
    rounds = 2 if quick else 4
    data_cfg = DataConfig(image_size=size, n_train=16 * steps, n_val=16)
    data = load_data(data_cfg, device)
    arch = ArchConfig(output_stride=4, width=32, num_classes=data.num_classes)
    schedule = "1,2,5,1,2,5"
    cfg = TrialConfig(arch=arch, data=data_cfg,
                      train=TrainConfig(epochs=1, batch_size=16, device=str(device)))
    is_cuda = device.type == "cuda"

    def plain() -> float:
        """What a user would write by hand: the same net, optimiser, batches and steps."""
        torch.manual_seed(0)
        model = build_model(schedule, arch=arch).to(device)
        if is_cuda:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        model.train()
        n = 0
        t0 = time.perf_counter()
        for images, masks in data.train_batches(16, 0, 0):
            if is_cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=is_cuda):
                loss = F.cross_entropy(model(images).float(), masks, ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += images.shape[0]
        if is_cuda:
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t0)

    def trial() -> float:
        return run_trial(cfg, schedule, seed=0, data=data).images_per_s

    plain()  # warm-up: allocator, oneDNN/cuDNN kernel choice
    trial()
    p_rates, t_rates = [], []
    for _ in range(rounds):  # interleaved, so drifts in machine load hit both alike
        p_rates.append(plain())
        t_rates.append(trial())
    ratio = max(t_rates) / max(p_rates)
    return {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "image_size": size,
        "batch": 16,
        "steps": steps,
        "schedule": schedule,
        "plain_images_per_s": round(max(p_rates), 1),
        "trial_images_per_s": round(max(t_rates), 1),
        "ratio": round(ratio, 3),
        "target_met": ratio >= 0.97,
        "rounds": {"plain": [round(x, 1) for x in p_rates],
                   "trial": [round(x, 1) for x in t_rates]},
    }


BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "scoring": bench_scoring,
    "trial": bench_trial,
}


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
            if name == "trial":
                r = results[name]
                print(f"  {r['device']}: trial {r['trial_images_per_s']} img/s vs plain loop "
                      f"{r['plain_images_per_s']} img/s = {r['ratio']}x "
                      f"(target >= 0.97x {'met' if r['target_met'] else 'NOT met'})")
            for case, r in results[name].get("cases", {}).items():
                print(f"  {case:12s} vectorised {r['vectorised_per_s']:>12,}/s  "
                      f"loop {r['loop_per_s']:>9,}/s  speedup {r['speedup']:>7}x  "
                      f"target>=1M/s {'met' if r['target_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
