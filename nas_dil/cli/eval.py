"""`nas-dil eval EXPORT_DIR --data DIR [--layout …] [--split val|all] [--scales 0.75,1,1.25]
[--flip] [--slide H,W [--stride H,W]] [--json]`: mIoU, per-class IoU and pixel accuracy of an
exported net (from `nas-dil export` or `nas-dil train --out`) on a held-out data folder."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nas_dil._check import field_flag
from nas_dil.cli._common import format_table, print_json
from nas_dil.cli.train import hw_pair
from nas_dil.data.config import DataConfig
from nas_dil.errors import UserError
from nas_dil.train.config import TrainConfig

LAYOUTS = ["auto", "folder", "voc", "cityscapes"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("export_dir", metavar="EXPORT_DIR",
                   help="a folder written by `nas-dil export` or `nas-dil train --out`")
    p.add_argument("--data", required=True, metavar="DIR", help="the data folder to measure on")
    p.add_argument("--layout", default="auto", choices=LAYOUTS)
    p.add_argument("--split", default="val", choices=["val", "all"],
                   help="val: the held-out split (its list may name every image); all: every "
                        "image of the folder")
    p.add_argument("--scales", default="1", metavar="S,S,…",
                   help="test-time scales, probabilities averaged (e.g. 0.75,1,1.25)")
    p.add_argument("--flip", action="store_true", help="also average the mirrored image")
    p.add_argument("--slide", type=hw_pair, metavar="H,W",
                   help="sliding windows of H,W px, logits averaged where they overlap "
                        "(default: whole images)")
    p.add_argument("--stride", type=hw_pair, metavar="H,W",
                   help="--slide: window step (default 2/3 of the window)")
    p.add_argument("--val-size", type=field_flag(DataConfig, "val_size", "--val-size"),
                   default=None, metavar="PX",
                   help="resize images to this longer side first (default: full size)")
    p.add_argument("--ignore-index", default=255, help="label that counts for nothing",
                   type=field_flag(DataConfig, "ignore_index", "--ignore-index"))
    p.add_argument("--batch-size", default=8,
                   type=field_flag(TrainConfig, "val_batch_size", "--batch-size"))
    p.add_argument("--max-batch-pixels", default=16 * 512 * 512,
                   type=field_flag(TrainConfig, "max_batch_pixels", "--max-batch-pixels"),
                   help="cap on images × H × W in one batch (one image at least)")
    p.add_argument("--backbone-weights", metavar="FILE",
                   help="an export of a frozen backbone's head: the backbone's weights file "
                        "here (default: the path recorded; its tensors must be the same)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--cpus", type=field_flag(TrainConfig, "cpus", "--cpus"), default=None,
                   help="CPUs to use (threads + workers)")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from nas_dil.data import DataConfig, load_data
    from nas_dil.export import load_exported, read_export
    from nas_dil.train import cpu_plan, evaluate_model, parse_scales, resolve_device

    scales = parse_scales(args.scales)
    if args.stride is not None and args.slide is None:
        raise UserError(f"--stride {','.join(map(str, args.stride))}: needs --slide H,W")
    doc = read_export(args.export_dir)
    model = load_exported(args.export_dir, require_weights=True,
                          backbone_weights=args.backbone_weights)
    n_classes = int(doc["arch"]["num_classes"])
    device = resolve_device(args.device)
    cfg = DataConfig(source=args.data, layout=args.layout, num_classes=n_classes,
                     ignore_index=args.ignore_index, val_size=args.val_size)
    data = load_data(cfg, device, split=args.split)
    threads, workers = cpu_plan(args.cpus, None, device.type == "cuda", data.loads_lazily, None)
    if threads is not None:
        torch.set_num_threads(threads)
    data.configure(workers=workers, pin_memory=device.type == "cuda",
                   max_batch_pixels=args.max_batch_pixels)
    model = model.to(device)
    bar = None
    if not args.quiet and not args.json:
        from tqdm import tqdm

        bar = tqdm(total=data.n_val, desc=f"eval {args.split}", unit="img", file=sys.stderr,
                   dynamic_ncols=True)
    try:
        scores = evaluate_model(model, data, device=device, scales=scales, flip=args.flip,
                                batch_size=args.batch_size, autocast=False,
                                slide=args.slide, stride=args.stride,
                                progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
        data.close()
    names = list(doc.get("class_names") or []) or list(data.class_names)
    out: dict[str, Any] = {
        "export": str(args.export_dir), "data": data.describe(), "split": args.split,
        "schedule": doc["schedule"], **scores, "class_names": names,
    }
    if args.json:
        print_json(out)
        return 0
    rows = [(i, names[i] if i < len(names) else f"class_{i}", "-" if v is None else f"{v:.4f}")
            for i, v in enumerate(scores["per_class_iou"])]
    print(format_table(["class", "name", "IoU"], rows))
    tta = f"scales {','.join(map(str, scales))}" + (" + flip" if args.flip else "") + (
        f"; windows {args.slide[0]}x{args.slide[1]}" if args.slide else "")
    print(f"\nmIoU {scores['miou']:.4f}  pixel acc {scores['pixel_acc']:.4f}  on "
          f"{scores['images']} images ({args.split} of {data.describe()['source']}; {tta})")
    return 0
