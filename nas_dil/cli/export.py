"""`nas-dil export OUT_DIR_OR_STORAGE --pick knee|best-miou|trial=N|max-gflops=X[,min-rf=Y]
--out DIR [--study NAME] [--force] [--onnx] [--mmseg] [--json] [--allow-unconfirmed]
[--backbone-weights FILE]`."""

from __future__ import annotations

import argparse

from nas_dil.cli._common import add_study_source, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_study_source(p)
    p.add_argument("--pick", required=True, metavar="RULE",
                   help="knee | best-miou | trial=N | max-gflops=X[,min-rf=Y] (limits on "
                        "gflops, params, rf, holes, miou …; best mIoU within them)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="a new or empty folder for schedule.json (+ weights.pt, model.onnx)")
    p.add_argument("--force", action="store_true",
                   help="replace the files of an earlier export in --out")
    p.add_argument("--onnx", action="store_true",
                   help="also write model.onnx (needs: pip install 'nas-dil[onnx]')")
    p.add_argument("--mmseg", action="store_true",
                   help="also write mmseg_config.py and mmseg_weights.pth, an mmsegmentation "
                        "1.x config and checkpoint of the net (torchvision ResNet backbones, "
                        "target = \"backbone\", no context module)")
    p.add_argument("--json", action="store_true", help="print schedule.json's content")
    p.add_argument("--allow-unconfirmed", action="store_true",
                   help="export a pick trained with fewer seeds than the study confirms over")
    p.add_argument("--backbone-weights", metavar="FILE",
                   help="a frozen-backbone trial: its backbone's weights file here, when it "
                        "moved since the search (its tensors must be the same)")


def run(args: argparse.Namespace) -> int:
    from nas_dil.api import export

    r = export(args.source, args.pick, args.out, study=args.study, force=args.force,
               onnx=args.onnx, mmseg=args.mmseg, allow_unconfirmed=args.allow_unconfirmed,
               backbone_weights=args.backbone_weights)
    if args.json:
        print_json(r.document)
        return 0
    d = r.document
    cert = d["hdc_certificate"]
    print(f"trial {r.trial}: {r.reason}")
    print(f"schedule {','.join(map(str, d['schedule']['rates']))} (K {cert['kernels'][0]}, "
          f"OS {d['arch']['output_stride']}, width {d['arch']['width']}); "
          + ", ".join(f"{k} {v:.4g}" for k, v in d["values"].items())
          + f"; holes {d['holes']}; params {d['params']}; HDC {'pass' if cert['hdc'] else 'fail'}")
    sd = d.get("seeds") or {}
    if sd.get("miou"):
        noise = sd.get("noise")
        spread = f" ± {sd['std']:.4f}" if sd.get("std") is not None else ""
        print(f"seeds {', '.join(map(str, sd['seeds']))}: mIoU {sd['mean']:.4f}{spread} "
              + ("(confirmed" if sd["confirmed"] else "(NOT confirmed")
              + f" over {sd['confirm_seeds']}); study seed noise "
              + (f"±{noise['std']:.4f}" if noise else "unknown"))
    print(d["weights_note"])
    print(f"written: {r.schedule_json}"
          + (f", {r.weights}" if r.weights else "") + (f", {r.onnx}" if r.onnx else "")
          + (f", {r.mmseg_config}" if r.mmseg_config else "")
          + (f", {r.mmseg_weights}" if r.mmseg_weights else ""))
    print(f"load with: nas_dil.load_exported({str(r.out_dir)!r})")
    return 0
