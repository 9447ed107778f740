"""Check that the synthetic data rewards receptive field and punishes gridding, at a study's
own training settings, with the trainer the search uses (`nas_dil.train.run_trial`).

Three schedules of the same depth, width and FLOPs are trained over several seeds and at
several multiples of the study's learning rate:

- good: hole-free, with enough receptive field (RF);
- small_rf: hole-free, too little RF;
- gridded: the same RF as good, with holes.

Each seed is a training seed (init, batch order) on the study's own data set, as in a search;
with --vary-data it is also the data seed (`DataConfig.seed`).
For each (kind, lr) the table gives mean ± std val mIoU; the gap is good − kind, and the
verdict is "holds" when the gap exceeds twice the larger of the two stds.

    nice -n 10 .venv/bin/python scripts/calibrate_synthetic.py --study studies/quickstart.toml \
        --seeds 0,1,2 --lr-scales 0.5,1,2 --jobs 2 --json calibration.json

docs/synthetic_data.md records the result and what it shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("good", "small_rf", "gridded")  # the gap is good - each of the others


@dataclass(frozen=True)
class Job:
    kind: str  # good | small_rf | gridded
    rates: tuple[int, ...]
    lr_scale: float  # multiple of the study's lr
    seed: int  # training seed (init, batch order); also the data seed with --vary-data
    vary_data: bool
    trial: dict[str, Any]  # TrialConfig.to_dict() at scale 1 and data seed 0


def trial_config(study: Path, output_stride: int, width: int, threads: int) -> dict[str, Any]:
    """The study's [arch], [data] and [train] tables as a TrialConfig dict (the candidate sets
    output_stride and width, as in a search)."""
    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig

    t = tomllib.loads(study.read_text())
    arch = ArchConfig(**{**t.get("arch", {}), "output_stride": output_stride, "width": width})
    train = {**t.get("train", {}), "threads": threads, "device": "cpu"}
    return TrialConfig(arch, DataConfig(**t.get("data", {})), TrainConfig(**train)).to_dict()


def dead_rates(rates: tuple[int, ...], crop: int, output_stride: int, k: int = 3) -> list[int]:
    """Rates whose every off-centre tap reads only padding on the crop's feature map (side
    crop // output_stride): the nearest off-centre tap, at offset r, lands inside only when
    r < side."""
    side = crop // output_stride
    return sorted({r for r in rates if k > 1 and r >= side})


def analytic_flops(trial: dict[str, Any], rates: tuple[int, ...]) -> int:
    """FLOPs per image at the study's crop, as the trial will record them."""
    from nas_dil.models import ArchConfig
    from nas_dil.schedule import net_cost

    size = trial["data"]["image_size"]
    arch = ArchConfig.from_dict({**trial["arch"], "num_classes": 4})  # the synthetic classes
    return net_cost(size, size, rates, kernel=3, **arch.cost_kwargs()).flops


def run_job(job: Job) -> dict[str, Any]:
    from nas_dil.train import TrialConfig, run_trial

    d = job.trial
    data_seed = job.seed if job.vary_data else d["data"]["seed"]
    d = {**d, "data": {**d["data"], "seed": data_seed},
         "train": {**d["train"], "lr": d["train"]["lr"] * job.lr_scale}}
    cfg = TrialConfig.from_dict(d)
    res = run_trial(cfg, ",".join(map(str, job.rates)), seed=job.seed).result
    return {"kind": job.kind, "rates": list(job.rates), "lr_scale": job.lr_scale,
            "lr": cfg.train.lr, "seed": job.seed, "data_seed": data_seed, "miou": res.miou,
            "per_class_iou": res.per_class_iou, "flops": res.flops, "rf": res.rf,
            "holes": res.holes, "wall_time_s": res.wall_time_s}


def summarise(results: list[dict[str, Any]], scales: list[float]) -> list[dict[str, Any]]:
    """One row per (lr scale, kind): mean, std, per seed, and the gap to good with verdict."""
    rows = []
    for s in scales:
        by = {k: sorted((r for r in results if r["kind"] == k and r["lr_scale"] == s),
                        key=lambda r: r["seed"]) for k in KINDS}
        good = [r["miou"] for r in by["good"]]
        for k in KINDS:
            m = [r["miou"] for r in by[k]]
            row: dict[str, Any] = {"lr_scale": s, "lr": by[k][0]["lr"], "kind": k,
                                   "rates": by[k][0]["rates"], "rf": by[k][0]["rf"],
                                   "mean": statistics.mean(m), "std": statistics.stdev(m),
                                   "per_seed": m}
            if k != "good":
                bar = 2 * max(row["std"], statistics.stdev(good))
                gap = statistics.mean(good) - row["mean"]
                paired = [g - x for g, x in zip(good, m, strict=True)]
                row.update(gap=gap, bar=bar, holds=gap > bar,
                           wins=sum(p > 0 for p in paired), paired=statistics.mean(paired))
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| lr | kind | schedule | RF px | mIoU mean ± std | per seed | gap to good | "
             "2 × larger std | holds | good wins |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        seeds = " ".join(f"{v:.3f}" for v in r["per_seed"])
        tail = ("| | | | |" if r["kind"] == "good" else
                f"| {r['gap']:+.3f} | {r['bar']:.3f} | {'**yes**' if r['holds'] else 'no'} | "
                f"{r['wins']}/{len(r['per_seed'])} |")
        lines.append(f"| {r['lr']:g} ({r['lr_scale']:g}×) | {r['kind']} | "
                     f"[{', '.join(map(str, r['rates']))}] | {r['rf']} | "
                     f"{r['mean']:.3f} ± {r['std']:.3f} | {seeds} " + tail)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="studies/quickstart.toml",
                    help="study file whose [arch], [data] and [train] are used")
    ap.add_argument("--good", default="1,3,5", help="hole-free schedule with enough RF")
    ap.add_argument("--small-rf", default="1,1,1", help="hole-free schedule, too little RF")
    ap.add_argument("--gridded", default="3,3,3", help="schedule with holes, good's RF")
    ap.add_argument("--output-stride", type=int, default=4)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lr-scales", default="0.5,1,2", help="multiples of the study's lr")
    ap.add_argument("--vary-data", action="store_true",
                    help="each seed also draws its own data set (default: the study's data, as "
                         "in a search, where only the training seed changes)")
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once (one thread each)")
    ap.add_argument("--json", default="", help="write every result and the summary here")
    args = ap.parse_args()

    def parse(s: str) -> tuple[int, ...]:
        return tuple(int(r) for r in s.split(","))

    scheds = {"good": parse(args.good), "small_rf": parse(args.small_rf),
              "gridded": parse(args.gridded)}
    seeds = [int(s) for s in args.seeds.split(",")]
    scales = [float(s) for s in args.lr_scales.split(",")]
    if len(seeds) < 2:
        print(f"calibrate: need >= 2 seeds for a spread, got {seeds=}", file=sys.stderr)
        return 2
    if len({len(r) for r in scheds.values()}) != 1:
        print(f"calibrate: the schedules must have the same depth, got {scheds}", file=sys.stderr)
        return 2
    tc = trial_config(Path(args.study), args.output_stride, args.width, threads=1)
    crop = tc["data"]["image_size"]
    for k, rates in scheds.items():
        dead = dead_rates(rates, crop, args.output_stride)
        if dead:
            print(f"calibrate: {k} {list(rates)} has dead taps at a {crop}-px crop, output "
                  f"stride {args.output_stride}: rates {dead}", file=sys.stderr)
            return 2
    flops = {k: analytic_flops(tc, rates) for k, rates in scheds.items()}
    if len(set(flops.values())) != 1:
        print(f"calibrate: the schedules must have the same FLOPs, got {flops}", file=sys.stderr)
        return 2
    jobs = [Job(k, scheds[k], s, seed, args.vary_data, tc)
            for s in scales for seed in seeds for k in KINDS]
    t0 = time.time()
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(run_job, jobs):
            results.append(r)
            print(f"{r['kind']:8s} {r['rates']} lr×{r['lr_scale']:g} seed {r['seed']}: "
                  f"mIoU {r['miou']:.4f} ({r['wall_time_s']:.0f} s)", flush=True)
    rows = summarise(results, scales)
    print(f"\n{len(jobs)} trainings in {time.time() - t0:.0f} s wall; study {args.study}, "
          f"output stride {args.output_stride}, width {args.width}, seeds {seeds}\n")
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "trial_config": tc, "results": results, "summary": rows},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
