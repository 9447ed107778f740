"""The hvi sampler's pool on the `free` space (depth 3-6, six rates, two output strides and
widths: 224k candidates, so the pool is a random sample of ``pool_size``): seconds to build
the sampler (draw, parameters, analytic columns, features, feasibility), and the analytic
columns alone, vectorised `analytic_batch` vs `analytic_attrs` one candidate at a time (what
the pool did before the batch form). Target: the pool of 4,096 built in <= 1 s."""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmarks._common import QUICKSTART, best_of, met


def run(quick: bool) -> dict[str, Any]:
    from nas_dil.data.synthetic import NUM_CLASSES
    from nas_dil.models.analytic import analytic_attrs, analytic_batch
    from nas_dil.search.config import SamplerConfig, load_study_config
    from nas_dil.search.driver import make_sampler
    from nas_dil.search.resolved import ResolvedStudy
    from nas_dil.spaces import load_space

    pool_size = 1_024 if quick else 4_096
    repeats = 2 if quick else 3
    n_loop = 200 if quick else 1_000
    cfg = load_study_config(QUICKSTART)  # its [arch] and image size; hvi as its sampler
    cfg = dataclasses.replace(cfg, sampler=SamplerConfig("hvi", {"pool_size": pool_size}))
    space = load_space("free")
    t_build = best_of(lambda: make_sampler(ResolvedStudy(cfg, space, NUM_CLASSES)), repeats)
    cands = make_sampler(ResolvedStudy(cfg, space, NUM_CLASSES))._pool.keys  # the pool's Candidates
    size = cfg.data.image_size
    arch = {**cfg.arch, "num_classes": NUM_CLASSES}
    t_batch = best_of(lambda: analytic_batch(cands, arch, size), repeats)
    some = cands[:n_loop]
    t_loop = best_of(lambda: [analytic_attrs(c.schedule, cfg.arch.at(c, NUM_CLASSES), size)
                              for c in some], repeats)
    batch_rate, loop_rate = len(cands) / t_batch, len(some) / t_loop
    return {
        "space": "free", "pool_size": pool_size, "candidates": len(cands),
        "build_s": round(t_build, 3),
        "analytic_batch_per_s": round(batch_rate),
        "analytic_one_by_one_per_s": round(loop_rate),
        "speedup": round(batch_rate / loop_rate, 1),
        # the pool as built before: one analytic_attrs call per candidate
        "one_by_one_pool_s_est": round(len(cands) / loop_rate, 2),
        "target_met": pool_size < 4_096 or t_build <= 1.0,
    }


def show(r: dict[str, Any]) -> None:
    print(f"  {r['candidates']} candidates (pool_size {r['pool_size']}): sampler built in "
          f"{r['build_s']} s; analytic columns {r['analytic_batch_per_s']:,}/s batched vs "
          f"{r['analytic_one_by_one_per_s']:,}/s one by one = {r['speedup']}x "
          f"(one by one the pool would take ~{r['one_by_one_pool_s_est']} s)"
          + ("" if r["pool_size"] < 4_096 else f"; target <= 1 s {met(r['target_met'])}"))
