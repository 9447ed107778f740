"""Frozen-backbone trials (issue 13 §2): a head-only trial on cached backbone features vs the
same head trained with the frozen backbone recomputed at every step (same data, epochs, seed,
`run_trial` both times); the cache build time, and after how many trials the cache has paid
for itself. Target >= 10x on a CPU.

At scale (issue 22): bytes per image-view and mIoU of the full cache vs reduced ones
(`nas_dil.train.codec`: PCA and/or int8), 3 seeds, on the synthetic data and on a real-photo
VOC-layout folder; build throughput; the VOC-aug size estimate from the measured bytes; the
peak RSS of a build and a cached trial from 100 to 1,000 images. Target: <= 1/8 of the bytes
at <= 0.01 mIoU loss, VOC-aug <= 64 GB, RSS <= 1.3x."""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks._common import met
from benchmarks._frozen_scale import (
    fit_sample,
    peak_rss,
    photo_folder,
    reduced_copy,
    voc_aug_gib,
)

CODECS = ("pca256-int8", "pca512-int8")  # reduced caches measured: 1/16 and 1/8 of the bytes


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
                        freeze="backbone", freeze_views=views, freeze_cache="full")
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
    _log(f"speed-up {ratio:.1f}x (cached {cached.wall_time_s:.1f} s, recomputed "
         f"{recomputed.wall_time_s:.1f} s), build {build_s:.1f} s")
    scale = _scale(quick, device, backbone, size, n_train, n_val, epochs, views, schedule)
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
        "build_images_per_s": round((n_train * views + n_val) / build_s, 1),
        **scale,
    }


def _scale(quick: bool, device: Any, backbone: str, size: int, n_train: int, n_val: int,
           epochs: int, views: int, schedule: str) -> dict[str, Any]:
    """Full vs reduced caches over seeds on the synthetic data and the photo folder; the
    VOC-aug estimate; peak RSS (full run only)."""
    from pathlib import Path

    from nas_dil.data import DataConfig

    seeds = (0,) if quick else (0, 1, 2)
    codecs = ("pca64-int8",) if quick else CODECS
    out: dict[str, Any] = {"seeds": list(seeds), "codecs": list(codecs), "reduction": {}}
    with tempfile.TemporaryDirectory(prefix="nas-dil-reduce-") as tmp:
        photos = photo_folder(Path(tmp) / "photos", n_train, n_val, size + size // 4)
        for name, data_cfg in (
                ("synthetic", DataConfig(image_size=size, n_train=n_train, n_val=n_val)),
                ("photos", DataConfig(source=str(photos), layout="voc", image_size=size,
                                      num_classes=5, workers=0))):
            out["reduction"][name] = _reduction(data_cfg, device, backbone, epochs, views,
                                                schedule, seeds, codecs, Path(tmp) / name)
    syn = out["reduction"]["synthetic"]
    for key, lab in (("voc_aug_gib", syn["full"]["label_bytes_per_pixel"]),
                     ("voc_aug_gib_uint8_labels", 1)):
        out[key] = {c: voc_aug_gib(syn[c]["bytes_per_feature_pixel"], lab)
                    for c in ("full", *codecs)}
    out["rss"] = None if quick else peak_rss((100, 1000), backbone, size)
    _log(f"peak RSS {out['rss']}")
    return out


def _log(line: str) -> None:
    """Progress on stderr (stdout may be the --json document): a long run killed midway
    still leaves its figures."""
    import sys

    print(f"[frozen {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _first_view(cache: Any) -> tuple[list[Any], list[Any]]:
    """The stored training features and masks of view 0, as arrays: one of each in the
    single-file format (issue 13), one per shard in the sharded one (issue 22 §3)."""
    if hasattr(cache, "train"):
        return [x for x, _ in cache.train[0]], [y for _, y in cache.train[0]]
    n = cache.n_train
    return [cache.arrays["train_x"][:n]], [cache.arrays["train_y"][:n]]


def _reduction(data_cfg: Any, device: Any, backbone: str, epochs: int, views: int,
               schedule: str, seeds: tuple[int, ...], codecs: tuple[str, ...],
               root: Any) -> dict[str, Any]:
    """Per seed: the full cache built, a head trained on it, and on each codec's decoded copy
    (`reduced_copy`), same config and seed; per codec the bytes and mIoU over the seeds."""
    import shutil
    import statistics

    from nas_dil.data import load_data
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig, run_trial
    from nas_dil.train.codec import parse_codec
    from nas_dil.train.features import frozen_backbone, plan_features

    data = load_data(data_cfg, device)
    arch = ArchConfig(backbone=backbone, target="head", output_stride=8, width=32,
                      num_classes=data.num_classes)
    cfg = TrialConfig(arch, data_cfg, TrainConfig(
        epochs=epochs, batch_size=16, lr=0.01, threads=1, device=str(device),
        freeze="backbone", freeze_views=views, freeze_cache="full"))
    nviews = data.n_train * views
    miou: dict[str, list[float]] = {c: [] for c in ("full", *codecs)}
    rows: dict[str, dict[str, Any]] = {c: {} for c in miou}
    builds, fits = [], {c: 0.0 for c in codecs}
    for seed in seeds:
        plan = plan_features(cfg, seed, root / "full", data=data,
                             backbone=frozen_backbone(arch, seed).to(device))
        t0 = time.perf_counter()
        cache = plan.open()
        builds.append((nviews + data.n_val) / (time.perf_counter() - t0))
        _log(f"{root.name} seed {seed}: full cache built, {builds[-1]:.1f} images/s")
        miou["full"].append(run_trial(cfg, schedule, seed, data=data,
                                      feature_cache=root / "full").result.miou)
        x0, y0 = _first_view(cache)
        fpix = int(np.prod(x0[0].shape[2:]))
        fbytes = sum(int(x.nbytes) for x in x0)
        rows["full"] = {"bytes_per_view": fbytes / data.n_train,
                        "bytes_per_feature_pixel": fbytes / data.n_train / fpix,
                        "label_bytes_per_view": sum(int(y.nbytes) for y in y0) / data.n_train,
                        "label_bytes_per_pixel": y0[0].itemsize,
                        "channels": int(x0[0].shape[1]), "feature_hw": list(x0[0].shape[2:])}
        integrated = hasattr(cache, "codec")  # the sharded format stores by freeze_cache
        sample = None if integrated else fit_sample(cache)
        for c in codecs:
            n_all = nviews + data.n_val
            t0 = time.perf_counter()
            if integrated:  # the real reduced cache: fitted, encoded and stored by the build
                cfg_c = replace(cfg, train=replace(cfg.train, freeze_cache=c))
                red = plan_features(cfg_c, seed, root / c, data=data,
                                    backbone=frozen_backbone(arch, seed).to(device)).open()
                build_c = time.perf_counter() - t0
                stored = sum(int(x.nbytes) for x in _first_view(red)[0])
                row: dict[str, Any] = {"build_images_per_s": n_all / build_c}
            else:  # the full cache encoded and decoded by the codec, written back at fp16
                cfg_c = cfg
                codec = parse_codec(c).fit(sample)
                fits[c] += time.perf_counter() - t0
                info = reduced_copy(cache, codec, root / c)
                stored = info["stored"]["train_x"] // views
                row = {"encode_images_per_s": n_all / info["encode_s"],
                       "decode_images_per_s": n_all / info["decode_s"],
                       "fit_sample_pixels": int(sample.shape[0])}  # type: ignore[union-attr]
            miou[c].append(run_trial(cfg_c, schedule, seed, data=data,
                                     feature_cache=root / c).result.miou)
            _log(f"{root.name} seed {seed}: {c} mIoU {miou[c][-1]:.4f} (full "
                 f"{miou['full'][-1]:.4f}), {stored / data.n_train:.0f} B/view")
            rows[c] = {"bytes_per_view": stored / data.n_train,
                       "bytes_per_feature_pixel": stored / data.n_train / fpix, **row}
            shutil.rmtree(root / c)

    def spread(v: list[float]) -> list[float]:
        return [round(statistics.fmean(v), 4), round(statistics.stdev(v), 4) if len(v) > 1
                else 0.0]

    for c, r in rows.items():
        r["miou"] = [round(m, 4) for m in miou[c]]
        r["miou_mean_std"] = spread(miou[c])
        r["bytes_fraction"] = round(r["bytes_per_view"] / rows["full"]["bytes_per_view"], 4)
        if c != "full":
            loss = [f - m for f, m in zip(miou["full"], miou[c], strict=True)]
            r["loss_mean_std"] = spread(loss)
            r["fit_s"] = round(fits[c] / len(seeds), 2) if fits[c] else None
            r["target_met"] = (r["bytes_fraction"] <= 1 / 8 + 1e-9
                               and statistics.fmean(loss) <= 0.01)
    return {**rows, "build_images_per_s": round(statistics.fmean(builds), 1),
            "n_train": data.n_train, "n_val": data.n_val}


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
    print(f"  build {r['build_images_per_s']} images/s (full cache, {r['backbone']})")
    for name, red in r["reduction"].items():
        full = red["full"]
        print(f"  {name} ({red['n_train']} + {red['n_val']} images, {full['channels']} channels "
              f"at {full['feature_hw']}, seeds {r['seeds']}; build {red['build_images_per_s']} "
              f"images/s): features per image-view, mIoU mean ± std")
        for c in ("full", *r["codecs"]):
            row = red[c]
            m, sd = row["miou_mean_std"]
            line = (f"    {c:12s} {row['bytes_per_view'] / 1024:9.1f} KiB "
                    f"({row['bytes_fraction']:.4f} of full)  mIoU {m:.4f} ± {sd:.4f}")
            if c != "full":
                lm, ls = row["loss_mean_std"]
                line += (f"  loss {lm:+.4f} ± {ls:.4f}  " + (
                    f"build {row['build_images_per_s']:.1f} img/s" if "build_images_per_s" in row
                    else f"encode {row['encode_images_per_s']:.0f} img/s, decode "
                         f"{row['decode_images_per_s']:.0f} img/s, fit {row['fit_s']} s")
                         + f"  target (<= 1/8, <= 0.01) {met(row['target_met'])}")
            print(line)
    lab = r["reduction"]["synthetic"]["full"]["label_bytes_per_pixel"]
    print(f"  VOC-aug (10,582 images x 4 views at 512 px, OS 8, + 1,449 val) in GiB, labels "
          f"int{8 * lab} / uint8:")
    for c, g in r["voc_aug_gib"].items():
        g8 = r["voc_aug_gib_uint8_labels"][c]["total"]
        print(f"    {c:12s} {g['total']:8.1f} / {g8:8.1f}  (<= 64 GB = 59.6 GiB: "
              f"{met(g['total'] <= 64e9 / 2**30)} / {met(g8 <= 64e9 / 2**30)})")
    if r["rss"]:
        a, b = r["rss"][0], r["rss"][-1]
        print("  peak RSS, fresh process: " + "; ".join(
            f"{x['n_train']} images ({x['cache_mib']} MiB cache): build {x['build_mib']} MiB, "
            f"cached trial {x['trial_mib']} MiB" for x in r["rss"])
              + f"; ratio build {b['build_mib'] / a['build_mib']:.2f}x, trial "
              f"{b['trial_mib'] / a['trial_mib']:.2f}x (target <= 1.3x)")
