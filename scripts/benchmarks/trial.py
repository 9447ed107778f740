"""Training throughput (images/s) inside `run_trial` vs a plain hand-written PyTorch loop over
the same net, data and steps, interleaved rounds, best of each. Target >= 0.97x."""

from __future__ import annotations

import time
from typing import Any

from benchmarks._common import met


def run(quick: bool) -> dict[str, Any]:
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
        return run_trial(cfg, schedule, seed=0, data=data).result.images_per_s

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


def show(r: dict[str, Any]) -> None:
    print(f"  {r['device']}: trial {r['trial_images_per_s']} img/s vs plain loop "
          f"{r['plain_images_per_s']} img/s = {r['ratio']}x (target >= 0.97x "
          f"{met(r['target_met'])})")
