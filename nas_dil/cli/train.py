"""`nas-dil train --schedule 1,2,5,1,2,5 [--arch …] [--data synthetic|PATH] …`: one trial."""

from __future__ import annotations

import argparse
import sys

from nas_dil.cli._arch import parse_arch
from nas_dil.cli._common import format_table, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", required=True, help="dilation rates, e.g. 1,2,5,1,2,5")
    p.add_argument("--kernel", type=int, default=3, help="stack kernel size (odd)")
    p.add_argument("--arch", help="key=value,… (output_stride=8,width=32,context=true) or JSON")
    p.add_argument("--data", default="synthetic", help="'synthetic' or a data folder")
    p.add_argument("--layout", default="auto", choices=["auto", "folder", "voc", "cityscapes"])
    p.add_argument("--image-size", type=int, default=64, help="train crop side (px)")
    p.add_argument("--num-classes", type=int, default=None, help="default: read from the data")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="budget in epochs (default 6)")
    budget.add_argument("--steps", type=int, help="budget in optimiser steps")
    budget.add_argument("--seconds", type=float, help="budget in seconds of training")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:

    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.schedule import Schedule
    from nas_dil.train import TrainConfig, TrialConfig, TrialFailed, run_trial

    s = Schedule.parse(args.schedule, kernel=args.kernel)
    arch = ArchConfig.from_dict(parse_arch(args.arch))
    data = DataConfig(source=args.data, layout=args.layout, image_size=args.image_size,
                      num_classes=args.num_classes)
    budget = (
        {"epochs": None, "steps": args.steps} if args.steps
        else {"epochs": None, "seconds": args.seconds} if args.seconds
        else {"epochs": args.epochs or 6}
    )
    train = TrainConfig(**budget, batch_size=args.batch_size, lr=args.lr, device=args.device,
                        threads=args.threads)
    cfg = TrialConfig(arch=arch, data=data, train=train)

    # the bar starts on the first step, so a bad data folder fails before any bar is drawn
    show_bar = not args.quiet and not args.json
    bar = None

    def progress(step: int, total: int | None, info: dict) -> None:
        nonlocal bar
        if not show_bar:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(desc=f"train {s}", unit="step", total=total, file=sys.stderr,
                       dynamic_ncols=True)
        bar.update(step - bar.n)

    def on_eval(i: int, miou: float, partial: dict) -> bool:
        if bar is not None:
            bar.set_postfix(miou=f"{miou:.3f}", loss=f"{partial['loss_curve'][-1]:.3f}")
        return False

    try:
        result = run_trial(cfg, s, seed=args.seed, callback=on_eval, progress=progress)
    except TrialFailed as e:
        if bar is not None:
            bar.close()
            bar = None
        if args.json:
            print_json({"status": "fail", "reason": e.reason})
        print(f"nas-dil train: trial failed: {e.reason}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    d = result.to_dict()
    if args.json:
        print_json({"status": "complete", **d})
        return 0
    print(format_table(
        ["eval", "loss", "mIoU"],
        [(i + 1, f"{lo:.4f}", f"{m:.4f}")
         for i, (lo, m) in enumerate(zip(d["loss_curve"], d["miou_curve"], strict=True))],
    ))
    print(f"\nmIoU {d['miou']:.4f}  pixel acc {d['pixel_acc']:.4f}  per class "
          + " ".join("-" if v is None else f"{v:.3f}" for v in d["per_class_iou"]))
    print(f"RF {d['rf']} image px (stack {d['rf_stack']}), holes {d['holes']}, params "
          f"{d['params']:,}, {d['flops'] / 1e9:.4f} GFLOPs/image")
    print(f"{d['steps']} steps, {d['images_per_s']:.1f} images/s, wall {d['wall_time_s']:.1f} s "
          f"on {d['device']}, peak memory {d['peak_mem_bytes'] / 2**20:.0f} MiB "
          f"({d['peak_mem_kind']})")
    return 0
