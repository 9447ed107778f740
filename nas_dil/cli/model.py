"""`nas-dil model --schedule 1,2,5 [--arch …] [--size 64] [--json]`: layers, params, FLOPs, RF."""

from __future__ import annotations

import argparse

from nas_dil._check import MAX_KERNEL, field_flag
from nas_dil.cli._arch import parse_arch
from nas_dil.cli._common import (
    add_variant_args,
    format_table,
    int_flag,
    parse_size,
    print_json,
    schedule_from_args,
)
from nas_dil.models.config import ArchConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", required=True, help="dilation rates, e.g. 1,2,5,1,2,5")
    p.add_argument("--kernel", type=int_flag("--kernel", 1, MAX_KERNEL), default=3,
                   help="stack kernel size (odd)")
    add_variant_args(p)
    p.add_argument("--arch", help="key=value,… (output_stride=8,width=32,context=true) or JSON")
    p.add_argument("--size", default="64", metavar="H[,W]",
                   help="input size in pixels, H or H,W (default 64): FLOPs, dead taps (taps "
                        "that read only padding at this size) and the usable RF")
    p.add_argument("--num-classes", type=field_flag(ArchConfig, "num_classes", "--num-classes"),
                   default=None, help="logits per pixel")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from nas_dil.cli.analyze import render_crop
    from nas_dil.models import build_model, describe_model

    h, w = parse_size(args.size)
    arch = parse_arch(args.arch)
    if args.num_classes is not None:
        arch["num_classes"] = args.num_classes
    s = schedule_from_args(args.schedule, args.kernel, args)
    model = build_model(s, **arch)
    d = describe_model(model, h, w)
    if args.json:
        print_json(d)
        return 0
    rows = [
        (r["name"], f"{r['c_in']}→{r['c_out']}", r["kernel"], r["stride"], r["dilation"],
         f"{r['out'][0]}×{r['out'][1]}", f"{r['macs']:,}", f"{r['params']:,}", r["rf"])
        for r in d["layers"]
    ]
    print(format_table(["layer", "channels", "K", "stride", "dil", "out", "MACs", "params",
                        "RF(img)"], rows))
    print(f"\nparams {d['params']:,}; {d['macs']:,} MACs = {d['gflops']:.4f} GFLOPs per "
          f"{h}×{w} image (FLOPs = 2 × MACs)")
    print(f"RF: stack {d['rf_stack']} (its input px), whole net {d['rf_image']} image px; "
          f"stack holes per axis {d['stack_holes_1d']}, image holes per axis "
          f"{d['image_holes_1d']}")
    print("\n".join(render_crop(d["crop"], "image")))
    return 0
