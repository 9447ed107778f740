"""`nas-dil report OUT_DIR_OR_STORAGE [--study NAME] [--out DIR] [--json]`."""

from __future__ import annotations

import argparse
from typing import Any

from nas_dil.cli._common import add_study_source, format_table, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_study_source(p)
    p.add_argument("--out", metavar="DIR",
                   help="where to write the report (default: OUT_DIR/report)")
    p.add_argument("--json", action="store_true",
                   help="print the Pareto front and the files written as one JSON object")


# the report table's columns printed here (every objective is printed too)
_KEYS = ("number", "schedule", "output_stride", "width", "rf", "rf_crop", "dead_taps", "holes",
         "params", "hdc", "baseline", "looks", "within_noise")
_ARROW = {"maximize": " ↑", "minimize": " ↓"}


def _f(v: Any, fmt: str = "{:.4g}") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return fmt.format(v) if isinstance(v, float) else str(v)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from nas_dil.api import write_report

    files = write_report(args.source, args.out, study=args.study)
    d = files.data
    written = {"html": str(files.html), "pareto_csv": str(files.pareto_csv),
               "trials_csv": str(files.trials_csv),
               "pngs": {k: str(v) for k, v in files.pngs.items()}}
    if args.json:
        print_json({"study": d.study_name, "states": d.states, "knee": d.knee,
                    "knee_note": d.knee_note, "dead_taps": d.dead_taps,
                    "noise": d.noise, "noise_note": d.noise_note, "chance": d.chance,
                    "chance_note": d.chance_note, "knee_close": d.knee_close,
                    "within_noise": d.within_noise, "warnings": d.warnings,
                    "pareto": [asdict(r) for r in d.pareto],
                    "hypervolume": None if d.hypervolume is None else {
                        "value": d.hypervolume.values[-1],
                        "normalized": d.hypervolume.normalized[-1],
                        "reference_point": d.hypervolume.reference_point},
                    "files": written})
        return 0
    states = ", ".join(f"{n} {s}" for s, n in sorted(d.states.items()))
    print(f"study {d.study_name}: {d.n_trials} trials ({states}); "
          f"objectives {', '.join(f'{o.name} ({o.direction})' for o in d.objectives)}")
    t = d.table
    keep = [i for i, c in enumerate(t.columns) if c.direction or c.key in _KEYS]
    rows = [[f"#{n}{'*' if knee else ''}" if t.columns[i].key == "number" else _f(cells[i])
             for i in keep] for cells, n, knee in zip(t.rows, t.numbers, t.knee, strict=True)]
    print(f"Pareto front ({len(d.pareto)}; * knee), ↑/↓ the objectives:")
    if rows:
        print(format_table([t.columns[i].label + _ARROW.get(t.columns[i].direction or "", "")
                            for i in keep], rows))
    else:
        print("  no feasible COMPLETE trial")
    for note in t.notes:
        print(f"note: {note}")
    if d.knee_close:
        print(f"note: {d.knee_close}")
    print(d.noise_note)
    print(d.chance_note or "chance level unknown (the study did not record the val split's "
          "class pixel counts)")
    for w in d.warnings:
        print(f"warning: {w}")
    if d.hypervolume is not None:
        hv = d.hypervolume
        ref = ", ".join(f"{n} {v:.4g}" for n, v in zip(hv.objectives, hv.reference_point,
                                                        strict=True))
        print(f"hypervolume {hv.values[-1]:.4g} ({100 * hv.normalized[-1]:.1f} % of the box), "
              f"reference point ({ref})")
    print(f"report written to {files.html} (+ {len(files.pngs)} PNGs, pareto.csv, trials.csv "
          f"in {files.out_dir})")
    return 0
