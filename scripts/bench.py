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
  orchestration  scripts/bench_orchestration.py (run as a subprocess, its JSON kept):
           per-trial overhead of driver + Ray + storage, and trials/s with 1-16 workers on a
           simulated 4-node Ray cluster. Targets <= 1 % of a 30 s trial, scaling >= 0.9 N.
  search   sampler efficiency on the tabular benchmark (benchmarks/tabular_dilation.csv):
           each sampler drives an in-memory Optuna study over search_spaces/tabular.toml
           (the search's own `Space.sample`), mIoU read from the table, RF and GFLOPs from
           its analytic columns; hypervolume after B trials vs the exhaustive front (one
           fixed reference point), and trials to 95 % of it vs random search.
           Target: >= 2x fewer trials than random for the best sampler.
  proxy    proxy fidelity: Kendall tau between the short-budget mIoU of the table (what
           tabular trials read; the budget of scripts/make_tabular.py) and a 4x longer budget
           over >= 30 candidates spread over the table's mIoU range (stored, resumable:
           benchmarks/proxy_fidelity.csv; --quick only recomputes tau from that file).
  gpu      CUDA only (else "skipped: no CUDA device"): img/s and model-FLOP utilisation of
           one trial, and the throughput of k trials packed on one GPU vs one at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
TABLE = REPO / "benchmarks" / "tabular_dilation.csv"
PROXY = REPO / "benchmarks" / "proxy_fidelity.csv"
TABULAR_SPACE = REPO / "search_spaces" / "tabular.toml"
OBJECTIVES = (("miou", "maximize"), ("rf", "maximize"), ("gflops", "minimize"))


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
        # best of 3 as well: one timing of the loop swung 8k-19k/s on a shared 2-core VM
        t_loop = _best_of(lambda r=rates: loop(r[:n_loop]), 3)
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


def bench_orchestration(quick: bool) -> dict[str, Any]:
    """scripts/bench_orchestration.py in a subprocess (it starts and stops its own Ray
    cluster); its --json result, as is."""
    cmd = [sys.executable, str(SCRIPTS / "bench_orchestration.py"), "--json"]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"bench_orchestration.py exited {proc.returncode}: {tail[0]}"}
    text = proc.stdout[proc.stdout.index("{"):]  # the JSON document (Ray may log before it)
    out: dict[str, Any] = json.loads(text)
    o = out["overhead"]
    out["summary"] = {
        "overhead_ms": round(o["overhead_per_trial_s"] * 1000, 1),
        "share_of_30s_trial": o["share_of_30s_trial"],
        "overhead_target_met": o["target_met"],
        "efficiency": {r["workers"]: round(r["efficiency"], 3) for r in out["scaling"]},
        "scaling_target_met": all(r["efficiency"] >= 0.9 for r in out["scaling"]),
    }
    return out


# -- search efficiency on the tabular benchmark -----------------------------------------------

def _table_points(table_path: Path, seed: int) -> dict[str, tuple[float, float, float]]:
    """schedule -> (miou, rf, gflops) of the table's rows of ``seed``."""
    from nas_dil.search.tabular import load_table

    t = load_table(table_path)
    return {k[0]: (row["miou"], float(row["rf"]), float(row["gflops"]))
            for k, row in t.rows.items() if k[4] == seed}


# benchmark labels that are a sampler with options (as `[sampler]` keys of a study would set)
SAMPLER_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "tpe_mv": ("tpe", {"multivariate": True, "group": True}),
}
TABULAR_STUDY = REPO / "studies" / "tabular.toml"


def _sampler(label: str, seed: int, space_path: Path = TABULAR_SPACE) -> Any:
    """The sampler as `nas-dil search` builds it for the tabular study (make_sampler: the same
    seed handling, and the hvi sampler's analytic context), with ``label``'s name/options."""
    import dataclasses

    from nas_dil.data.synthetic import NUM_CLASSES
    from nas_dil.search.config import SamplerConfig, load_study_config
    from nas_dil.search.driver import make_sampler
    from nas_dil.spaces import load_space

    name, options = SAMPLER_VARIANTS.get(label, (label, {}))
    cfg = dataclasses.replace(load_study_config(TABULAR_STUDY), seed=seed,
                              sampler=SamplerConfig(name, options))
    return make_sampler(cfg, load_space(space_path), NUM_CLASSES)


def sampler_run(name: str, seed: int, points: dict[str, tuple[float, float, float]],
                n_trials: int, space_path: Path = TABULAR_SPACE) -> list[tuple[float, ...]]:
    """One in-memory study: ``n_trials`` asks of ``name`` (seed ``seed``) over the space, each
    told the table's values; returns the objective values in trial order (duplicates count as
    trials, as in `nas-dil search`, where they are answered from storage). Stops early only
    when brute force has tried every candidate."""
    import optuna

    from nas_dil.search.tabular import schedule_key
    from nas_dil.spaces import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_path)
    study = optuna.create_study(directions=[d for _, d in OBJECTIVES],
                                sampler=_sampler(name, seed, space_path))
    out: list[tuple[float, ...]] = []
    seen: set[str] = set()
    for _ in range(n_trials):
        trial = study.ask()
        key = schedule_key(space.sample(trial).rates)
        out.append(points[key])
        seen.add(key)
        try:
            study.tell(trial, list(points[key]))
        except RuntimeError:  # brute force calls study.stop() once the space is exhausted
            break
        if name == "brute" and len(seen) >= len(points):
            break
    return out


def _first_reaching(series: Sequence[float], level: float) -> int | None:
    for i, v in enumerate(series, 1):
        if v >= level:
            return i
    return None


def search_efficiency(table_path: Path = TABLE, samplers: Sequence[str] = ("hvi", "tpe",
                      "tpe_mv", "nsga2", "random", "brute"), seeds: Sequence[int] = range(10),
                      budgets: Sequence[int] = (10, 25, 50, 100), max_trials: int = 1000,
                      table_seed: int = 0, caps: dict[str, int] | None = None,
                      plot: Path | None = None) -> dict[str, Any]:
    """Each sampler × seed runs ``max_trials`` trials (``caps``: fewer for the slow samplers,
    whose cost per ask grows with the trials: TPE 320, GP 100 by default)."""
    from nas_dil.report.pareto import hypervolume, hypervolume_series, reference_point

    points = _table_points(table_path, table_seed)
    dirs = [d for _, d in OBJECTIVES]
    allv = np.array(list(points.values()))
    ref = reference_point(allv, dirs)  # one fixed reference point for every run
    hv_all = hypervolume(allv, dirs, ref)
    res: dict[str, Any] = {
        "table": str(table_path.relative_to(REPO) if table_path.is_relative_to(REPO)
                     else table_path),
        "candidates": len(points), "table_seed": table_seed,
        "objectives": [f"{n} ({d})" for n, d in OBJECTIVES],
        "reference_point": [round(float(x), 6) for x in ref],
        "exhaustive_hv": hv_all, "seeds": list(seeds), "budgets": list(budgets),
        "max_trials": max_trials, "samplers": {}}
    curves: dict[str, np.ndarray] = {}
    for name in samplers:
        caps = {"tpe": 320, "tpe_mv": 320, "gp": 100} if caps is None else caps
        n_max = min(max_trials, caps.get(name, max_trials))
        t0 = time.perf_counter()
        runs, reach = [], []
        for seed in seeds:
            vals = sampler_run(name, seed, points, n_max)
            frac = np.array(hypervolume_series(vals, dirs, ref)) / hv_all
            frac = np.concatenate([frac, np.full(n_max - len(frac), frac[-1])])
            runs.append(frac)
            reach.append(_first_reaching(frac, 0.95))
        arr = np.stack(runs)
        curves[name] = arr
        reached = [r for r in reach if r is not None]
        med = float(np.median([r if r is not None else np.inf for r in reach]))
        res["samplers"][name] = {
            "trials_run": n_max,
            "hv_fraction_at": {b: {"median": round(float(np.median(arr[:, b - 1])), 4),
                                   "min": round(float(arr[:, b - 1].min()), 4),
                                   "max": round(float(arr[:, b - 1].max()), 4)}
                               for b in budgets if b <= n_max},
            "trials_to_95": reach,
            "median_trials_to_95": med if np.isfinite(med) else None,
            "reached_95": f"{len(reached)}/{len(reach)}",
            "seconds": round(time.perf_counter() - t0, 1),
        }
    rs = res["samplers"].get("random", {})
    rnd = rs.get("median_trials_to_95")
    for r in res["samplers"].values():
        m = r["median_trials_to_95"]
        r["fewer_trials_than_random"] = (round(rnd / m, 2) if rnd and m else None)
        # random's median beyond its run: the ratio is at least trials_run / m
        r["fewer_trials_than_random_at_least"] = (
            round(rs["trials_run"] / m, 2) if rs and rnd is None and m else None)
    best = min((r["median_trials_to_95"] or np.inf, n) for n, r in res["samplers"].items()
               if n not in ("random", "brute"))
    res["best_sampler"] = best[1]
    b = res["samplers"][best[1]]
    ratio = b["fewer_trials_than_random"] or b["fewer_trials_than_random_at_least"]
    res["target_met"] = bool(ratio is not None and ratio >= 2.0)
    if plot is not None:
        _plot_hv(curves, res, plot)
        res["plot"] = str(plot.relative_to(REPO) if plot.is_relative_to(REPO) else plot)
    return res


def _plot_hv(curves: dict[str, np.ndarray], res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, arr in curves.items():
        x = np.arange(1, arr.shape[1] + 1)
        med = np.median(arr, axis=0)
        line = ax.plot(x, med, label=f"{name} (median of {arr.shape[0]})")[0]
        ax.fill_between(x, arr.min(axis=0), arr.max(axis=0), color=line.get_color(), alpha=0.12)
    ax.axhline(0.95, color="grey", ls="--", lw=0.8)
    ax.text(2, 0.955, "95 % of the exhaustive front", fontsize=8, color="grey")
    for b in res["budgets"]:
        ax.axvline(b, color="grey", ls=":", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume / exhaustive hypervolume")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Tabular dilation benchmark ({res['candidates']} schedules): "
                 "mIoU↑ RF↑ GFLOPs↓", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def bench_search(quick: bool) -> dict[str, Any]:
    if quick:
        return search_efficiency(samplers=("hvi", "tpe_mv", "random"), seeds=range(3),
                                 budgets=(10, 25, 50, 100), max_trials=320)
    # gp is left out: ~7 s per ask on the 2-core dev VM (fit 3 GPs + acquisition), too slow
    # for seeds × hundreds of trials; search_efficiency(samplers=("gp",), ...) runs it
    return search_efficiency(seeds=range(10),
                             plot=REPO / "docs" / "benchmarks" / "tabular_hv.png")


# -- proxy fidelity ---------------------------------------------------------------------------

def _make_tabular() -> Any:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import make_tabular

    return make_tabular


def proxy_candidates(table_path: Path, n: int, seed: int = 0) -> list[tuple[str, float]]:
    """``n`` schedules spread evenly over the table's mIoU ranking (seed ``seed``), with
    their short-budget mIoU."""
    from nas_dil.search.tabular import load_table

    rows = sorted(((k[0], r["miou"]) for k, r in load_table(table_path).rows.items()
                   if k[4] == seed), key=lambda x: x[1])
    idx = np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))
    return [rows[i] for i in idx]


def proxy_fidelity(table_path: Path = TABLE, out: Path = PROXY, n: int = 30, factor: int = 4,
                   workers: int = 2, budget: dict[str, dict[str, Any]] | None = None,
                   train: bool = True) -> dict[str, Any]:
    """Train each candidate at ``factor`` × the table's epochs (seed 0; rows already in
    ``out`` are kept: resumable) and compare with the table's short-budget mIoU."""
    from scipy.stats import kendalltau, spearmanr

    mt = _make_tabular()
    budget = budget or mt.BUDGET
    long_epochs = int(budget["train"]["epochs"]) * factor
    cands = proxy_candidates(table_path, n)
    done: dict[str, dict[str, str]] = {}
    if out.exists() and out.stat().st_size > 0:
        done = {r["schedule"]: r for r in mt.read_rows(out)
                if int(r["long_epochs"]) == long_epochs}
    todo = [s for s, _ in cands if s not in done] if train else []
    fields = ["schedule", "rf", "holes", "gridding_free", "short_epochs", "short_miou",
              "long_epochs", "long_miou", "long_curve", "long_train_time_s"]
    short = dict(cands)
    if todo:
        new = not out.exists() or out.stat().st_size == 0
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", newline="") as f, ProcessPoolExecutor(workers) as pool:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                f.write(f"# proxy fidelity: table {table_path.name} (short budget) vs "
                        f"{factor}x epochs, seed 0; made {time.strftime('%Y-%m-%d')}; "
                        f"budget {budget}\n")
                w.writeheader()
            futs = {pool.submit(mt.train_row, tuple(int(x) for x in s.split("-")), 0,
                                long_epochs, budget): s for s in todo}
            for fut in as_completed(futs):
                r = fut.result()
                row = {"schedule": r["schedule"], "rf": r["rf"], "holes": r["holes"],
                       "gridding_free": r["gridding_free"],
                       "short_epochs": budget["train"]["epochs"],
                       "short_miou": short[r["schedule"]], "long_epochs": long_epochs,
                       "long_miou": r["miou"], "long_curve": r["miou_curve"],
                       "long_train_time_s": r["train_time_s"]}
                w.writerow(row)
                f.flush()
                done[r["schedule"]] = {k: str(v) for k, v in row.items()}
    pairs = [(short[s], float(done[s]["long_miou"])) for s, _ in cands if s in done]
    if len(pairs) < 3:
        return {"candidates": len(pairs), "error": f"only {len(pairs)} candidates measured"}
    a, b = np.array(pairs).T
    tau = kendalltau(a, b)
    rho = spearmanr(a, b)
    return {"candidates": len(pairs), "short_epochs": int(budget["train"]["epochs"]),
            "long_epochs": long_epochs, "kendall_tau": round(float(tau.statistic), 3),
            "tau_pvalue": float(tau.pvalue), "spearman_rho": round(float(rho.statistic), 3),
            "short_miou_range": [round(float(a.min()), 4), round(float(a.max()), 4)],
            "long_miou_range": [round(float(b.min()), 4), round(float(b.max()), 4)],
            "target_met": len(pairs) >= 30, "file": str(out)}


def bench_proxy(quick: bool) -> dict[str, Any]:
    if quick:  # no training: tau from the stored run
        return proxy_fidelity(train=False)
    return proxy_fidelity()


# -- GPU --------------------------------------------------------------------------------------

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0,
                    "L4": 121.0, "V100": 125.0}  # dense tensor-core peaks (vendor sheets)


def _gpu_trial(args: tuple[int, int, int, int]) -> dict[str, float]:
    """One trial on the GPU in this process: (image_size, width, steps, seed)."""
    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig, run_trial

    size, width, steps, seed = args
    cfg = TrialConfig(arch=ArchConfig(output_stride=8, width=width),
                      data=DataConfig(image_size=size, n_train=32 * steps, n_val=32),
                      train=TrainConfig(epochs=1, batch_size=32, device="cuda"))
    r = run_trial(cfg, "1,2,5,1,2,5", seed=seed)
    return {"images": float(r.train_images), "train_time_s": r.train_time_s,
            "images_per_s": r.images_per_s, "flops": float(r.flops)}


def bench_gpu(quick: bool) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    import multiprocessing as mp

    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    size, width, steps = (128, 64, 40) if quick else (256, 128, 150)
    _gpu_trial((size, width, 5, 0))  # warm-up: cuDNN autotuning, allocator
    one = _gpu_trial((size, width, steps, 0))
    # model FLOPs per trained image: forward 2·MACs (r.flops) + backward ≈ 2× forward
    achieved = one["images_per_s"] * one["flops"] * 3
    out: dict[str, Any] = {
        "device": name, "image_size": size, "width": width, "batch": 32, "steps": steps,
        "trial_images_per_s": round(one["images_per_s"], 1),
        "achieved_tflops": round(achieved / 1e12, 2),
        "peak_bf16_tflops": peak,
        "mfu": round(achieved / (peak * 1e12), 4) if peak else None, "packing": []}
    ctx = mp.get_context("spawn")
    for k in (2, 4) if quick else (2, 4, 8):
        t0 = time.perf_counter()
        for i in range(k):  # one at a time
            _gpu_trial((size, width, steps, i))
        seq = k * steps * 32 / (time.perf_counter() - t0)
        with ProcessPoolExecutor(k, mp_context=ctx) as pool:
            list(pool.map(_gpu_trial, [(size, width, 5, i) for i in range(k)]))  # warm
            t0 = time.perf_counter()
            list(pool.map(_gpu_trial, [(size, width, steps, i) for i in range(k)]))
            packed = k * steps * 32 / (time.perf_counter() - t0)
        out["packing"].append({"k": k, "sequential_images_per_s": round(seq, 1),
                               "packed_images_per_s": round(packed, 1),
                               "speedup": round(packed / seq, 2)})
    return out


BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "scoring": bench_scoring,
    "trial": bench_trial,
    "orchestration": bench_orchestration,
    "search": bench_search,
    "proxy": bench_proxy,
    "gpu": bench_gpu,
}


def _met(ok: object) -> str:
    return "met" if ok else "NOT met"


def _print_orchestration(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"  {r['error']}")
        return
    s = r["summary"]
    print(f"  overhead {s['overhead_ms']} ms/trial = {s['share_of_30s_trial'] * 100:.2f} % of a "
          f"30 s trial (target <= 1 % {_met(s['overhead_target_met'])})")
    print(f"  scaling efficiency by workers {s['efficiency']} "
          f"(target >= 0.9 {_met(s['scaling_target_met'])})")


def _print_search(r: dict[str, Any]) -> None:
    print(f"  {r['candidates']} candidates, seeds {r['seeds']}, reference point "
          f"{r['reference_point']}; HV as a share of the exhaustive front's")
    for name, s in r["samplers"].items():
        at = "  ".join(f"B={b}: {v['median']:.3f}" for b, v in s["hv_fraction_at"].items())
        med = s["median_trials_to_95"]
        ratio, least = s["fewer_trials_than_random"], s["fewer_trials_than_random_at_least"]
        vs = (f"{ratio}x fewer than random" if ratio is not None
              else f">= {least}x fewer than random" if least is not None
              else "no ratio vs random")
        print(f"  {name:7s} {at}  trials to 95 %: median "
              f"{med if med is not None else '>' + str(s['trials_run'])} "
              f"({s['reached_95']} seeds reached it), {vs}")
    print(f"  best sampler {r['best_sampler']}: target >= 2x fewer than random "
          f"{_met(r['target_met'])}")


def _print_proxy(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"  {r['error']}")
        return
    print(f"  {r['candidates']} candidates, {r['short_epochs']} vs {r['long_epochs']} epochs: "
          f"Kendall tau {r['kendall_tau']} (p {r['tau_pvalue']:.1e}), Spearman rho "
          f"{r['spearman_rho']}")


def _print_gpu(r: dict[str, Any]) -> None:
    if "skipped" in r:
        print(f"  skipped: {r['skipped']}")
        return
    print(f"  {r['device']}: {r['trial_images_per_s']} img/s, {r['achieved_tflops']} TFLOP/s, "
          f"MFU {r['mfu']}")
    for p in r["packing"]:
        print(f"  k={p['k']}: packed {p['packed_images_per_s']} img/s vs one at a time "
              f"{p['sequential_images_per_s']} img/s = {p['speedup']}x")


_PRINTERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "orchestration": _print_orchestration, "search": _print_search, "proxy": _print_proxy,
    "gpu": _print_gpu}


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
            if name in _PRINTERS:
                _PRINTERS[name](results[name])
            for case, r in results[name].get("cases", {}).items():
                print(f"  {case:12s} vectorised {r['vectorised_per_s']:>12,}/s  "
                      f"loop {r['loop_per_s']:>9,}/s  speedup {r['speedup']:>7}x  "
                      f"target>=1M/s {'met' if r['target_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
