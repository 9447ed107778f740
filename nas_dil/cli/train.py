"""`nas-dil train --schedule 1,2,5,1,2,5 [--arch …] [--data synthetic|PATH] [--out DIR] …`:
one trial; ``--out`` saves the trained net as an export folder (`nas-dil eval` reads it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nas_dil._check import MAX_KERNEL, SEED, field_flag, flag_type
from nas_dil.cli._arch import parse_arch
from nas_dil.cli._common import format_table, int_flag, print_json
from nas_dil.data.config import DataConfig
from nas_dil.train.config import TrainConfig


def image_size(text: str) -> int | tuple[int, int]:
    """`64` or `48,64` (h,w) for --image-size."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SIDE or H,W in px") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"{text!r}: expected SIDE or H,W in px")


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    """The one budget given (its flag's type holds it to TrainConfig's range: 0, NaN and inf
    are refused, 0 used to fall back to 6 epochs)."""
    for name in ("epochs", "steps", "seconds"):
        v = getattr(args, name)
        if v is not None:
            return {"epochs": None, name: v}
    return {"epochs": 6}


def _train_flag(name: str) -> Any:
    return field_flag(TrainConfig, name, f"--{name.replace('_', '-')}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", required=True, help="dilation rates, e.g. 1,2,5,1,2,5")
    p.add_argument("--kernel", type=int_flag("--kernel", 1, MAX_KERNEL), default=3,
                   help="stack kernel size (odd)")
    p.add_argument("--arch", help="key=value,… (output_stride=8,width=32,context=true) or JSON")
    p.add_argument("--data", default="synthetic", help="'synthetic' or a data folder")
    p.add_argument("--layout", default="auto", choices=["auto", "folder", "voc", "cityscapes"])
    p.add_argument("--image-size", type=image_size, default=64, metavar="SIDE|H,W",
                   help="train crop: a side or H,W (px)")
    p.add_argument("--num-classes", type=field_flag(DataConfig, "num_classes", "--num-classes"),
                   default=None, help="default: read from the data")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=_train_flag("epochs"), help="budget in epochs (default 6)")
    budget.add_argument("--steps", type=_train_flag("steps"), help="budget in optimiser steps")
    budget.add_argument("--seconds", type=_train_flag("seconds"),
                        help="budget in seconds of training")
    p.add_argument("--batch-size", type=_train_flag("batch_size"), default=16)
    p.add_argument("--lr", type=_train_flag("lr"), default=3e-3)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=_train_flag("threads"), default=None,
                   help="torch CPU threads")
    p.add_argument("--cpus", type=_train_flag("cpus"), default=None,
                   help="CPUs to use: torch threads and data workers split them "
                        "(default: those this process may run on)")
    p.add_argument("--workers", type=field_flag(DataConfig, "workers", "--workers"), default=None,
                   help="data loading processes (default: from --cpus)")
    p.add_argument("--seed", type=flag_type(SEED, "--seed"), default=0,
                   help="training seed (default 0)")
    p.add_argument("--out", metavar="DIR",
                   help="save the trained net as an export folder (schedule.json + weights.pt)"
                        "; `nas-dil eval DIR --data …` measures it")
    p.add_argument("--force", action="store_true", help="with --out: replace an earlier export")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from nas_dil.data import DataConfig, load_data
    from nas_dil.models import ArchConfig
    from nas_dil.schedule import Schedule
    from nas_dil.train import TrainConfig, TrialConfig, TrialFailed, resolve_device, run_trial

    budget = _budget(args)
    s = Schedule.parse(args.schedule, kernel=args.kernel)
    arch = ArchConfig.from_dict(parse_arch(args.arch))
    data_cfg = DataConfig(source=args.data, layout=args.layout, image_size=args.image_size,
                          num_classes=args.num_classes, workers=args.workers)
    train = TrainConfig(**budget, batch_size=args.batch_size, lr=args.lr, device=args.device,
                        threads=args.threads, cpus=args.cpus)
    cfg = TrialConfig(arch=arch, data=data_cfg, train=train)
    if args.out:
        from nas_dil.export.bundle import check_export_dir

        check_export_dir(args.out, args.force)  # before training, not after it
    device = resolve_device(train.device)
    data = load_data(data_cfg, device)
    info = data.describe()
    if not args.json:
        # a class count read off the masks is worth a look: a stray value changes it
        if "masks" in str(info.get("classes_from", "")):
            print(f"data: {data.num_classes} classes from the {info['classes_from']}",
                  file=sys.stderr)
        for note in info.get("notes") or ():
            print(f"data: {note}", file=sys.stderr)

    # the bar starts on the first step, so a bad data folder fails before any bar is drawn
    show_bar = not args.quiet and not args.json
    bar = None

    def progress(step: int, total: int | None, _info: dict) -> None:
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
        outcome = run_trial(cfg, s, seed=args.seed, callback=on_eval, progress=progress,
                            data=data)
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
        data.close()
    d = outcome.result.to_dict()
    written = _save(args, outcome.model, d, info) if args.out else None
    if args.json:
        print_json({"status": "complete", **d, **({"out": written} if written else {})})
        return 0
    print(format_table(
        ["eval", "loss", "mIoU"],
        [(i + 1, f"{lo:.4f}", f"{m:.4f}")
         for i, (lo, m) in enumerate(zip(d["loss_curve"], d["miou_curve"], strict=True))],
    ))
    print(f"\nmIoU {d['miou']:.4f}  pixel acc {d['pixel_acc']:.4f}  per class "
          + " ".join("-" if v is None else f"{v:.3f}" for v in d["per_class_iou"]))
    dead = f", {d['dead_taps']} dead taps at the crop" if d.get("dead_taps") else ""
    print(f"RF {d['rf']} usable / {d['rf_nominal']} nominal image px (stack "
          f"{d['rf_stack']}){dead}, holes {d['holes']}, params "
          f"{d['params']:,}, {d['flops'] / 1e9:.4f} GFLOPs/image")
    print(f"{d['steps']} steps, {d['images_per_s']:.1f} images/s, wall {d['wall_time_s']:.1f} s "
          f"on {d['device']}, peak memory {d['peak_mem_bytes'] / 2**20:.0f} MiB "
          f"({d['peak_mem_kind']})")
    if written:
        print(f"written: {written} (nas-dil eval {written} --data DIR)")
    return 0


def _save(args: argparse.Namespace, model: Any, d: dict[str, Any], info: dict[str, Any]
          ) -> str:
    """The trained net as an export folder, through export's one writer."""
    from nas_dil.export.bundle import write_bundle
    from nas_dil.export.doc import ExportDoc
    from nas_dil.models import model_config

    keys = ("miou", "pixel_acc", "per_class_iou", "miou_curve", "loss_curve", "wall_time_s",
            "images_per_s", "peak_mem_bytes")
    cfg = d["config"]
    doc = ExportDoc(
        model_config=model_config(model),
        values={"miou": d["miou"], "rf": d["rf"], "gflops": d["flops"] / 1e9},
        metrics={k: d[k] for k in keys},
        rf=d["rf"], rf_stack=d["rf_stack"], holes=d["holes"],
        gridding_free=d["gridding_free"], macs=d["macs"], flops=d["flops"],
        gflops=d["flops"] / 1e9,
        class_names=tuple(info.get("class_names") or []),
        pick={"rule": "train", "reason": "trained by nas-dil train --out"},
        weights_note="weights of the trained net (nas-dil train --out)",
        provenance={"study": None, "storage": None, "trial": None, "seed": d["seed"],
                    "data": info, "trial_config": cfg, "node": d["node"]},
    )
    write_bundle(args.out, doc, model, force=args.force)
    return str(args.out)
