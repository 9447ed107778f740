"""`val_subset` / `val_size` against full validation: trained candidates ranked by their mIoU
on a seeded subset of the val images (or on downsized ones) against their ranking on all of
them, at full size: Kendall tau-b, top-1 / top-3 agreement, and evaluation time saved.

The embedded synthetic set is written to a folder of PNGs (images/, masks/, train.txt,
val.txt: the real folder path, lazily decoded), candidates of different schedules, depths and
widths are trained once each (`run_trial`, one torch thread), and each kept model is
evaluated once per val image (per-image confusion matrices). A subset's mIoU is then the sum
of its images' matrices, the images being those `FolderData` itself picks for that
`val_subset` and seed; that this equals a real `evaluate` of the subset is checked for every
candidate at one seed per size. Times are of real `evaluate` passes (full, each subset size,
each val_size), summed over the candidates.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import met

# Candidates: (name, rates, width). Too little RF, gridded, hole-free, HDC, shallow and deep,
# narrow and wide: output stride 4, stem_width 8 (the quickstart's net).
CANDIDATES: tuple[tuple[str, str, int], ...] = (
    ("small_rf", "1,1,1", 16),
    ("gridded", "3,3,3", 16),
    ("hole_free", "1,3,5", 16),
    ("constant2", "2,2,2,2,2,2", 16),
    ("hdc", "1,2,5,1,2,5", 16),
    ("shallow", "1,1", 16),
    ("step123", "1,2,3", 16),
    ("gridded2", "2,2,4", 16),
    ("wide125", "1,2,5", 32),
    ("narrow125", "1,2,5", 8),
    ("deep_small", "1,1,1,1,1", 16),
    ("two_rates", "2,4", 24),
)


@dataclass(frozen=True)
class Plan:
    """Sizes of one run (the full measurement, or --quick's smoke run)."""

    side: int  # px, side of the square images written to the folder (val is evaluated at it)
    crop: int  # px, training crop (DataConfig.image_size)
    n_train: int  # training images
    n_val: int  # validation images (the "full validation")
    steps: int  # optimiser steps per candidate (batch 16)
    candidates: int  # the first this many of CANDIDATES
    subsets: tuple[int, ...]  # val_subset sizes
    seeds: int  # subset seeds per size (DataConfig.seed 0..seeds-1: the pick only, the
    # split comes from train.txt / val.txt)
    val_sizes: tuple[int, ...]  # val_size variants (longer side, px), on all val images


FULL = Plan(side=64, crop=48, n_train=512, n_val=384, steps=384, candidates=12,
            subsets=(16, 32, 64, 128), seeds=20, val_sizes=(48, 32))
QUICK = Plan(side=32, crop=24, n_train=32, n_val=24, steps=3, candidates=4,
             subsets=(4, 8), seeds=3, val_sizes=(24,))


def kendall_tau_b(x: Any, y: Any) -> float:
    """Kendall's tau-b of two paired samples (ties in either adjusted for); nan when either
    is constant. O(n^2) pairs: meant for tens of candidates."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"kendall_tau_b: need two 1-D samples of equal length, "
                         f"got shapes {a.shape} and {b.shape}")
    i, j = np.triu_indices(len(a), 1)
    sx, sy = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    # pairs tied in x (sx == 0) or in y add nothing to concordant - discordant; the
    # denominator counts the pairs not tied in x and those not tied in y
    den = np.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy)))
    return float(np.sum(sx * sy) / den) if den > 0 else float("nan")


def top_k(scores: np.ndarray, k: int) -> set[int]:
    """Indices of the k highest scores (ties broken by index, as a stable sort does)."""
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def write_folder(root: Path, plan: Plan, seed: int = 0) -> Path:
    """The synthetic set as a plain-layout folder: PNG images and masks, split lists."""
    from PIL import Image

    from nas_dil.data.synthetic import CLASS_NAMES, render

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names: dict[str, list[str]] = {}
    for split, n in (("train", plan.n_train), ("val", plan.n_val)):
        x, y = render(n, plan.side, seed, split)
        imgs = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        masks = y.numpy().astype(np.uint8)
        names[split] = [f"{split}_{i:04d}" for i in range(n)]
        for stem, img, mask in zip(names[split], imgs, masks, strict=True):
            Image.fromarray(img).save(root / "images" / f"{stem}.png")
            Image.fromarray(mask, mode="L").save(root / "masks" / f"{stem}.png")
        (root / f"{split}.txt").write_text("\n".join(names[split]) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return root


def per_image_confusion(model: Any, data: Any, batch_size: int = 32) -> np.ndarray:
    """(n_val, C, C) confusion matrices (rows truth), one per val image in `data.val` order."""
    import torch

    c = data.num_classes
    shapes = data.val_shapes()
    # val_batches groups equal sizes in order of first appearance: undo that order
    order = [i for hw in dict.fromkeys(shapes) for i, s in enumerate(shapes) if s == hw]
    out = np.zeros((len(shapes), c, c), np.int64)
    k = 0
    model.eval()
    with torch.no_grad():
        for images, masks in data.val_batches(batch_size):
            pred = model(images).argmax(1)
            n = images.shape[0]
            keep = masks != data.ignore_index
            img_idx = torch.arange(n).view(n, 1, 1).expand_as(masks)
            flat = (img_idx * c * c + masks * c + pred)[keep]
            conf = torch.bincount(flat, minlength=n * c * c).view(n, c, c).numpy()
            out[order[k:k + n]] = conf
            k += n
    return out


def _miou(conf: np.ndarray) -> float:
    from nas_dil.train.metrics import scores_from_confusion

    miou = scores_from_confusion(conf)["miou"]
    assert isinstance(miou, float)
    return miou


def _timed_eval(model: Any, data: Any, repeats: int = 2) -> tuple[float, float]:
    """(mIoU, seconds) of a real `evaluate` pass over data's val split, best of `repeats`
    (the machine is shared: the shortest pass is the least disturbed)."""
    import torch

    from nas_dil.train import evaluate

    best, miou = float("inf"), float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        miou = float(evaluate(model, data, 32, torch.device("cpu"), False)["miou"])
        best = min(best, time.perf_counter() - t0)
    return miou, best


def agreement(full: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How a ranking by `other` agrees with the ranking by `full` (both mIoU per candidate):
    Kendall tau-b over all candidates and over the better half by `full` (the close ones a
    search ends up comparing), whether the best (top-1) and the best three (top-3) agree, and
    the regret: full-validation mIoU lost by keeping `other`'s best instead of the true best."""
    k = min(3, len(full))
    half = np.argsort(-full, kind="stable")[: max(2, len(full) // 2)]
    return {"tau": kendall_tau_b(full, other),
            "tau_top_half": kendall_tau_b(full[half], other[half]),
            "top1": float(top_k(full, 1) == top_k(other, 1)),
            "top3": len(top_k(full, k) & top_k(other, k)) / k,
            "regret": float(full.max() - full[int(np.argmax(other))])}


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    def col(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows])

    return {"tau_mean": round(float(np.mean(col("tau"))), 3),
            "tau_min": round(float(np.min(col("tau"))), 3),
            "tau_max": round(float(np.max(col("tau"))), 3),
            "tau_top_half_mean": round(float(np.mean(col("tau_top_half"))), 3),
            "tau_top_half_min": round(float(np.min(col("tau_top_half"))), 3),
            "top1_rate": round(float(np.mean(col("top1"))), 3),
            "top3_overlap": round(float(np.mean(col("top3"))), 3),
            "regret_mean": round(float(np.mean(col("regret"))), 4),
            "regret_max": round(float(np.max(col("regret"))), 4)}


def measure(plan: Plan, root: Path) -> dict[str, Any]:
    import torch

    from nas_dil.data import DataConfig
    from nas_dil.data.folders import FolderData
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig, run_trial

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    write_folder(root, plan)
    write_s = time.perf_counter() - t0
    base = DataConfig(source=str(root), layout="folder", image_size=plan.crop, workers=0)
    full = FolderData(base)
    n_val = full.n_val
    stems = [p.stem for p in full.val]
    # the trial's own evaluation: one image (each model is evaluated below, on every variant)
    train_data = FolderData(replace(base, val_subset=1))
    train = TrainConfig(epochs=None, steps=plan.steps, eval_every_steps=plan.steps,
                        batch_size=16, lr=0.01, threads=1, device="cpu")

    cands = CANDIDATES[: plan.candidates]
    models, trained = [], []
    for name, rates, width in cands:
        cfg = TrialConfig(arch=ArchConfig(output_stride=4, stem_width=8, width=width),
                          data=train_data.cfg, train=train)
        outcome = run_trial(cfg, rates, seed=0, data=train_data)
        r = outcome.result
        models.append(outcome.model)
        trained.append({"name": name, "rates": rates, "width": width,
                        "train_s": round(r.wall_time_s, 1)})
        print(f"  trained {name} ({rates}, width {width}) in {r.wall_time_s:.0f} s",
              file=sys.stderr, flush=True)  # progress: the full run takes minutes
    train_s = time.perf_counter() - t0 - write_s

    # full validation, once per image, and real passes (best of 2) for its time
    confs = [per_image_confusion(m, full) for m in models]
    full_miou = np.array([_miou(c.sum(0)) for c in confs])
    full_eval = [_timed_eval(m, full) for m in models]
    exact = all(abs(a - b) < 1e-12 for a, (b, _) in zip(full_miou, full_eval, strict=True))
    t_full = sum(t for _, t in full_eval)
    for row, miou in zip(trained, full_miou, strict=True):
        row["miou_full"] = round(float(miou), 4)

    subsets: dict[str, Any] = {}
    for n in plan.subsets:
        if n >= n_val:
            continue
        rows, t_sub = [], 0.0
        for seed in range(plan.seeds):
            picked = FolderData(replace(base, val_subset=n, seed=seed))
            idx = [stems.index(p.stem) for p in picked.val]
            sub = np.array([_miou(c[idx].sum(0)) for c in confs])
            rows.append(agreement(full_miou, sub))
            if seed == 0:  # the summed matrices against real evaluations of the subset
                real = [_timed_eval(m, picked) for m in models]
                exact &= all(abs(a - b) < 1e-12 for a, (b, _) in zip(sub, real, strict=True))
                t_sub = sum(t for _, t in real)
        subsets[str(n)] = {**_summary(rows), "eval_s": round(t_sub, 2),
                           "time_saved": round(1 - t_sub / t_full, 3)}

    sizes: dict[str, Any] = {}
    for px in plan.val_sizes:
        small = FolderData(replace(base, val_size=px))
        real = [_timed_eval(m, small) for m in models]
        t_small = sum(t for _, t in real)
        agree = agreement(full_miou, np.array([m for m, _ in real]))
        sizes[str(px)] = {**{k: round(v, 4) for k, v in agree.items()},
                          "eval_s": round(t_small, 2),
                          "time_saved": round(1 - t_small / t_full, 3)}
    for d in (full, train_data):
        d.close()
    return {
        "torch": torch.__version__, "threads": 1, "image_side": plan.side, "crop": plan.crop,
        "n_train": plan.n_train, "n_val": n_val, "steps": plan.steps, "seeds": plan.seeds,
        "candidates": trained, "miou_spread": round(float(np.ptp(full_miou)), 4),
        "full_eval_s": round(t_full, 2), "subsets": subsets, "val_sizes": sizes,
        "summed_equals_evaluate": bool(exact), "write_s": round(write_s, 1),
        "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
    }


def recommend(r: dict[str, Any], floor: float = 0.8) -> int | None:
    """The smallest subset whose worst seed still ranks with tau >= `floor`, over all
    candidates and over the better half (None: none does)."""
    ok = [int(n) for n, s in r["subsets"].items()
          if min(s["tau_min"], s["tau_top_half_min"]) >= floor]
    return min(ok) if ok else None


def run(quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="nas-dil-valsub-") as tmp:
        r = measure(plan, Path(tmp) / "data")
    r["recommended_min_subset"] = recommend(r)
    return r


def show(r: dict[str, Any]) -> None:
    print(f"  {len(r['candidates'])} candidates, {r['steps']} steps each, {r['n_val']} val "
          f"images at {r['image_side']} px; full-val mIoU spread {r['miou_spread']}; "
          f"full evaluation {r['full_eval_s']} s (all candidates)")
    for c in r["candidates"]:
        print(f"    {c['name']:11s} {c['rates']:12s} width {c['width']:2d}: "
              f"mIoU {c['miou_full']:.4f}")
    for n, s in r["subsets"].items():
        print(f"  val_subset {n:>4s}: tau {s['tau_mean']:+.3f} (min {s['tau_min']:+.3f}, "
              f"{r['seeds']} seeds), better half {s['tau_top_half_mean']:+.3f}, top-1 "
              f"{s['top1_rate']:.2f}, top-3 {s['top3_overlap']:.2f}, regret "
              f"{s['regret_mean']:.4f} (max {s['regret_max']:.4f}), eval time saved "
              f"{s['time_saved']:.0%}")
    for px, s in r["val_sizes"].items():
        print(f"  val_size  {px:>4s}: tau {s['tau']:+.3f}, better half {s['tau_top_half']:+.3f}, "
              f"top-1 {s['top1']:.0f}, top-3 {s['top3']:.2f}, regret {s['regret']:.4f}, "
              f"eval time saved {s['time_saved']:.0%}")
    print(f"  summed per-image matrices equal real evaluate(): "
          f"{met(r['summed_equals_evaluate'])}; smallest subset whose worst seed has tau >= 0.8 "
          f"(all and better half): "
          f"{r['recommended_min_subset']}")
