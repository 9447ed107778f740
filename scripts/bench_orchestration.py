#!/usr/bin/env python
"""Orchestration benchmark of `nas-dil search`: what the driver, Ray and the storage cost per
trial, and how throughput scales with workers. Sleep trials (``[trial] kind = "sleep"``) stand
in for training, so every second not spent sleeping is orchestration.

    .venv/bin/python scripts/bench_orchestration.py [--quick] [--json] [--sleep S]
        [--scaling-sleep S]

1. overhead: one worker, trials run one after another; overhead per trial =
   (loop wall time − Σ trial wall time measured inside the worker) / trials. It holds the
   driver (ask, sampling, analytic RF/FLOPs, constraints, dedupe), Ray (submit, schedule,
   return) and the storage (SQLite: user attrs, tell). Target: ≤ 1 % of a 30-second trial
   (≤ 300 ms).
2. scaling: a simulated multi-node cluster (ray.cluster_utils.Cluster on 127.0.0.1: 4 nodes ×
   4 CPUs) and N = 1, 2, 4, 8, 16 trials in flight, 3·N trials of S seconds each (S = 10;
   --quick: 2 per worker of 1 s); throughput of the trials that ran on a worker against the
   ideal N / S trials per second (efficiency = speed-up / N). A duplicate candidate is
   answered from the storage without a worker but uses one of the 3·N trials, so the last
   round runs short; the makespan efficiency isolates orchestration from that:
   ceil(trained / N) · S (the shortest possible wall time of the trials that ran) / loop wall
   time. The two are equal when there is no duplicate.

3. ask latency: the study's sampler alone (no Ray, in-memory storage) over the same space,
   48 finished trials, then 16 in flight: each step one trial finishes and one is asked (the
   steady state of 16 workers), median and 90th percentile of the ask (`study.ask` plus
   `Space.sample`, which makes the sampler's choice); and a burst of 8 asks with no finish
   between. Target: <= 10 ms, so 1-second trials scale at 16 workers. The scaling runs also
   give the driver's ask phase per trial (ask, plan, storage writes) at each N.

Each measurement runs after a warm-up search on the same Ray connection (worker processes
started), as a long search is after its first trials. Ray stays on 127.0.0.1; every cluster
started here is shut down here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only (nas_dil.search.cluster)

STUDY = """
name = "bench"
space = "free"  # 223,776 candidates: duplicates (answered without a worker) stay rare
n_trials = {n}
seed = {seed}
keep_weights = false
[sampler]
name = "{sampler}"
[trial]
kind = "sleep"
sleep_s = {sleep}
evals = 3
[parallel]
max_in_flight = {workers}
cpus = 1
[early_stop]
enabled = false
"""


SAMPLER = "hvi"  # the default; --sampler tpe measures Optuna's TPE instead


def _search(tmp: Path, tag: str, n: int, workers: int, sleep: float, address: str,
            seed: int = 0) -> dict[str, Any]:
    import optuna

    from nas_dil.search import run_search

    cfg = tmp / f"{tag}.toml"
    cfg.write_text(STUDY.format(n=n, seed=seed, sleep=sleep, workers=workers, sampler=SAMPLER))
    out = tmp / tag
    s = run_search(cfg, out=out, address=address, progress=False)
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{out / 'study.db'}")
    walls = [t.user_attrs["wall_time_s"] for t in study.trials
             if "wall_time_s" in t.user_attrs and t.user_attrs.get("reused_from") is None]
    return {"trials": s.done, "trained": len(walls), "loop_s": s.loop_s,
            "trial_s": sum(walls), "driver_s": s.driver_s, "reused": s.reused}


def bench_overhead(tmp: Path, address: str, sleep: float, n: int) -> dict[str, Any]:
    _search(tmp, "warm1", 2, 1, 0.05, address)
    r = _search(tmp, "overhead", n, 1, sleep, address)
    per = (r["loop_s"] - r["trial_s"]) / r["trials"]  # a reused duplicate costs no sleep
    driver = sum(r["driver_s"].values()) / r["trials"]
    return {"sleep_s": sleep, **r, "overhead_per_trial_s": per,
            "driver_busy_per_trial_s": driver,
            "share_of_30s_trial": per / 30.0, "target_met": per / 30.0 <= 0.01}


def bench_scaling(tmp: Path, address: str, sleep: float, workers: list[int],
                  per_worker: int) -> list[dict[str, Any]]:
    _search(tmp, "warm16", max(workers), max(workers), 0.05, address)
    rows = []
    for n_workers in workers:
        n = per_worker * n_workers
        r = _search(tmp, f"scale{n_workers}", n, n_workers, sleep, address, seed=n_workers)
        throughput = r["trained"] / r["loop_s"]  # trials that ran on a worker
        ideal = n_workers / sleep
        shortest = -(-r["trained"] // n_workers) * sleep  # full rounds of the trials that ran
        rows.append({"workers": n_workers, "trials": r["trials"], "trained": r["trained"],
                     "ask_per_trial_s": r["driver_s"].get("ask", 0.0) / r["trials"],
                     "reused": r["reused"],
                     "loop_s": r["loop_s"], "throughput_per_s": throughput,
                     "ideal_per_s": ideal, "speedup": throughput * sleep,
                     "efficiency": throughput / ideal,
                     "makespan_efficiency": shortest / r["loop_s"]})
    return rows


def bench_ask(inflight: int = 16, done: int = 48, steps: int = 40,
              seed: int = 0) -> dict[str, Any]:
    """The sampler's ask latency with ``inflight`` trials running (module docstring, 3.)."""
    import dataclasses

    import numpy as np
    import optuna

    from nas_dil.data.synthetic import NUM_CLASSES
    from nas_dil.search.config import SamplerConfig, load_study_config
    from nas_dil.search.driver import make_sampler
    from nas_dil.search.resolved import ResolvedStudy
    from nas_dil.spaces import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    repo = Path(__file__).resolve().parents[1]
    cfg = dataclasses.replace(load_study_config(repo / "studies" / "quickstart.toml"),
                              space_path=repo / "search_spaces" / "free.toml", seed=seed,
                              sampler=SamplerConfig(SAMPLER, {}), constraints=())
    space = load_space(cfg.space_path)
    study = optuna.create_study(directions=[o.direction for o in cfg.objectives],
                                sampler=make_sampler(ResolvedStudy(cfg, space, NUM_CLASSES)))
    rng = np.random.default_rng(seed)

    def ask() -> tuple[Any, float]:
        t0 = time.perf_counter()
        trial = study.ask()
        space.sample(trial)
        return trial, time.perf_counter() - t0

    def tell(trial: Any) -> None:
        study.tell(trial, [float(rng.random()) for _ in cfg.objectives])

    for _ in range(done):
        tell(ask()[0])
    running = [ask()[0] for _ in range(inflight)]
    steady, burst = [], []
    for _ in range(steps):
        tell(running.pop(0))
        trial, dt = ask()
        running.append(trial)
        steady.append(dt)
    for _ in range(8):
        burst.append(ask()[1])
    med = float(np.median(steady))
    return {"inflight": inflight, "finished_before": done, "steps": steps,
            "steady_median_s": med, "steady_p90_s": float(np.percentile(steady, 90)),
            "burst_median_s": float(np.median(burst)), "target_met": med <= 0.010}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter trials (< 2 min)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--sleep", type=float, default=None,
                    help="seconds per sleep trial in the overhead run (default 2; quick 1)")
    ap.add_argument("--scaling-sleep", type=float, default=None,
                    help="seconds per sleep trial in the scaling runs (default 10; quick 1)")
    ap.add_argument("--sampler", default="hvi", choices=("hvi", "tpe", "random"),
                    help="the study's sampler (default hvi, nas-dil's default)")
    args = ap.parse_args()
    global SAMPLER
    SAMPLER = args.sampler
    sleep = args.sleep or (1.0 if args.quick else 2.0)
    scaling_sleep = args.scaling_sleep or (1.0 if args.quick else 10.0)
    n_overhead = 6 if args.quick else 15
    per_worker = 2 if args.quick else 3
    workers = [1, 2, 4, 8, 16]

    ask = bench_ask()  # before Ray starts: the sampler alone
    import ray
    from ray.cluster_utils import Cluster

    from nas_dil.search import cluster as ray_link

    tmp = Path(tempfile.mkdtemp(prefix="nas-dil-bench-"))
    c = Cluster(initialize_head=True, head_node_args={
        "node_ip_address": "127.0.0.1", "num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(4):
            c.add_node(num_cpus=4, node_ip_address="127.0.0.1")
        ray_link.connect(c.address)  # one job: warm workers carry over between searches
        overhead = bench_overhead(tmp, c.address, sleep, n_overhead)
        scaling = bench_scaling(tmp, c.address, scaling_sleep, workers, per_worker)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"python {platform.python_version()}, ray {ray.__version__}",
              "cluster": "4 nodes x 4 CPUs on 127.0.0.1 (ray.cluster_utils.Cluster)",
              "storage": "SQLite", "sampler": SAMPLER, "ask": ask, "overhead": overhead,
              "scaling": scaling}
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0
    o = overhead
    print(f"overhead: {o['trials']} sleep trials of {sleep:g} s, one at a time: "
          f"{o['overhead_per_trial_s'] * 1000:.0f} ms per trial "
          f"(driver busy {o['driver_busy_per_trial_s'] * 1000:.0f} ms) = "
          f"{o['share_of_30s_trial'] * 100:.2f} % of a 30 s trial "
          f"({'met' if o['target_met'] else 'NOT met'}: <= 1 %)")
    a = ask
    print(f"ask ({SAMPLER}, {a['inflight']} in flight): median "
          f"{a['steady_median_s'] * 1000:.1f} ms, p90 {a['steady_p90_s'] * 1000:.1f} ms, burst "
          f"{a['burst_median_s'] * 1000:.1f} ms ({'met' if a['target_met'] else 'NOT met'}: "
          f"<= 10 ms)")
    print(f"scaling ({scaling_sleep:g} s sleep trials, {per_worker} per worker):")
    print("  workers  trained  reused  loop_s  trials/s  ideal/s  speed-up  efficiency  makespan"
          "  ask ms/trial")
    for r in scaling:
        print(f"  {r['workers']:>7}  {r['trained']:>7}  {r['reused']:>6}  {r['loop_s']:>6.1f}  "
              f"{r['throughput_per_s']:>8.2f}  {r['ideal_per_s']:>7.2f}  "
              f"{r['speedup']:>7.2f}×  {r['efficiency'] * 100:>9.0f} %  "
              f"{r['makespan_efficiency'] * 100:>6.0f} %  {r['ask_per_trial_s'] * 1000:>12.1f}")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
