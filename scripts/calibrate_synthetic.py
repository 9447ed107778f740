"""Check that the synthetic data rewards receptive field and punishes gridding.

Trains a small stand-in of the searched net (stem of stride-2 convs, a stack of dilated 3x3
convs at the output stride, 1x1 classifier, bilinear upsample) for a fixed budget on the
synthetic data, for several dilation schedules and seeds, and prints mean +- std val mIoU.

    PYTHONPATH=. python scripts/calibrate_synthetic.py --schedules "1,1,1;1,2,5;2,2,4" \
        --seeds 0,1,2,3,4 --epochs 8 --json out.json

docs/synthetic_data.md records the full sweep and what it shows.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from nas_dil.data import DataConfig, load_data


def conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1, k: int = 3) -> nn.Module:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class StandIn(nn.Module):
    """Stem to output_stride, one dilated KxK conv per rate, 1x1 classifier, upsample."""

    def __init__(self, num_classes: int, rates: list[int], width: int = 32,
                 output_stride: int = 4, k: int = 3) -> None:
        super().__init__()
        stages = int(math.log2(output_stride))
        widths = [min(16 * 2**i, width) for i in range(stages)]
        widths[-1] = width  # the stack runs at `width`
        layers, cin = [], 3
        for w in widths:
            layers.append(conv_bn_relu(cin, w, stride=2))
            cin = w
        self.stem = nn.Sequential(*layers)
        self.body = nn.Sequential(*[conv_bn_relu(width, width, dilation=r, k=k) for r in rates])
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.body(self.stem(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def miou(conf: torch.Tensor) -> tuple[float, list[float]]:
    """Mean IoU over the classes present in labels or predictions, and per-class IoUs."""
    inter = conf.diag().double()
    union = conf.sum(0).double() + conf.sum(1).double() - inter
    ious = (inter / union.clamp_min(1)).tolist()
    present = [i for i, u in zip(ious, union.tolist(), strict=True) if u > 0]
    return sum(present) / max(len(present), 1), ious


def hole_free(rates: list[int], k: int = 3) -> bool:
    """True when the stacked dilated KxK taps reach every offset within the RF (1-D)."""
    reach = {0}
    for r in rates:
        reach = {o + r * t for o in reach for t in range(-(k // 2), k // 2 + 1)}
    return len(reach) == max(reach) - min(reach) + 1


def markdown(rows: list[dict], names: list[str]) -> str:
    head = ("| schedule | layers | RF | hole-free | mIoU mean ± std | "
            + " | ".join(names) + " |")
    lines = [head, "|" + "---|" * (5 + len(names))]
    for r in rows:
        per = " | ".join(f"{v:.3f}" for v in r["class_iou"])
        lines.append(f"| {r['rates']} | {len(r['rates'])} | {r['rf']} | "
                     f"{'yes' if r['hole_free'] else 'no'} | "
                     f"{r['mean']:.3f} ± {r['std']:.3f} | {per} |")
    return "\n".join(lines)


def run(rates: list[int], seed: int, epochs: int, width: int, output_stride: int,
        n_train: int, image_size: int, n_val: int = 128) -> tuple[float, list[float]]:
    torch.manual_seed(seed)
    data = load_data(DataConfig(seed=seed, n_train=n_train, n_val=n_val, image_size=image_size))
    net = StandIn(data.num_classes, rates, width, output_stride)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for epoch in range(epochs):
        net.train()
        for x, y in data.train_batches(16, epoch, seed):
            loss = F.cross_entropy(net(x), y, ignore_index=data.ignore_index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    nc = data.num_classes
    conf = torch.zeros(nc, nc, dtype=torch.int64)
    with torch.no_grad():
        for x, y in data.val_batches(64):
            pred = net(x).argmax(1)
            keep = y != data.ignore_index
            conf += torch.bincount(y[keep] * nc + pred[keep], minlength=nc * nc).view(nc, nc)
    return miou(conf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedules", default="1,1,1;1,2,5;2,2,4",
                    help="';'-separated dilation schedules, rates ','-separated")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--output-stride", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--n-val", type=int, default=512,
                    help="val images scored (more than the default 128: less scoring noise)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="", help="write all results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    schedules = [[int(r) for r in s.split(",")] for s in args.schedules.split(";")]
    seeds = [int(s) for s in args.seeds.split(",")]
    results, rows = [], []
    names = load_data(DataConfig(n_train=1, n_val=1, image_size=args.image_size)).class_names
    for rates in schedules:
        scores = []
        for seed in seeds:
            t0 = time.time()
            m, ious = run(rates, seed, args.epochs, args.width, args.output_stride,
                          args.n_train, args.image_size, args.n_val)
            scores.append(m)
            results.append({"rates": rates, "seed": seed, "miou": m, "ious": ious})
            print(f"rates={rates} seed={seed} mIoU={m:.4f} "
                  f"ious={[round(i, 3) for i in ious]} ({time.time() - t0:.0f}s)", flush=True)
        sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
        rf = 1 + 2 * sum(rates)
        mine = [r["ious"] for r in results if r["rates"] == rates]
        rows.append({"rates": rates, "rf": rf, "hole_free": hole_free(rates),
                     "mean": statistics.mean(scores), "std": sd,
                     "class_iou": [statistics.mean(c) for c in zip(*mine, strict=True)]})
        print(f"SUMMARY rates={rates} RF={rf} mIoU={statistics.mean(scores):.4f} +- {sd:.4f}",
              flush=True)
    print(markdown(rows, names))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "summary": rows}, f, indent=1)


if __name__ == "__main__":
    main()
