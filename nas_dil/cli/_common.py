"""Small helpers shared by subcommands: JSON printing and table layout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from nas_dil._check import Bound, flag_type
from nas_dil.schedule.types import MAX_LAYERS


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=None, separators=(",", ":"), default=str)
    sys.stdout.write("\n")


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, header)), *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells)


def int_flag(flag: str, ge: int | None = None, le: int | None = None) -> Any:
    """An argparse type for an integer flag in [ge, le] that fills no config field."""
    return flag_type(Bound(True, ge=ge, le=le), flag)


def add_study_source(p: argparse.ArgumentParser) -> None:
    """The positional study source and --study, shared by report, dashboard and export."""
    p.add_argument("source", metavar="OUT_DIR_OR_STORAGE",
                   help="a search's output folder, its study.db, or a storage URL")
    p.add_argument("--study", metavar="NAME", help="the study, when the storage holds several")


MAX_SIDE = 8192  # widest input side --size accepts (the crop analysis is side² bits)


def parse_size(text: str) -> tuple[int, int]:
    """``--size 64`` → (64, 64); ``--size 48,64`` → (48, 64) (height, width)."""
    from nas_dil.errors import UserError

    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"--size {text!r}: expected H or H,W (integers)") from None
    if len(values) not in (1, 2) or not all(1 <= v <= MAX_SIDE for v in values):
        raise UserError(f"--size {text!r}: expected H or H,W with each in [1, {MAX_SIDE}]")
    return values[0], values[-1]


def add_variant_args(p: argparse.ArgumentParser) -> None:
    """The degridding variants of a schedule (docs/theory.md), shared by analyze and model."""
    p.add_argument("--rates-w", metavar="RATES", default=None,
                   help="per-axis rates: the dilation of each layer along the width")
    p.add_argument("--smooth", action="store_true",
                   help="smoothed dilated convs: a shared (2r-1) pre-filter before each layer")
    p.add_argument("--tail", type=flag_type(Bound(True, ge=0, le=MAX_LAYERS), "--tail"),
                   default=0, metavar="N",
                   help="the last N layers are a degridding tail (never residual)")


def schedule_from_args(text: str, kernel: str | int, args: argparse.Namespace,
                       strides: str | None = None) -> Any:
    """A Schedule from the positional rates, --kernel and the variant options."""
    from nas_dil.schedule import Schedule, parse_ints

    base = Schedule.parse(text, kernel=kernel if isinstance(kernel, str) else str(kernel),
                          strides=strides)
    rates_w = parse_ints(args.rates_w, "--rates-w") if args.rates_w else ()
    smooth = (True,) * len(base) if args.smooth else ()
    return Schedule(base.rates, base.kernels, base.strides, rates_w, smooth, args.tail)
