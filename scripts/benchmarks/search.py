"""Sampler efficiency on the tabular benchmark v2 (benchmarks/tabular_v2.csv: 160 candidates,
3 training seeds each; FLOPs vary with depth and width; the usable RF). Each sampler drives an
in-memory Optuna study over search_spaces/tabular_v2.toml (the search's own `Space.sample`);
a trial sees ONE seed's mIoU (each candidate's looks go through its seeds in a random order per
run, so a repeat sees another seed), RF and GFLOPs are known. Scored against the seed-mean
truth: trials to 95 % of the truth front's hypervolume and to mean mIoU regret per GFLOPs
budget <= 0.01; hvi vs random, TPE (multivariate), NSGA-II, GPSampler, BoTorch; plus a control
with no structure, reshaped variants of the table, and issue 24's hard shapes (mIoU shuffled
within depth, RF hurts mIoU, best at middle cost; 3 random draws each: `--shapes hard`).
The v1 benchmark (one seed, nominal RF, benchmarks/tabular_dilation.csv):
`python scripts/benchmarks/search.py --v1`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __name__ == "__main__":  # run as a script: `benchmarks` is the folder above this file
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    REPO,
    TABLE,
    TABLE_V2,
    TABULAR_SPACE,
    TABULAR_STUDY,
    TABULAR_V2_SPACE,
    TABULAR_V2_STUDY,
    met,
    rel,
)

# the nominal RF, as the table was made (studies/tabular.toml: kept for history)
OBJECTIVES = (("miou", "maximize"), ("rf_nominal", "maximize"), ("gflops", "minimize"))
# benchmark labels that are a sampler with options (as `[sampler]` keys of a study would set)
SAMPLER_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "tpe_mv": ("tpe", {"multivariate": True, "group": True}),
}


def table_points(table_path: Path, seed: int) -> dict[str, tuple[float, float, float]]:
    """schedule -> (miou, rf, gflops) of the table's rows of ``seed``."""
    from nas_dil.search.tabular import load_table

    t = load_table(table_path)
    return {k[0]: (row["miou"], float(row["rf"]), float(row["gflops"]))
            for k, row in t.rows.items() if k[4] == seed}


def make_sampler(label: str, seed: int, space_path: Path = TABULAR_SPACE) -> Any:
    """The sampler as `nas-dil search` builds it for the tabular study (make_sampler: the same
    seed handling, and the hvi sampler's analytic context), with ``label``'s name/options."""
    import dataclasses

    from nas_dil.data.synthetic import NUM_CLASSES
    from nas_dil.search.config import SamplerConfig, load_study_config
    from nas_dil.search.driver import make_sampler as driver_sampler
    from nas_dil.search.resolved import ResolvedStudy
    from nas_dil.spaces import load_space

    name, options = SAMPLER_VARIANTS.get(label, (label, {}))
    cfg = dataclasses.replace(load_study_config(TABULAR_STUDY), seed=seed,
                              sampler=SamplerConfig(name, options))
    return driver_sampler(ResolvedStudy(cfg, load_space(space_path), NUM_CLASSES))


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
                                sampler=make_sampler(name, seed, space_path))
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
    from nas_dil.pareto import hypervolume, hypervolume_series, reference_point, signs, to_losses

    points = table_points(table_path, table_seed)
    dirs = [d for _, d in OBJECTIVES]
    allv = to_losses(list(points.values()), dirs)
    ref = reference_point(allv)  # one fixed reference point for every run
    hv_all = hypervolume(allv, ref)
    res: dict[str, Any] = {
        "table": rel(table_path),
        "candidates": len(points), "table_seed": table_seed,
        "objectives": [f"{n} ({d})" for n, d in OBJECTIVES],
        "reference_point": [round(float(x), 6) for x in ref * signs(dirs)],
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
            frac = np.array(hypervolume_series(to_losses(vals, dirs), ref)) / hv_all
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
        res["plot"] = rel(plot)
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


def run_v1(quick: bool) -> dict[str, Any]:
    if quick:
        return search_efficiency(samplers=("hvi", "tpe_mv", "random"), seeds=range(3),
                                 budgets=(10, 25, 50, 100), max_trials=320)
    # gp is left out: ~7 s per ask on the 2-core dev VM (fit 3 GPs + acquisition), too slow
    # for seeds × hundreds of trials; search_efficiency(samplers=("gp",), ...) runs it
    return search_efficiency(seeds=range(10),
                             plot=REPO / "docs" / "benchmarks" / "tabular_hv.png")


def show_v1(r: dict[str, Any]) -> None:
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
          f"{met(r['target_met'])}")


# -- v2 (issue 15): one seed per look, scored against the seed-mean truth ------------------

OBJECTIVES_V2 = (("miou", "maximize"), ("rf", "maximize"), ("gflops", "minimize"))
HV_SHARE = 0.95
REGRET_TARGET = 0.01  # mIoU, mean over GFLOPs budgets (≈ the seed std of one look)
# labels that are a sampler with options (as `[sampler]` keys of a study would set them)
V2_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "tpe_mv": ("tpe", {"multivariate": True, "group": True}),
    "hvi_noise": ("hvi", {"noise": True}),  # beta 1.0: the default with noise
    "hvi_noise_b2": ("hvi", {"noise": True, "beta": 2.0}),  # round 1's hvi_noise
    "hvi_rep": ("hvi", {"noise": True, "repeats": 1}),
    "hvi_rep2": ("hvi", {"noise": True, "repeats": 2}),
    # issue 24: the one-step-ahead check hands asks to the no-repeat random order
    "hvi_x25": ("hvi", {"noise": True, "explore": 0.25}),
    "hvi_x50": ("hvi", {"noise": True, "explore": 0.5}),
    # issue 24: the GP's noise share bounded below (measured seed noise, else a prior bound)
    "hvi_floor": ("hvi", {"noise": True, "noise_floor": True}),
    "hvi_rep2_floor": ("hvi", {"noise": True, "repeats": 2, "noise_floor": True}),
    # issue 24: Thompson sampling (a joint posterior draw) instead of the upper bound
    "hvi_ts": ("hvi", {"noise": True, "thompson": True}),
    # the GP with one length scale for all features (hvi's kernel before issue 24's ARD)
    "hvi_iso": ("hvi", {"kernel": "iso"}),
    "hvi_noise_iso": ("hvi", {"noise": True, "kernel": "iso"}),
    "hvi_rep2_iso": ("hvi", {"noise": True, "repeats": 2, "kernel": "iso"}),
}
V2_SAMPLERS = ("hvi", "hvi_noise", "hvi_rep", "hvi_rep2", "random", "brute", "tpe_mv", "nsga2")
SHAPES = ("table", "control", "noise2", "mirror", "width_swap")
# issue 24's hard shapes, each a family of random draws ("name:draw"; `reshape`)
HARD_SHAPES = ("shuffle_depth", "rf_hurts", "mid_best")
HARD_DRAWS = 3


@dataclass(frozen=True)
class TabV2:
    """The v2 table as arrays, one row per candidate: every seed's mIoU (``looks``), the
    seed-mean truth, the known objectives."""

    keys: list[tuple[str, int, int, int]]  # (schedule, kernel, output stride, width)
    looks: np.ndarray  # (n, seeds) mIoU of each seed
    rf: np.ndarray  # usable RF (px)
    gflops: np.ndarray
    shape: str = "table"  # which variant (`reshape`)

    @property
    def truth(self) -> np.ndarray:
        return self.looks.mean(axis=1)

    @property
    def index(self) -> dict[tuple[str, int, int, int], int]:
        return {k: i for i, k in enumerate(self.keys)}


def load_v2(path: Path = TABLE_V2) -> TabV2:
    """The wide table through the search's own loader (`nas_dil.search.tabular`)."""
    from nas_dil.search.tabular import load_table

    t = load_table(path)
    seeds = t.seeds
    keys = sorted({k[:4] for k in t.rows})
    looks = np.array([[t.rows[(*k, s)]["miou"] for s in seeds] for k in keys])
    first = [t.rows[(*k, seeds[0])] for k in keys]
    return TabV2(keys, looks, np.array([float(r["rf"]) for r in first]),
                 np.array([float(r["gflops"]) for r in first]))


def reshape(tab: TabV2, shape: str, seed: int = 0) -> TabV2:
    """Variants of the table, to check a sampler is not tuned to one landscape:
    - ``control``: whole rows of looks permuted across candidates (no structure left: mIoU
      has nothing to do with the schedule; same values, same seed noise);
    - ``noise2``: each look twice as far from its candidate's mean (seed noise doubled);
    - ``mirror``: each candidate takes the looks of its reversed schedule (1-2-5 ↔ 5-2-1),
      same width: structured, same values, another landscape;
    - ``width_swap``: each candidate takes the looks of its other-width twin: the cheap
      level now holds the best mIoU (another front shape).
    Issue 24's hard shapes, ``name:draw`` (``seed`` + draw picks the draw; whole rows of looks
    move, so the values and their seed noise stay the table's):
    - ``shuffle_depth``: rows permuted among candidates of the same depth (2 or 3 layers):
      nothing but depth predicts mIoU, the best is an isolated point;
    - ``rf_hurts``: within each GFLOPs level, the rows sorted by mIoU go to the candidates
      sorted by RF ascending (ranks jittered per draw): the larger the RF — an objective the
      search maximises — the lower the mIoU, the objectives fight;
    - ``mid_best``: the best rows go to candidates at middle GFLOPs and middle RF, the worst
      to the extremes (jittered per draw)."""
    looks = tab.looks
    idx = tab.index
    name, _, draw = shape.partition(":")
    if name in HARD_SHAPES:
        return TabV2(tab.keys, looks[_hard_order(tab, name, seed + int(draw or 0))], tab.rf,
                     tab.gflops, shape)
    if shape == "table":
        return tab
    if shape == "control":
        looks = looks[np.random.default_rng(seed).permutation(len(looks))]
    elif shape == "noise2":
        m = looks.mean(axis=1, keepdims=True)
        looks = m + 2.0 * (looks - m)
    elif shape == "mirror":
        looks = looks[[idx[("-".join(k[0].split("-")[::-1]), *k[1:])] for k in tab.keys]]
    elif shape == "width_swap":
        widths = sorted({k[3] for k in tab.keys})
        other = {w: widths[len(widths) - 1 - i] for i, w in enumerate(widths)}
        looks = looks[[idx[(*k[:3], other[k[3]])] for k in tab.keys]]
    else:
        raise ValueError(f"{shape=}: expected one of {', '.join(SHAPES + HARD_SHAPES)}")
    return TabV2(tab.keys, looks, tab.rf, tab.gflops, shape)


def _hard_order(tab: TabV2, name: str, seed: int) -> np.ndarray:
    """Row of the table each candidate takes in hard shape ``name`` (`reshape`)."""
    rng = np.random.default_rng(seed)
    n = len(tab.keys)
    src = np.empty(n, dtype=int)
    if name == "shuffle_depth":
        depth = np.array([len(k[0].split("-")) for k in tab.keys])
        for d in np.unique(depth):
            at = np.flatnonzero(depth == d)
            src[at] = at[rng.permutation(len(at))]
        return src

    def rank01(v: np.ndarray) -> np.ndarray:  # distinct values -> evenly spaced in [0, 1]
        u = np.unique(v)
        return np.searchsorted(u, v) / max(len(u) - 1, 1)

    jitter = rng.normal(0.0, 0.15, n)
    if name == "rf_hurts":
        groups = [np.flatnonzero(tab.gflops == g) for g in np.unique(tab.gflops)]
        want = -rank01(tab.rf) + jitter  # desirability: low RF is good
    else:  # mid_best
        groups = [np.arange(n)]
        want = -(np.abs(rank01(tab.gflops) - 0.5) + np.abs(rank01(tab.rf) - 0.5)) + jitter
    truth = tab.truth
    for at in groups:
        # the most desirable candidate gets the best row of its group, and so on
        src[at[np.argsort(-want[at], kind="stable")]] = at[np.argsort(-truth[at],
                                                                      kind="stable")]
    return src


def regret_per_cost_level(truth: np.ndarray, cost: np.ndarray,
                          tried: Sequence[int]) -> np.ndarray:
    """Mean mIoU regret over cost budgets after each trial: for each distinct cost level L,
    the best true mIoU in the table among candidates of cost <= L minus the best among the
    tried ones of cost <= L (none tried: the best in the table counts as the regret, i.e.
    mIoU 0 reached); the mean over the levels. A free objective cannot lower it: only
    trying candidates of high true mIoU at each cost does."""
    levels = np.unique(cost)
    lvl = np.searchsorted(levels, cost)
    best_table = np.maximum.accumulate(
        np.array([truth[lvl == j].max() for j in range(len(levels))]))
    best = np.full(len(levels), -np.inf)
    out = np.empty(len(tried))
    for t, i in enumerate(tried):
        best[lvl[i]] = max(best[lvl[i]], truth[i])
        got = np.maximum.accumulate(best)
        out[t] = float(np.mean(best_table - np.where(np.isfinite(got), got, 0.0)))
    return out


def pick_regret_per_cost_level(truth: np.ndarray, cost: np.ndarray, tried: Sequence[int],
                               seen: Sequence[float]) -> np.ndarray:
    """What the user gets, after each trial: for each cost level L, the candidate the study
    reports as best within budget L — the highest *observed* mIoU among the tried ones of
    cost <= L, a candidate's looks averaged (as the report and export do, `merge_looks`) —
    and its regret: the best true mIoU in the table within L minus that candidate's true
    mIoU; the mean over the levels (nothing tried within L: the best in the table). Unlike
    the regret of what was *tried*, one lucky look can make this pick wrong; repeats can fix
    it."""
    levels = np.unique(cost)
    lvl = np.searchsorted(levels, cost)
    best_table = np.maximum.accumulate(
        np.array([truth[lvl == j].max() for j in range(len(levels))]))
    total: dict[int, float] = {}
    n: dict[int, int] = {}
    out = np.empty(len(tried))
    for t, (i, y) in enumerate(zip(tried, seen, strict=True)):
        total[i] = total.get(i, 0.0) + float(y)
        n[i] = n.get(i, 0) + 1
        cands = np.array(list(total))
        means = np.array([total[c] / n[c] for c in cands])
        reg = np.empty(len(levels))
        for j in range(len(levels)):
            within = lvl[cands] <= j
            reg[j] = (best_table[j] - truth[cands[within][np.argmax(means[within])]]
                      if within.any() else best_table[j])
        out[t] = float(reg.mean())
    return out


def truth_hv_share(tab: TabV2, tried: Sequence[int]) -> np.ndarray:
    """Hypervolume of the tried candidates' truth points (seed-mean mIoU, RF, GFLOPs) after
    each trial, as a share of the whole table's; objectives scaled to [0, 1] over the table,
    one reference point (`nas_dil.pareto.reference_point` of the table)."""
    from nas_dil.pareto import hypervolume, hypervolume_series, reference_point, to_losses

    vals = np.stack([tab.truth, tab.rf, tab.gflops], axis=1)
    losses = to_losses(vals, [d for _, d in OBJECTIVES_V2])
    span = np.ptp(losses, axis=0)
    norm = (losses - losses.min(axis=0)) / np.where(span > 0, span, 1.0)
    ref = reference_point(norm)
    full = hypervolume(norm, ref)
    return np.array(hypervolume_series(norm[list(tried)], ref)) / full


def make_sampler_v2(label: str, seed: int) -> Any:
    """The sampler as `nas-dil search studies/tabular_v2.toml` builds it (the driver's
    make_sampler; hvi gets the analytic context), or Optuna-integration's BoTorch."""
    import dataclasses
    import warnings

    import optuna

    from nas_dil.data.synthetic import NUM_CLASSES
    from nas_dil.search.config import SamplerConfig, load_study_config
    from nas_dil.search.driver import make_sampler as driver_sampler
    from nas_dil.search.resolved import ResolvedStudy
    from nas_dil.spaces import load_space

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    if label == "botorch":  # qLogEHVI for 2-3 objectives (its default candidates_func)
        import botorch.acquisition.multi_objective.logei as logei
        from optuna_integration import BoTorchSampler

        # botorch's own fallback, taken up front: its fused C++ kernel is compiled at first
        # use against torch's headers, which did not finish in 18 min on the 2-core VM
        logei._load_attempted = True

        return BoTorchSampler(seed=seed)
    name, options = V2_VARIANTS.get(label, (label, {}))
    cfg = dataclasses.replace(load_study_config(TABULAR_V2_STUDY), seed=seed,
                              sampler=SamplerConfig(name, options))
    return driver_sampler(ResolvedStudy(cfg, load_space(TABULAR_V2_SPACE), NUM_CLASSES))


def run_v2_one(label: str, seed: int, tab: TabV2,
               n_trials: int) -> tuple[list[int], list[float]]:
    """One in-memory study of ``n_trials`` asks; returns the rows tried, in trial order, and
    the mIoU each trial saw.
    A look at a candidate sees one seed's mIoU: its k-th look the seed at position k of a
    per-run random order of the table's seeds (drawn from ``seed``), so every sampler sees
    the same look for the same (run, candidate, k) and a repeat sees another seed."""
    import optuna

    from nas_dil.search.tabular import schedule_key
    from nas_dil.spaces import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(TABULAR_V2_SPACE)
    order = np.random.default_rng(10_000 + seed).permuted(
        np.tile(np.arange(tab.looks.shape[1]), (len(tab.keys), 1)), axis=1)
    count = np.zeros(len(tab.keys), dtype=int)
    idx = tab.index
    study = optuna.create_study(directions=[d for _, d in OBJECTIVES_V2],
                                sampler=make_sampler_v2(label, seed))
    rows: list[int] = []
    seen: list[float] = []
    for _ in range(n_trials):
        trial = study.ask()
        c = space.sample(trial)
        i = idx[(schedule_key(c.rates), c.kernel, c.output_stride, c.width)]
        y = tab.looks[i, order[i, count[i] % order.shape[1]]]
        count[i] += 1
        rows.append(i)
        seen.append(float(y))
        try:
            study.tell(trial, [float(y), float(tab.rf[i]), float(tab.gflops[i])])
        except RuntimeError:  # hvi calls study.stop() once every candidate has a look
            break
    return rows, seen


def _first_at(xs: np.ndarray, ok: Any) -> int | None:
    return next((t + 1 for t, x in enumerate(xs) if ok(x)), None)


def evaluate_v2(tab: TabV2, samplers: Sequence[str] = V2_SAMPLERS, seeds: Sequence[int] =
                range(10), n_trials: int = 120,
                caps: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Every sampler × seed: trials to 95 % truth-HV and to mean regret <= 0.01, values at
    the end; medians over seeds (a run that never reaches a target counts as n + 1).
    ``caps``: label -> (seeds, trials) for the slow samplers."""
    out: dict[str, Any] = {"shape": tab.shape, "candidates": len(tab.keys),
                           "seeds_per_candidate": int(tab.looks.shape[1]),
                           "cost_levels": len(np.unique(tab.gflops)),
                           "look_std": float(np.mean(tab.looks.std(axis=1))),
                           "samplers": {}}
    for label in samplers:
        ss, nt = list(seeds), n_trials
        if caps and label in caps:
            ss, nt = ss[: caps[label][0]], min(nt, caps[label][1])
        runs = []
        t0 = time.perf_counter()
        for seed in ss:
            rows, seen = run_v2_one(label, seed, tab, nt)
            hv = truth_hv_share(tab, rows)
            rg = regret_per_cost_level(tab.truth, tab.gflops, rows)
            pk = pick_regret_per_cost_level(tab.truth, tab.gflops, rows, seen)
            hv = np.concatenate([hv, np.full(nt - len(hv), hv[-1])])  # a stopped study
            rg = np.concatenate([rg, np.full(nt - len(rg), rg[-1])])
            pk = np.concatenate([pk, np.full(nt - len(pk), pk[-1])])
            runs.append({"seed": seed, "hv": hv, "regret": rg, "pick_regret": pk,
                         "to_hv": _first_at(hv, lambda h: h >= HV_SHARE),
                         "to_regret": _first_at(rg, lambda r: r <= REGRET_TARGET),
                         "repeats": len(rows) - len(set(rows))})
        s: dict[str, Any] = {"n_trials": nt, "seeds": ss,
                             "s_per_run": round((time.perf_counter() - t0) / len(ss), 2)}
        for key in ("to_hv", "to_regret"):
            v = [r[key] if r[key] is not None else nt + 1 for r in runs]
            s[key] = {"median": float(np.median(v)), "per_seed": [r[key] for r in runs],
                      "reached": sum(r[key] is not None for r in runs),
                      "censored": bool(np.median(v) > nt)}
        for b in (20, 40, 50, 80, 100):
            if b <= nt:
                s[f"hv_at_{b}"] = round(float(np.mean([r["hv"][b - 1] for r in runs])), 4)
                s[f"regret_at_{b}"] = round(float(np.mean([r["regret"][b - 1] for r in runs])),
                                            4)
                s[f"pick_regret_at_{b}"] = round(float(np.mean(
                    [r["pick_regret"][b - 1] for r in runs])), 4)
        s["pick_regret_at_end"] = round(float(np.mean([r["pick_regret"][-1] for r in runs])),
                                        4)
        s["repeats_mean"] = float(np.mean([r["repeats"] for r in runs]))
        out["samplers"][label] = s
    rnd = out["samplers"].get("random")
    for s in out["samplers"].values():
        for key in ("to_hv", "to_regret"):
            if rnd is not None:
                # vs random: random's median / this one's (random censored: a lower bound)
                s[key]["vs_random"] = round(rnd[key]["median"] / s[key]["median"], 2)
                s[key]["vs_random_lower_bound"] = rnd[key]["censored"]
    return out


def targets_v2(r: dict[str, Any]) -> dict[str, Any]:
    """The issue's target on one shape: hvi (the label that does best of hvi*) >= 2x fewer
    trials than random, and fewer than every Optuna sampler, on both metrics."""
    ss = r["samplers"]
    hvis = [k for k in ss if k.startswith("hvi")]
    others = [k for k in ss if not k.startswith("hvi") and k != "random"]
    out: dict[str, Any] = {}
    for h in hvis:
        for key in ("to_hv", "to_regret"):
            m = ss[h][key]["median"]
            out[f"{h} {key} >= 2x random"] = bool(ss[h][key].get("vs_random", 0) >= 2.0)
            out[f"{h} {key} best of Optuna"] = all(m < ss[o][key]["median"] for o in others)
    return out


def expand_shapes(shapes: Sequence[str]) -> list[str]:
    """``hard`` -> every draw of every hard shape; a bare hard-shape name -> its draws."""
    out: list[str] = []
    for s in shapes:
        names = HARD_SHAPES if s == "hard" else (s,)
        out += [f"{n}:{d}" for n in names for d in range(HARD_DRAWS)] if s == "hard" or (
            s in HARD_SHAPES) else [s]
    return out


def search_v2(quick: bool = False, table: Path = TABLE_V2, shapes: Sequence[str] = SHAPES,
              samplers: Sequence[str] = V2_SAMPLERS, seeds: Sequence[int] = range(10),
              n_trials: int = 120, caps: dict[str, tuple[int, int]] | None = None
              ) -> dict[str, Any]:
    base = load_v2(table)
    res: dict[str, Any] = {"table": rel(table), "n_trials": n_trials, "seeds": list(seeds),
                           "regret_target": REGRET_TARGET, "hv_share": HV_SHARE,
                           "shapes": {}}
    for shape in expand_shapes(shapes):
        r = evaluate_v2(reshape(base, shape), samplers, seeds, n_trials, caps)
        r["targets"] = targets_v2(r)
        res["shapes"][shape] = r
    return res


def run(quick: bool) -> dict[str, Any]:
    """--quick: hvi, hvi_noise, TPE (multivariate), random on the table and the control, 3
    seeds × 40 trials. Full: V2_SAMPLERS on every shape and every draw of the hard shapes,
    10 seeds × 120 trials (GPSampler and BoTorch: `python scripts/benchmarks/search.py
    --samplers gp,botorch ...`)."""
    if quick:
        return search_v2(shapes=("table", "control"),
                         samplers=("hvi", "hvi_noise", "tpe_mv", "random"), seeds=range(3),
                         n_trials=40)
    return search_v2(shapes=(*SHAPES, "hard"))


def _cell(s: dict[str, Any]) -> str:
    return f"{'>' if s['censored'] else ''}{s['median']:g} ({s['reached']})"


def show(r: dict[str, Any]) -> None:
    if "shapes" not in r:
        show_v1(r)
        return
    print(f"  {r['table']}: seeds {r['seeds']}, {r['n_trials']} trials; median trials over "
          f"seeds (seeds that reached it); '>' = the median seed did not")
    for shape, x in r["shapes"].items():
        print(f"  [{shape}] {x['candidates']} candidates, {x['cost_levels']} GFLOPs levels, "
              f"mean seed std {x['look_std']:.4f}")
        print(f"  {'sampler':10s} {'to 95% HV':>11s} {'vs rnd':>6s} {'to regret<=0.01':>15s} "
              f"{'vs rnd':>6s} {'HV@40':>6s} {'rg@40':>6s} {'rg@80':>6s} {'pick@40':>7s} "
              f"{'pick@end':>8s} {'rep':>5s} {'s/run':>6s}")
        for label, s in x["samplers"].items():
            print(f"  {label:10s} {_cell(s['to_hv']):>11s} "
                  f"{s['to_hv'].get('vs_random', float('nan')):>6.2f} "
                  f"{_cell(s['to_regret']):>15s} "
                  f"{s['to_regret'].get('vs_random', float('nan')):>6.2f} "
                  f"{s.get('hv_at_40', float('nan')):>6.3f} "
                  f"{s.get('regret_at_40', float('nan')):>6.4f} "
                  f"{s.get('regret_at_80', float('nan')):>6.4f} "
                  f"{s.get('pick_regret_at_40', float('nan')):>7.4f} "
                  f"{s['pick_regret_at_end']:>8.4f} {s['repeats_mean']:>5.1f} "
                  f"{s['s_per_run']:>6.1f}")
        bad = [k for k, v in x["targets"].items() if not v]
        print(f"  targets NOT met: {'; '.join(bad) if bad else 'none'}")
    show_families(r)


def families(r: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per shape family (the draws of a hard shape together; a plain shape alone) and
    sampler: the median over draws of the per-draw medians of trials to 95 % truth-HV and to
    regret <= 0.01, and the mean pick regret at 50 and 100 trials."""
    fam: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for shape, x in r["shapes"].items():
        for label, s in x["samplers"].items():
            fam.setdefault(shape.partition(":")[0], {}).setdefault(label, []).append(s)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for f, by in fam.items():
        out[f] = {}
        for label, ss in by.items():
            out[f][label] = {
                "draws": len(ss), "seeds": len(ss[0]["seeds"]),
                "to_hv": float(np.median([s["to_hv"]["median"] for s in ss])),
                "to_regret": float(np.median([s["to_regret"]["median"] for s in ss])),
                "pick_50": float(np.mean([s.get("pick_regret_at_50", np.nan) for s in ss])),
                "pick_100": float(np.mean([s.get("pick_regret_at_100", np.nan) for s in ss])),
                "censored_at": ss[0]["n_trials"]}
    return out


def show_families(r: dict[str, Any]) -> None:
    fam = families(r)
    if not any(":" in s for s in r["shapes"]):
        return
    print("  by shape family: median over draws of the median trials (n+1 = not reached), "
          "pick regret means")
    print(f"  {'shape':14s} {'sampler':12s} {'draws×seeds':>11s} {'to 95% HV':>9s} "
          f"{'to rg<=.01':>10s} {'pick@50':>8s} {'pick@100':>8s}")
    for f, by in fam.items():
        for label, v in by.items():
            print(f"  {f:14s} {label:12s} {v['draws']:>5d}×{v['seeds']:<5d} {v['to_hv']:>9g} "
                  f"{v['to_regret']:>10g} {v['pick_50']:>8.4f} {v['pick_100']:>8.4f}")


def _jsonable(r: Any) -> Any:
    if isinstance(r, dict):
        return {k: _jsonable(v) for k, v in r.items()}
    if isinstance(r, list | tuple):
        return [_jsonable(v) for v in r]
    if isinstance(r, np.ndarray):
        return [round(float(v), 5) for v in r]
    if isinstance(r, np.floating | np.integer):
        return r.item()
    return r


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os
    import sys

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--v1", action="store_true",
                    help="the v1 benchmark (benchmarks/tabular_dilation.csv, one seed)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samplers", default=",".join(V2_SAMPLERS),
                    help=f"v2 labels: {', '.join(V2_SAMPLERS)}, gp, botorch")
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help=f"{', '.join(SHAPES)}; hard shapes {', '.join(HARD_SHAPES)} (all "
                         f"{HARD_DRAWS} draws, or name:draw); 'hard' = every draw of each")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=120)
    ap.add_argument("--table", default=str(TABLE_V2))
    ap.add_argument("--json", default=None, help="also write the result (with every curve) here")
    a = ap.parse_args(argv)
    if a.v1:
        r = run_v1(a.quick)
    elif a.quick:
        r = run(True)
    else:
        r = search_v2(table=Path(a.table), shapes=a.shapes.split(","),
                      samplers=a.samplers.split(","), seeds=range(a.seeds), n_trials=a.trials)
    r["date"] = time.strftime("%Y-%m-%d %H:%M")
    r["load"] = os.getloadavg()[0]
    r["command"] = " ".join(["python", *sys.argv])
    show(r)
    if a.json:
        Path(a.json).write_text(json.dumps(_jsonable(r), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
