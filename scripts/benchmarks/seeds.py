"""Seed spread of the quickstart's proxy: for its shipped baselines and 10 random feasible
candidates of the `hdc` and `free` spaces (5 each, seeded), the mean and std of val mIoU over
5 training seeds at the quickstart's own budget, trained as its search trains them
(`plan_trial`'s trial config, seeds ``seed + look``). Target: every std <= 0.02 (--quick:
2 baselines and 2 candidates, 2 seeds each)."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import QUICKSTART, met, rel

TARGET_STD = 0.02  # issue 21 §4: every shipped baseline and front candidate
SPACES = ("hdc", "free")  # the random candidates' spaces, n_random // 2 from each


@dataclass(frozen=True)
class Job:
    name: str  # the baseline's name, or "<space> #i"
    label: str  # the candidate as text (rates, output stride, width)
    trial_config: Mapping[str, Any]  # TrialConfig.to_dict(), as the search plans it
    schedule: Mapping[str, Any]  # Schedule.to_dict()
    seed: int  # the study's seed + look
    gflops: float
    rf: int


def _overridden(tc: Mapping[str, Any], over: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {k: {**v, **over.get(k, {})} for k, v in tc.items()}


def plan_jobs(study: Path = QUICKSTART, seeds: int = 5, baselines: Sequence[str] | None = None,
              n_random: int = 10, sample_seed: int = 0,
              overrides: Mapping[str, Mapping[str, Any]] | None = None,
              extra: Sequence[tuple[str, Any]] = ()) -> list[Job]:
    """The trainings, planned by the search's own `plan_trial` (the study's [arch], [data],
    [train] and parallel.cpus; look k trains from seed ``cfg.seed + k``). ``baselines``: names
    of the study's [[baselines]] (None: all); random candidates are drawn with Optuna's
    RandomSampler(``sample_seed``) and kept when feasible (the study's constraints and
    dead-tap refusal at its crop), ``n_random // 2`` per space of `SPACES`, without repeats.
    ``overrides``: {"data"|"train"|"arch": {field: value}} over the planned config (tests).
    ``extra``: more (name, `Candidate`) of the study's space, e.g. a finished search's front."""
    from dataclasses import replace

    from nas_dil.data import load_data
    from nas_dil.search.baselines import baseline_candidates
    from nas_dil.search.config import load_study_config
    from nas_dil.search.preflight import study_space
    from nas_dil.search.resolved import ResolvedStudy
    from nas_dil.search.trials import plan_trial
    from nas_dil.spaces import Candidate, load_space, sample_candidates

    cfg = load_study_config(study)
    num_classes = load_data(cfg.data, "cpu").num_classes  # as the driver's data probe
    space = study_space(cfg)
    named = baseline_candidates(cfg.baselines, space, str(cfg.path))
    if baselines is not None:
        unknown = sorted(set(baselines) - {n for n, _ in named})
        if unknown:
            raise ValueError(f"{unknown=}: not baselines of {study}")
        named = [(n, c) for n, c in named if n in baselines]
    entries: list[tuple[str, Candidate, ResolvedStudy]] = [
        (n, c, ResolvedStudy(cfg, space, num_classes)) for n, c in named]
    entries += [(n, c, ResolvedStudy(cfg, space, num_classes)) for n, c in extra]
    seen = {c for _, c, _ in entries}
    for i, sname in enumerate(SPACES):
        want = n_random // len(SPACES) + (i < n_random % len(SPACES))
        sp = cfg.dead_taps.bind(load_space(sname), cfg.arch, cfg.data.crop_hw, str(cfg.path))
        rs = ResolvedStudy(replace(cfg, space=sname), sp, num_classes)
        got = 0
        for c in sample_candidates(sp, 50 * max(1, want), sample_seed):
            if got >= want:
                break
            if c in seen or plan_trial(rs, c, 0, None).violated:
                continue
            seen.add(c)
            got += 1
            entries.append((f"{sname} #{got}", c, rs))
    jobs = []
    for name, c, rs in entries:
        label = f"{','.join(map(str, c.rates))} os{c.output_stride} w{c.width}"
        for look in range(seeds):
            p = plan_trial(rs, c, 0, None, next_look=lambda _k, look=look: look).payload
            tc = _overridden(p.trial_config, overrides or {})
            jobs.append(Job(name, label, tc, p.schedule, p.seed, float(p.analytic["gflops"]),
                            int(p.analytic["rf"])))
    return jobs


def train(job: Job) -> dict[str, Any]:
    from nas_dil.schedule import Schedule
    from nas_dil.train import TrialConfig, run_trial

    r = run_trial(TrialConfig.from_dict(dict(job.trial_config)),
                  Schedule.from_dict(dict(job.schedule)), job.seed).result
    return {"name": job.name, "seed": job.seed, "miou": r.miou,
            "per_class_iou": r.per_class_iou, "wall_time_s": r.wall_time_s}


def seed_spread(study: Path = QUICKSTART, seeds: int = 5, baselines: Sequence[str] | None = None,
                n_random: int = 10, workers: int = 2,
                overrides: Mapping[str, Mapping[str, Any]] | None = None,
                extra: Sequence[tuple[str, Any]] = ()) -> dict[str, Any]:
    """Train every job of `plan_jobs` (``workers`` processes, one torch thread each, as the
    study's trials) and summarise per candidate: mean, std (sample) and the worst class."""
    jobs = plan_jobs(study, seeds, baselines, n_random, overrides=overrides, extra=extra)
    t0 = time.perf_counter()
    # spawn, not fork: planning drew the data with torch here, and a forked child of a process
    # whose OpenMP pool is started can hang in its first parallel op
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(train, jobs))
    rows: dict[str, dict[str, Any]] = {}
    for job, r in zip(jobs, results, strict=True):
        row = rows.setdefault(job.name, {"candidate": job.label, "gflops": job.gflops,
                                         "rf": job.rf, "seeds": [], "per_seed": [],
                                         "worst_class": []})
        row["seeds"].append(job.seed)
        row["per_seed"].append(round(r["miou"], 4))
        row["worst_class"].append(round(min(x for x in r["per_class_iou"] if x is not None), 3))
    for row in rows.values():
        m = row["per_seed"]
        row["mean"] = round(statistics.mean(m), 4)
        row["std"] = round(statistics.stdev(m), 4) if len(m) > 1 else 0.0
    max_std = max(r["std"] for r in rows.values())
    import torch

    return {"study": rel(Path(study)), "torch": torch.__version__, "seeds": seeds,
            "trainings": len(jobs), "wall_s": round(time.perf_counter() - t0, 1),
            "workers": workers,
            "overrides": {k: dict(v) for k, v in (overrides or {}).items()},
            "rows": rows, "max_std": max_std, "target_std": TARGET_STD,
            "target_met": max_std <= TARGET_STD}


def run(quick: bool) -> dict[str, Any]:
    if quick:
        return seed_spread(seeds=2, baselines=["hole_free", "hdc"], n_random=2)
    return seed_spread()


def show(r: dict[str, Any]) -> None:
    print(f"  {r['study']}: {r['trainings']} trainings ({r['seeds']} seeds each) in "
          f"{r['wall_s']} s, {r['workers']} at a time")
    print(f"  {'':10s} {'candidate':22s} {'GFLOPs':>8s} {'RF':>4s} {'mean':>6s} {'std':>6s}  "
          "per seed (worst class IoU)")
    for name, row in r["rows"].items():
        seeds = " ".join(f"{m:.3f}({w:.2f})"
                         for m, w in zip(row["per_seed"], row["worst_class"], strict=True))
        print(f"  {name:10s} {row['candidate']:22s} {row['gflops']:8.5f} {row['rf']:4d} "
              f"{row['mean']:6.3f} {row['std']:6.3f}  {seeds}")
    print(f"  largest std {r['max_std']:.3f} (target <= {r['target_std']} "
          f"{met(r['target_met'])})")
