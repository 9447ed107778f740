"""`nas-dil analyze 1,2,5 [--kernel 3] [--size H[,W]] [--residual] [--json] [--plot FILE.png]`."""

from __future__ import annotations

import argparse
from typing import Any

from nas_dil.cli._common import (
    add_variant_args,
    format_table,
    parse_size,
    print_json,
    schedule_from_args,
)

PLOT_MAX_RF = 1025  # widest RF drawn as a heat map (one cell per offset)
TEXT_COUNTS_MAX = 513  # widest RF whose 1-D counts the text output prints


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("schedule", help="dilation rates, e.g. 1,2,5 or 1-2-5 or 1,2,5*2 (repeat)")
    p.add_argument("--kernel", default="3", help="odd kernel size, or one per layer (3,3,5)")
    p.add_argument("--strides", default=None, help="per-layer strides, e.g. 1,2,1 (default 1)")
    p.add_argument("--size", metavar="H[,W]", default=None,
                   help="input side(s) of the stack in pixels: report dead taps (taps that "
                        "read only padding at this size) and the usable RF")
    add_variant_args(p)
    p.add_argument("--residual", action="store_true",
                   help="path counts of residual layers x + f(x) (support and holes unchanged)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="write the 2-D count-map heat map")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render_text(a: dict[str, Any]) -> str:
    rows = [
        (i + 1, r, k, e if e != r else "", rf, m)
        for i, (r, k, e, rf, m) in enumerate(
            zip(a["schedule"], a["kernels"], a["effective_rates"], a["rf_per_layer"], a["m"],
                strict=True)
        )
    ]
    table = format_table(["layer", "rate", "K", "eff.rate", "RF", "M_i"], rows)
    rf = a["rf"]
    variant = ""
    if "rates_w" in a:
        variant += f"; width rates {','.join(map(str, a['rates_w']))} (RF_w {a['rf_w']}, "
        variant += f"holes_w {a['holes_w']})"
    if "smooth" in a:
        variant += "; smoothed"
    if a.get("tail"):
        variant += f"; tail of {a['tail']}"
    lines = [
        f"schedule {','.join(map(str, a['schedule']))}  (kernel {a['kernel']}){variant}",
        table,
        "",
        f"HDC rule 1, M_2 <= K (whole):   {_verdict(a['hdc_rule1'])}  {a['hdc_rule1_reason']}",
        f"HDC rule 1, M_2 <= K (groups):  {_verdict(a['hdc_rule1_groups'])}  "
        f"{a['hdc_rule1_groups_reason']}",
        f"HDC rule 2, no common factor:   {_verdict(a['hdc_rule2'])}  {a['hdc_rule2_reason']}",
        f"HDC rule 3, sawtooth groups:    {_verdict(a['hdc_rule3'])}  {a['hdc_rule3_reason']}",
        "",
        f"RF {rf}×{rf}; coverage {100 * a['coverage']:.1f} % of the box; "
        f"holes {a['holes']} (2-D), {a['holes_1d']} per axis; largest gap {a['largest_gap']}",
        f"gridding-free: {'yes' if a['gridding_free'] else 'no'}",
    ]
    label = "1-D path counts" + (" (residual)" if a["residual"] else "")
    if a["counts_1d"] is not None and rf <= TEXT_COUNTS_MAX:
        lines.append(f"{label}: " + " ".join(map(str, a["counts_1d"])))
    else:
        lines.append(f"{label}: {rf} offsets, not printed (--json lists them)")
    if "crop" in a:
        lines += ["", *render_crop(a["crop"], "stack input")]
    return "\n".join(lines)


def render_crop(c: dict[str, Any], unit: str) -> list[str]:
    """Dead taps and RFs at one input size (a `CropReport.to_dict()`)."""
    h, w = c["size"]
    nom, live, use = c["rf_nominal"], c["rf_live"], c["rf_usable"]
    lines = [
        f"at {h}×{w} ({unit} px): output {c['out'][0]}×{c['out'][1]}; RF nominal "
        f"{nom[0]}×{nom[1]}, live taps {live[0]}×{live[1]}, usable {use[0]}×{use[1]} "
        f"(≤ the input)",
    ]
    if not c["dead_taps"]:
        lines.append("dead taps: none (every tap reads real pixels at this size)")
        return lines
    lines.append(f"dead taps: {c['dead_taps']} (read only padding from every output position: "
                 "never trained at this size)")
    rows = [(d["name"], "×".join(map(str, d["dilation"])), f"{d['size_in'][0]}×{d['size_in'][1]}",
             ",".join(map(str, d["dead_h"])) or "-", ",".join(map(str, d["dead_w"])) or "-",
             f"{d['dead']}/{d['kernel'][0] * d['kernel'][1]}")
            for d in c["dead_layers"]]
    lines.append(format_table(["layer", "dil", "map", "dead offsets h", "dead offsets w",
                               "dead"], rows))
    return lines


def run(args: argparse.Namespace) -> int:
    from nas_dil.errors import UserError
    from nas_dil.schedule import analyze

    s = schedule_from_args(args.schedule, args.kernel, args, args.strides)
    size = parse_size(args.size) if args.size is not None else None
    a = analyze(s, residual=args.residual, size=size)
    if args.plot and max(a["rf"], a.get("rf_w", 0)) > PLOT_MAX_RF:
        raise UserError(f"--plot: RF {a['rf']} px is wider than the {PLOT_MAX_RF} px a heat "
                        "map shows")
    if args.plot:
        from nas_dil.report.coverage_plot import coverage_map_data, plot_coverage_map

        a["plot"] = str(plot_coverage_map(coverage_map_data(s), args.plot))
    if args.json:
        print_json(a)
    else:
        print(render_text(a))
        if args.plot:
            print(f"heat map written to {a['plot']}")
    return 0
