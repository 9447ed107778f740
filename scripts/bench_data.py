#!/usr/bin/env python
"""Data-path benchmark (issue 14 §1): memory of a trial against data-set size, loading
throughput against a plain DataLoader on the same folder, and the node-local cache.

    .venv/bin/python scripts/bench_data.py [--sizes 100,1000] [--workers 1] [--quick] [--json]

It writes a VOC-like folder of photo-sized images (500x375 JPEG, smooth random content;
palette-free PNG masks with 21 classes and ignore borders) under --root (default a temporary
folder), then:

  memory      one short trial (fixed steps, the same val_subset) per data-set size, each in
              a fresh process; peak RSS of the whole process tree (trial + DataLoader workers
              + forkserver), sampled every 50 ms. Target: largest / smallest <= 1.3.
  throughput  images/s of `FolderData.train_batches` (lazy decode, random crop + flip,
              normalised float batches) vs a plain hand-written Dataset + DataLoader doing
              the same decode/crop/flip/normalise with the same workers, batch and folder;
              interleaved rounds, best of each. Target: ratio >= 0.9.
  cache       the same loading with `cache = "auto"` (built once beforehand: its build time
              is reported), and the wall time of a short trial with and without it.

Numbers from a shared 2-core machine are noisy; the ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
H, W = 375, 500  # a typical VOC photograph
CROP = 256
BATCH = 8


# --- the folder -----------------------------------------------------------------------------

def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """n image/mask pairs in the plain layout; reused if already there."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img_p, mask_p = root / "images" / f"{i:05d}.jpg", root / "masks" / f"{i:05d}.png"
        if img_p.is_file() and mask_p.is_file():
            continue
        low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((W, H), Image.Resampling.BICUBIC)
        noise = rng.integers(0, 24, (H, W, 3), dtype=np.uint8)
        img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
        img.save(img_p, quality=90)
        lab = rng.integers(0, 21, (6, 8), dtype=np.uint8)
        mask = np.asarray(Image.fromarray(lab).resize((W, H), Image.Resampling.NEAREST)).copy()
        mask[:, ::97] = 255  # VOC-like ignore borders
        Image.fromarray(mask, mode="L").save(mask_p)
    (root / "classes.txt").write_text("\n".join(f"c{i}" for i in range(21)) + "\n")
    return root


def subset(src: Path, n: int, dst: Path) -> Path:
    """A folder with the first n pairs of src (symlinks: no copy)."""
    for d in ("images", "masks"):
        (dst / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for d, ext in (("images", "jpg"), ("masks", "png")):
            link = dst / d / f"{i:05d}.{ext}"
            if not link.exists():
                link.symlink_to(src / d / f"{i:05d}.{ext}")
    (dst / "classes.txt").write_text((src / "classes.txt").read_text())
    return dst


# --- memory: a trial in a fresh process ---------------------------------------------------------

def _trial_main(root: str, workers: int, steps: int, cache: str) -> None:
    """Child: one short trial on root; prints its result as JSON."""
    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig, run_trial

    cfg = TrialConfig(
        arch=ArchConfig(output_stride=8, stem_width=16, width=16),
        data=DataConfig(source=root, image_size=CROP, val_subset=24, workers=workers,
                        cache=cache),
        train=TrainConfig(epochs=None, steps=steps, eval_every_steps=steps, batch_size=BATCH,
                          val_batch_size=8, threads=1, device="cpu"))
    r = run_trial(cfg, "1,2,5,1,2,5", seed=0).result
    print(json.dumps({"wall_s": r.wall_time_s, "images_per_s": r.images_per_s,
                      "miou": r.miou, "self_peak_rss": r.peak_mem_bytes}))


def _tree_rss(pid: int) -> int:
    """RSS of pid and all its descendants (Linux /proc; shared pages counted per process,
    so this over-states, never under-states, what the tree holds)."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in (d / "status").read_text().splitlines()
                          if ":" in line)
        except OSError:
            continue
        parent[int(d.name)] = int(fields.get("PPid", "0"))
        rss[int(d.name)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    return sum(rss.get(p, 0) for p in tree)


def run_trial_measured(root: Path, workers: int, steps: int, cache: str = "") -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, __file__, "_trial", str(root), str(workers), str(steps), cache],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"trial on {root} failed: {err.strip()[-2000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "tree_peak_rss": peak}


# --- throughput: ours vs a plain DataLoader -----------------------------------------------------

class PlainSet:
    """What one would write by hand: decode, random crop (pad when small), flip."""

    def __init__(self, items: list[Any]) -> None:
        self.images = [it.image_path for it in items]
        self.masks = [it.mask_path for it in items]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        import torch
        from PIL import Image

        img = np.asarray(Image.open(self.images[i]).convert("RGB"))
        mask = np.asarray(Image.open(self.masks[i]))
        rng = np.random.default_rng(i)
        h, w = mask.shape
        y0 = int(rng.integers(0, max(0, h - CROP) + 1))
        x0 = int(rng.integers(0, max(0, w - CROP) + 1))
        out = np.full((CROP, CROP, 3), 124, np.uint8)
        lab = np.full((CROP, CROP), 255, np.int32)
        ch, cw = min(CROP, h - y0), min(CROP, w - x0)
        out[:ch, :cw] = img[y0:y0 + ch, x0:x0 + cw]
        lab[:ch, :cw] = mask[y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.5:
            out, lab = out[:, ::-1], lab[:, ::-1]
        return torch.from_numpy(out.copy()), torch.from_numpy(lab.copy())


def _normalise(x: Any) -> Any:
    from nas_dil.data.base import normalise

    return normalise(x.permute(0, 3, 1, 2).float().div_(255)).contiguous()


def throughput(root: Path, workers: int, n_batches: int, rounds: int) -> dict[str, Any]:
    import torch

    from nas_dil.data import DataConfig, load_data
    from nas_dil.data.loader import mp_context

    ours = load_data(DataConfig(source=str(root), image_size=CROP, workers=workers))
    cached = load_data(DataConfig(source=str(root), image_size=CROP, workers=workers,
                                  cache="auto"))
    kw: dict[str, Any] = {}
    if workers:
        kw = {"multiprocessing_context": mp_context(), "persistent_workers": True}
    # the same training split as ours, so both epochs have the same length
    plain = torch.utils.data.DataLoader(PlainSet(ours.train), batch_size=BATCH, shuffle=True,
                                        num_workers=workers, drop_last=True, **kw)

    def run_ours(data: Any, epoch: int) -> float:
        t0 = time.perf_counter()
        n = 0
        for n, (x, _) in enumerate(data.train_batches(BATCH, epoch, 0), 1):
            float(x[0, 0, 0, 0])
            if n >= n_batches:
                break
        return n * BATCH / (time.perf_counter() - t0)

    def run_plain() -> float:
        t0 = time.perf_counter()
        n = 0
        for n, (x, _) in enumerate(plain, 1):
            float(_normalise(x)[0, 0, 0, 0])
            if n >= n_batches:
                break
        return n * BATCH / (time.perf_counter() - t0)

    # warm-up: start every worker pool once, outside the timing
    run_ours(ours, 99)
    run_ours(cached, 99)
    run_plain()
    best = {"ours": 0.0, "plain": 0.0, "cached": 0.0}
    for r in range(rounds):  # interleaved, so drifts of a shared machine hit all three
        best["plain"] = max(best["plain"], run_plain())
        best["ours"] = max(best["ours"], run_ours(ours, r))
        best["cached"] = max(best["cached"], run_ours(cached, r))
    ours.close()
    cached.close()
    return {"images_per_s": best, "ratio_ours_vs_plain": best["ours"] / best["plain"],
            "ratio_cached_vs_ours": best["cached"] / best["ours"],
            "batches": n_batches, "rounds": rounds, "workers": workers}


def build_cache(root: Path) -> dict[str, Any]:
    from nas_dil.data import DataConfig, load_data

    t0 = time.perf_counter()
    data = load_data(DataConfig(source=str(root), image_size=CROP, cache="auto"))
    return {"build_s": time.perf_counter() - t0, **(data.describe()["cache"] or {})}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_trial":
        _trial_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000", help="data-set sizes (images)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    ap.add_argument("--steps", type=int, default=20, help="training steps of each trial")
    ap.add_argument("--root", help="where to write the data folder (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="fewer batches and rounds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    base = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="bench-data-"))
    os.environ.setdefault("NAS_DIL_CACHE", str(base / "cache"))
    t0 = time.perf_counter()
    full = make_folder(base / "full", sizes[-1])
    gen_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "scripts/bench_data.py " + " ".join(sys.argv[1:]),
        "image": f"{W}x{H} JPEG + PNG mask", "crop": CROP, "batch": BATCH,
        "generate_s": gen_s, "memory": [],
    }
    for n in sizes:
        root = full if n == sizes[-1] else subset(full, n, base / f"n{n}")
        r = run_trial_measured(root, args.workers, args.steps)
        out["memory"].append({"images": n, **r})
    peaks = [m["tree_peak_rss"] for m in out["memory"]]
    out["memory_ratio"] = peaks[-1] / peaks[0]
    small = base / f"n{sizes[0]}" if len(sizes) > 1 else full
    mid_n = min(sizes[-1], 300)  # big enough that an epoch's start-up is a small share
    mid = full if mid_n == sizes[-1] else subset(full, mid_n, base / f"n{mid_n}")
    out["cache_build"] = build_cache(mid)
    out["throughput"] = {"images": mid_n, **throughput(mid, args.workers, 10 if args.quick
                                                       else 30, 2 if args.quick else 4)}
    out["cache_trial"] = {
        "build_s": build_cache(small)["build_s"],
        "plain": run_trial_measured(small, args.workers, args.steps),
        "cached": run_trial_measured(small, args.workers, args.steps, cache="auto"),
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{out['date']}  {out['machine']}  {out['command']}")
    for m in out["memory"]:
        print(f"memory  {m['images']:5d} images: tree peak RSS {m['tree_peak_rss'] / 2**20:7.0f}"
              f" MiB (trial process {m['self_peak_rss'] / 2**20:.0f} MiB), wall "
              f"{m['wall_s']:.1f} s, {m['images_per_s']:.1f} img/s")
    print(f"memory  ratio {sizes[-1]}/{sizes[0]} images: {out['memory_ratio']:.3f}  "
          "(target <= 1.3)")
    t = out["throughput"]
    rates = "  ".join(f"{k} {v:.1f}" for k, v in t["images_per_s"].items())
    print(f"loading ({t['images']} images, {t['workers']} workers) images/s  {rates}  "
          f"ours/plain {t['ratio_ours_vs_plain']:.2f} (target >= 0.9)  cached/ours "
          f"{t['ratio_cached_vs_ours']:.2f}")
    c, ct = out["cache_build"], out["cache_trial"]
    print(f"cache   build {c['build_s']:.1f} s for {mid_n} images, "
          f"{c.get('bytes', 0) / 2**20:.0f} MiB; short trial on {sizes[0]} images: wall "
          f"{ct['plain']['wall_s']:.1f} s plain vs {ct['cached']['wall_s']:.1f} s cached "
          f"(cache built beforehand in {ct['build_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
