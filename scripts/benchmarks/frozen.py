"""Frozen-backbone trials (issue 13 §2): a head-only trial on cached backbone features vs the
same head trained with the frozen backbone recomputed at every step (same data, epochs, seed,
`run_trial` both times); the cache build time, and after how many trials the cache has paid
for itself. Target >= 10x on a CPU."""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

from benchmarks._common import met


def run(quick: bool) -> dict[str, Any]:
    import torch

    from nas_dil.data import DataConfig, load_data
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig, resolve_device, run_trial
    from nas_dil.train.features import frozen_backbone, plan_features

    device = resolve_device("auto")
    backbone = "resnet18" if quick else "resnet50"
    size, n_train, n_val, epochs, views = (32, 64, 16, 2, 2) if quick else (64, 256, 64, 4, 2)
    schedule, seed = "1,2,3", 0
    load = os.getloadavg()
    data_cfg = DataConfig(image_size=size, n_train=n_train, n_val=n_val)
    data = load_data(data_cfg, device)
    arch = ArchConfig(backbone=backbone, target="head", output_stride=8, width=32,
                      num_classes=data.num_classes)
    train = TrainConfig(epochs=epochs, batch_size=16, lr=0.01, threads=1, device=str(device),
                        freeze="backbone", freeze_views=views)
    cfg = TrialConfig(arch, data_cfg, train)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="nas-dil-frozen-") as root:
        bb = frozen_backbone(arch, seed).to(device)
        plan = plan_features(cfg, seed, root, data=data, backbone=bb)
        t0 = time.perf_counter()
        cache = plan.open()
        build_s = time.perf_counter() - t0
        nbytes = cache.nbytes
        del bb, plan
        cached = run_trial(cfg, schedule, seed, data=data, feature_cache=root).result
        recomputed = run_trial(cfg, schedule, seed, data=data, feature_cache=False).result
    ratio = recomputed.wall_time_s / cached.wall_time_s
    saved = recomputed.wall_time_s - cached.wall_time_s
    return {
        "device": str(device),
        "torch": torch.__version__,
        "threads": 1,
        "cpus": os.cpu_count(),
        "load_avg_1m": [round(load[0], 2), round(os.getloadavg()[0], 2)],  # start, end
        "backbone": backbone,
        "image_size": size,
        "output_stride": 8,
        "n_train": n_train,
        "n_val": n_val,
        "epochs": epochs,
        "views": views,
        "head": schedule,
        "cache_mib": round(nbytes / 2**20, 1),
        "cache_build_s": round(build_s, 2),
        "cached_trial_s": round(cached.wall_time_s, 2),
        "cached_train_s": round(cached.train_time_s, 2),
        "recomputed_trial_s": round(recomputed.wall_time_s, 2),
        "recomputed_train_s": round(recomputed.train_time_s, 2),
        "ratio": round(ratio, 1),
        "train_ratio": round(recomputed.train_time_s / max(cached.train_time_s, 1e-9), 1),
        "pays_off_after_trials": math.ceil(build_s / saved) if saved > 0 else None,
        "miou_cached": round(cached.miou, 4),
        "miou_recomputed": round(recomputed.miou, 4),
        "quick": quick,  # smoke sizes: fixed costs dominate, the target is for the full run
        "target_met": None if quick else ratio >= 10,
    }


def show(r: dict[str, Any]) -> None:
    print(f"  {r['device']}, {r['backbone']} at {r['image_size']} px, output stride "
          f"{r['output_stride']}, {r['n_train']} + {r['n_val']} images, {r['epochs']} epochs, "
          f"{r['views']} views; load average {r['load_avg_1m'][0]} -> {r['load_avg_1m'][1]}")
    print(f"  cache: {r['cache_mib']} MiB built in {r['cache_build_s']} s")
    print(f"  trial on cached features {r['cached_trial_s']} s (training {r['cached_train_s']} "
          f"s) vs backbone recomputed every step {r['recomputed_trial_s']} s (training "
          f"{r['recomputed_train_s']} s) = {r['ratio']}x (target >= 10x "
          f"{'not judged: --quick sizes' if r['quick'] else met(r['target_met'])}); "
          f"training alone {r['train_ratio']}x")
    print(f"  the cache pays for itself after {r['pays_off_after_trials']} trial(s); mIoU "
          f"cached {r['miou_cached']}, recomputed {r['miou_recomputed']}")
