"""`nas-dil space SPACE [--count] [--sample N --seed S] [--list] [--crop H[xW]] [--json]`."""

from __future__ import annotations

import argparse
from typing import Any

from nas_dil._check import SEED, flag_type
from nas_dil.cli._common import format_table, int_flag, print_json
from nas_dil.errors import UserError

LIST_LIMIT = 10_000  # --list refuses larger spaces unless --limit says otherwise
SAMPLE_MAX = 100_000  # --sample draws one Optuna trial each (~1 ms): more is a typo


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="a space file (search_spaces/hdc.toml) or a shipped name (hdc)")
    p.add_argument("--count", action="store_true", help="print the number of candidates")
    p.add_argument("--sample", type=int_flag("--sample", 1, SAMPLE_MAX), metavar="N",
                   help=f"draw N candidates (Optuna, seeded; N <= {SAMPLE_MAX})")
    p.add_argument("--seed", type=flag_type(SEED, "--seed"), default=0,
                   help="seed for --sample (default 0)")
    p.add_argument("--list", action="store_true", help="enumerate every candidate")
    p.add_argument("--limit", type=int_flag("--limit", 0), default=LIST_LIMIT,
                   help="most candidates to --list")
    p.add_argument("--crop", metavar="H[xW]",
                   help="keep only candidates whose stack taps all land on the image at this "
                        "training crop, behind nas-dil's stem (what a study's dead_taps = "
                        "'avoid' does)")
    p.add_argument("--json", action="store_true", help="print JSON")


def parse_crop(text: str) -> tuple[int, int]:
    """``48`` or ``64x48`` (h×w) -> (h, w); one line otherwise."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) not in (1, 2) or min(hw) < 1:
        raise UserError(f"--crop {text!r}: expected a size like 48 or 64x48")
    return (hw[0], hw[-1])


def _row(c: Any) -> dict[str, Any]:
    from nas_dil.schedule import coverage

    cov = coverage(c.schedule)
    return {**c.to_dict(), "rf": cov.rf, "holes": cov.holes}


def _degridding(r: dict[str, Any]) -> str:
    parts = []
    if "rates_w" in r:
        parts.append("w-rates " + ",".join(map(str, r["rates_w"])))
    if r.get("smooth"):
        parts.append("smoothed")
    if "tail" in r:
        parts.append("tail " + ",".join(map(str, r["tail"])))
    return "; ".join(parts) or "-"


def run(args: argparse.Namespace) -> int:
    from nas_dil.spaces import load_space, sample_candidates

    space = load_space(args.space)
    if args.crop is not None:
        from nas_dil.models.analytic import stack_maps

        crop = parse_crop(args.crop)
        space = space.live(stack_maps({}, space.config.output_stride, crop))
    out: dict[str, Any] = {"space": space.name, "path": str(space.path)}
    if args.count:
        out["count"] = space.count()
    if args.sample is not None:
        out["seed"] = args.seed
        out["samples"] = [_row(c) for c in sample_candidates(space, args.sample, args.seed)]
    if args.list:
        n = space.count()
        if n > args.limit:
            raise UserError(f"{space.path}: {n} candidates; raise --limit to list them all")
        out["candidates"] = [_row(c) for c in space.enumerate()]
    if not (args.count or args.sample is not None or args.list):
        out.update(space.describe())
    if args.json:
        print_json(out)
        return 0
    print(f"space {space.name} ({space.path})")
    for key, value in out.items():
        if key not in ("space", "path", "samples", "candidates"):
            print(f"  {key}: {value}")
    for key in ("samples", "candidates"):
        if key in out:
            extra = any(set(r) & {"rates_w", "smooth", "tail"} for r in out[key])
            rows = [
                (",".join(map(str, r["rates"])), r["kernel"], r["output_stride"], r["width"],
                 r["rf"], r["holes"],
                 *([_degridding(r)] if extra else []))
                for r in out[key]
            ]
            print(format_table(["rates", "K", "OS", "width", "RF", "holes",
                                *(["degridding"] if extra else [])], rows))
    return 0
