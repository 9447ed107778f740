"""`nas-dil search STUDY [--n-trials N] [--confirm K] [--storage URL] [--out DIR]
[--address RAY_ADDRESS] [--resume] [--quiet] [--json] [--no-report]`: run or continue a
study, then write its report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas_dil.cli._common import print_json
from nas_dil.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="a study file (studies/quickstart.toml) or a shipped name")
    p.add_argument("--n-trials", type=int, metavar="N",
                   help="finished trials the study should reach (default: the config's)")
    p.add_argument("--confirm", type=int, metavar="K",
                   help="after the trials, train the Pareto front's candidates again until "
                        "each has K seeds (default: the study's [confirm] seeds, 3; 0: off)")
    p.add_argument("--storage", metavar="URL",
                   help="SQLAlchemy URL, e.g. postgresql://user@host/db "
                        "(default: sqlite:///OUT/study.db)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder: study.db, weights/, report/ (default: runs/<name>)")
    p.add_argument("--address", metavar="RAY_ADDRESS",
                   help="Ray cluster: host:port, ray://host:port or auto (default: "
                        "$RAY_ADDRESS, else a local Ray on 127.0.0.1)")
    p.add_argument("--resume", action="store_true",
                   help="continue the study, which must exist (running the same command "
                        "again continues too)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--no-report", action="store_true", help="do not write the report")


def _report(url: str, name: str, out_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(report files, None) or (None, why there is none)."""
    try:
        from nas_dil.report import write_report
    except (ImportError, AttributeError) as e:  # pragma: no cover - report not installed
        return None, f"report unavailable ({e})"
    try:
        files = write_report(url, out_dir / "report", study=name)
    except UserError as e:
        return None, str(e)
    return {"dir": str(files.out_dir), "html": str(files.html),
            "pareto_csv": str(files.pareto_csv), "trials_csv": str(files.trials_csv)}, None


def run(args: argparse.Namespace) -> int:
    from nas_dil.search import load_study_config, run_search
    from nas_dil.search.progress import fmt_duration
    from nas_dil.search.storage import default_url, safe_url

    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials {args.n_trials}: must be >= 1")
    cfg = load_study_config(args.study)
    summary = run_search(cfg, n_trials=args.n_trials, storage=args.storage, out=args.out,
                         address=args.address, resume=args.resume, progress=not args.quiet,
                         confirm=args.confirm)
    out_dir = Path(summary.out_dir)
    url = args.storage or cfg.storage or default_url(out_dir)
    report, why = None, None
    if args.no_report:
        why = "--no-report"
    elif summary.interrupted:
        why = "interrupted"
    elif summary.complete == 0:
        why = "no COMPLETE trial yet"
    else:
        report, why = _report(url, summary.study_name, out_dir)
    if args.json:
        print_json({**summary.to_dict(), "report": report, "report_skipped": why})
    elif not args.quiet:
        s = summary
        front = ", ".join(map(str, s.front)) or "none"
        print(f"study {s.study_name}: {s.done}/{s.n_trials} trials ({s.complete} complete, "
              f"{s.pruned} pruned, {s.failed} failed, {s.infeasible} infeasible, {s.reused} "
              f"reused{f', {s.repeats} repeats' if s.repeats else ''}) in "
              f"{fmt_duration(s.elapsed_s)}")
        print(f"  Pareto front: trials {front}; hypervolume {s.hypervolume:.4f}")
        n = s.noise
        print("  seed noise: " + (f"mIoU std {n['std']:.4f} (pooled over {n['n_candidates']} "
                                  f"candidate(s) with >= 2 seeds, {n['dof']} dof)" if n else
                                  "unknown (no candidate trained with 2 seeds or more)"))
        if s.confirm_seeds >= 2:
            left = (f"; unconfirmed (< {s.confirm_seeds} seeds): trials "
                    f"{', '.join(map(str, s.unconfirmed))}" if s.unconfirmed else "")
            print(f"  confirmation: {s.confirmed} look(s) after the trials, front candidates "
                  f"need {s.confirm_seeds} seeds"
                  + (f" (cap {s.confirm_cap})" if s.confirm_cap is not None else "") + left)
        print(f"  storage: {safe_url(url)}")
        if (out_dir / "weights").is_dir():
            print(f"  weights: {out_dir / 'weights'}")
        if report:
            print(f"  report:  {report['html']}")
        elif why:
            print(f"  report:  none ({why})")
    if summary.interrupted:
        print("nas-dil search: interrupted; run the same command again to continue",
              file=sys.stderr)
        return 130
    return 0
