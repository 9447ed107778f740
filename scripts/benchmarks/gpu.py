"""CUDA only (else "skipped: no CUDA device"): img/s and model-FLOP utilisation of one trial,
and the throughput of k trials packed on one GPU vs one at a time."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

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
    r = run_trial(cfg, "1,2,5,1,2,5", seed=seed).result
    return {"images": float(r.train_images), "train_time_s": r.train_time_s,
            "images_per_s": r.images_per_s, "flops": float(r.flops)}


def run(quick: bool) -> dict[str, Any]:
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


def show(r: dict[str, Any]) -> None:
    if "skipped" in r:
        print(f"  skipped: {r['skipped']}")
        return
    print(f"  {r['device']}: {r['trial_images_per_s']} img/s, {r['achieved_tflops']} TFLOP/s, "
          f"MFU {r['mfu']}")
    for p in r["packing"]:
        print(f"  k={p['k']}: packed {p['packed_images_per_s']} img/s vs one at a time "
              f"{p['sequential_images_per_s']} img/s = {p['speedup']}x")
