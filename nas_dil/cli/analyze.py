"""`nas-dil analyze 1,2,5 [--kernel 3] [--json] [--plot FILE.png]`."""

from __future__ import annotations

import argparse
from typing import Any

from nas_dil.cli._common import format_table, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("schedule", help="dilation rates, e.g. 1,2,5 or 1-2-5 or 1,2,5*2 (repeat)")
    p.add_argument("--kernel", default="3", help="odd kernel size, or one per layer (3,3,5)")
    p.add_argument("--strides", default=None, help="per-layer strides, e.g. 1,2,1 (default 1)")
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
    lines = [
        f"schedule {','.join(map(str, a['schedule']))}  (kernel {a['kernel']})",
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
        "1-D path counts: " + " ".join(map(str, a["counts_1d"])),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from nas_dil.schedule import Schedule, analyze

    s = Schedule.parse(args.schedule, kernel=args.kernel, strides=args.strides)
    a = analyze(s)
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
