"""`nas-dil data check DIR [--layout …] [--json]`: decode every image and mask of a data
folder once (progress bar), count pixels per label, and say what the class count is and
whether any value looks like noise. The verdict is cached (keyed by every file's size and
mtime), so a second run, and the next training on the same files, read it back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas_dil._check import field_flag
from nas_dil.cli._common import print_json
from nas_dil.data.config import DataConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["check"], help="check: the full scan")
    p.add_argument("folder", metavar="DIR", help="a data folder (folder, VOC or Cityscapes)")
    p.add_argument("--layout", default="auto", choices=["auto", "folder", "voc", "cityscapes"])
    p.add_argument("--num-classes", type=field_flag(DataConfig, "num_classes", "--num-classes"),
                   default=None,
                   help="check labels against this count (default: the layout's or classes.txt)")
    p.add_argument("--ignore-index", default=255,
                   type=field_flag(DataConfig, "ignore_index", "--ignore-index"))
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from nas_dil.data.check import cached_scan, header_check, scan_labels
    from nas_dil.data.config import DataConfig
    from nas_dil.data.folders import locate

    cfg = DataConfig(source=args.folder, layout=args.layout, ignore_index=args.ignore_index)
    cfg.validate()
    root, layout, _, pairs, _ = locate(cfg, "all")
    header_check(pairs)  # pairing, sizes, modes of every file, before decoding any
    was_cached = cached_scan(pairs, images=True) is not None
    scan = scan_labels(pairs, images=True, progress=not (args.quiet or args.json),
                       desc=f"check {layout}")
    verdict = _verdict(args, root, layout, scan)
    verdict["cached"] = was_cached
    if args.json:
        print_json(verdict)
    else:
        print(f"{verdict['root']}: {layout} layout, {verdict['images']} images, "
              f"labels {verdict['labels_summary']}")
        print(f"classes: {verdict['num_classes']} ({verdict['classes_from']})")
        for note in verdict["notes"]:
            print(f"note: {note}")
        if verdict["ok"]:
            print("ok" + (" (verdict cached from an earlier check)" if was_cached else ""))
        else:
            print(f"nas-dil data: error: {verdict['error']}", file=sys.stderr)
    return 0 if verdict["ok"] else 2


def _verdict(args: argparse.Namespace, root: Path, layout: str, scan: Any) -> dict[str, Any]:
    from nas_dil.data.check import check_ignore_index, infer_classes
    from nas_dil.data.errors import DataError
    from nas_dil.data.folders import class_names_file, fewer_classes_note, layout_classes

    labels = scan.labels(args.ignore_index)
    names = layout_classes(layout)
    source = f"{layout} layout"
    if names is None:
        names = class_names_file(root)
        source = "classes.txt"
    n = args.num_classes or (len(names) if names else None)
    error = None
    notes = []
    if n is None:
        try:
            n = infer_classes(scan, args.ignore_index, root)
            source = "masks: max label + 1 (no classes.txt or --num-classes)"
        except DataError as e:
            error = str(e)
    elif args.num_classes:
        source = "--num-classes"
    if n is not None and error is None:
        try:  # the check training makes (FolderData), so both give one verdict
            check_ignore_index(n, args.ignore_index, root)
        except DataError as e:
            error = str(e)
    if n is not None and error is None:
        bad = [v for v in labels if v >= n or v < 0]
        if bad:
            v = bad[-1] if bad[-1] >= n else bad[0]
            error = (f"{scan.first_file[v]}: label {v} in {scan.pixels[v]} pixel(s) is not a "
                     f"class (num_classes {n}, ignore_index {args.ignore_index})")
    note = fewer_classes_note(scan, layout, args.ignore_index)
    if note:
        notes.append(note)
    summary = (f"{labels[0]}..{labels[-1]} ({len(labels)} distinct)" if labels else "none")
    if args.ignore_index in scan.pixels:
        summary += f" + ignore {args.ignore_index}"
    return {"root": str(root), "layout": layout, "images": scan.n_masks,
            "labels": {str(k): v for k, v in sorted(scan.pixels.items())},
            "labels_summary": summary, "num_classes": n, "classes_from": source,
            "notes": notes, "ok": error is None, "error": error}
