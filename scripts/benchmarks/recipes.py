"""Recipes: does the short-trial ranking of candidates transfer between training recipes?
Ten candidates (`val_subset`'s schedules and widths) are trained on the synthetic data under
AdamW + cosine (the default) and SGD (momentum 0.9) + poly 0.9 at DeepLab's lr 0.01 and at
0.05, a few seeds each; the rankings by seed-mean mIoU are compared by Kendall tau-b (and
top-1 / top-3 agreement); single-seed rankings across recipes (AdamW seed i against SGD seed
j, i != j) are set against the same recipe's own seed-to-seed agreement (the noise floor: one
AdamW seed's ranking against another's), which they can at best reach.

Two processes, one torch thread each (the machines are shared).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from benchmarks.val_subset import CANDIDATES, kendall_tau_b, top_k

# recipe name -> TrainConfig fields besides the budget (the SGD ones: DeepLab's / mmseg's)
RECIPES: dict[str, dict[str, Any]] = {
    "adamw_cosine": {},
    "sgd_poly": {"optimizer": "sgd", "momentum": 0.9, "lr_schedule": "poly", "lr": 0.01,
                 "weight_decay": 5e-4},
    "sgd_poly_lr0.05": {"optimizer": "sgd", "momentum": 0.9, "lr_schedule": "poly",
                        "lr": 0.05, "weight_decay": 5e-4},
}
REFERENCE = "adamw_cosine"


@dataclass(frozen=True)
class Plan:
    side: int  # px, synthetic image side (= training crop)
    n_train: int
    n_val: int
    steps: int  # optimiser steps per trial (batch 16): a short trial
    candidates: int  # the first this many of CANDIDATES
    seeds: int  # training seeds per (candidate, recipe)
    processes: int


FULL = Plan(side=32, n_train=512, n_val=128, steps=160, candidates=10, seeds=3, processes=2)
QUICK = Plan(side=16, n_train=16, n_val=8, steps=2, candidates=3, seeds=2, processes=1)

_DATA: dict[tuple[int, int, int], Any] = {}


def _one(job: tuple[Plan, str, str, int, int]) -> float:
    """mIoU of one short trial (candidate rates/width, recipe, seed), on one torch thread."""
    import torch

    from nas_dil.data import DataConfig, load_data
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig, run_trial

    plan, recipe, rates, width, seed = job
    torch.set_num_threads(1)
    dc = DataConfig(image_size=plan.side, n_train=plan.n_train, n_val=plan.n_val)
    key = (plan.side, plan.n_train, plan.n_val)
    if key not in _DATA:
        _DATA[key] = load_data(dc)
    tc = TrainConfig(epochs=None, steps=plan.steps, eval_every_steps=plan.steps, batch_size=16,
                     threads=1, device="cpu", **RECIPES[recipe])
    cfg = TrialConfig(ArchConfig(output_stride=4, stem_width=8, width=width), dc, tc)
    return run_trial(cfg, rates, seed=seed, data=_DATA[key]).result.miou


def _agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"tau": kendall_tau_b(a, b), "top1": float(top_k(a, 1) == top_k(b, 1)),
            "top3": len(top_k(a, 3) & top_k(b, 3)) / 3}


def run(quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    cands = CANDIDATES[:plan.candidates]
    jobs = [(plan, r, rates, width, s) for r in RECIPES for _, rates, width in cands
            for s in range(plan.seeds)]
    if plan.processes > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(plan.processes) as pool:
            mious = list(pool.map(_one, jobs))
    else:
        mious = [_one(j) for j in jobs]
    m = np.array(mious).reshape(len(RECIPES), len(cands), plan.seeds)
    mean = m.mean(axis=2)
    names = list(RECIPES)
    ref = names.index(REFERENCE)
    pairs = list(combinations(range(plan.seeds), 2))
    across = {r: {**_agreement(mean[ref], mean[k]), "single_seed_tau": float(np.mean(
        [kendall_tau_b(m[ref, :, i], m[k, :, j]) for i, j in pairs]
        + [kendall_tau_b(m[ref, :, j], m[k, :, i]) for i, j in pairs])) if pairs
        else float("nan")} for k, r in enumerate(names) if k != ref}
    # noise floor: each recipe's single-seed rankings against each other
    floor = {r: [kendall_tau_b(m[k, :, i], m[k, :, j]) for i, j in pairs]
             for k, r in enumerate(names)}
    return {
        "plan": plan.__dict__, "candidates": [f"{r}@w{w}" for _, r, w in cands],
        "recipes": RECIPES, "miou_mean": {r: mean[i].round(4).tolist()
                                          for i, r in enumerate(names)},
        "miou": {r: m[i].round(4).tolist() for i, r in enumerate(names)},
        "miou_of_recipe": {r: float(mean[i].mean()) for i, r in enumerate(names)},
        "vs_reference": across,
        "seed_to_seed_tau": {r: float(np.mean(v)) if v else float("nan")
                             for r, v in floor.items()},
    }


def show(r: dict[str, Any]) -> None:
    p = r["plan"]
    print(f"{len(r['candidates'])} candidates x {p['seeds']} seeds, {p['steps']} steps "
          f"(batch 16, {p['side']} px synthetic)")
    for name, v in r["miou_of_recipe"].items():
        print(f"  {name:16s} mean mIoU {v:.3f}")
    for name, a in r["vs_reference"].items():
        print(f"  {REFERENCE} vs {name}: Kendall tau {a['tau']:+.2f} (seed means), "
              f"{a['single_seed_tau']:+.2f} (single seeds); top-1 "
              f"{'same' if a['top1'] else 'differs'}, top-3 overlap {a['top3']:.2f}")
    floor = ", ".join(f"{n} {t:+.2f}" for n, t in r["seed_to_seed_tau"].items())
    print(f"  noise floor, single seed vs seed of one recipe: tau {floor}")
