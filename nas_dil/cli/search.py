"""`nas-dil search STUDY [--n-trials N] [--confirm K] [--storage URL] [--out DIR]
[--address RAY_ADDRESS] [--resume] [--quiet] [--json] [--no-report]`: run or continue a
study, then write its report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas_dil._check import field_flag
from nas_dil.cli._common import int_flag, print_json
from nas_dil.errors import UserError
from nas_dil.search.config import ConfirmConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="a study file (studies/quickstart.toml) or a shipped name")
    p.add_argument("--n-trials", type=int_flag("--n-trials", 1), metavar="N",
                   help="finished trials the study should reach (default: the config's)")
    p.add_argument("--confirm", type=field_flag(ConfirmConfig, "seeds", "--confirm"),
                   metavar="K",
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
    p.add_argument("--tensorboard", action="store_true",
                   help="write each trial's curves and the hypervolume under OUT/tb/ (needs "
                        "the tensorboard extra; `tensorboard --logdir OUT/tb`)")


def _report(url: str, name: str, out_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(report files, None) or (None, why there is none)."""
    try:
        from nas_dil.api import write_report
    except (ImportError, AttributeError) as e:  # pragma: no cover - report not installed
        return None, f"report unavailable ({e})"
    try:
        files = write_report(url, out_dir / "report", study=name)
    except UserError as e:
        return None, str(e)
    d = files.data
    return {"dir": str(files.out_dir), "html": str(files.html),
            "pareto_csv": str(files.pareto_csv), "trials_csv": str(files.trials_csv),
            "noise": d.noise, "chance": d.chance, "knee_close": d.knee_close,
            "warnings": list(d.warnings)}, None


def run(args: argparse.Namespace) -> int:
    from nas_dil.api import Study, run_study
    from nas_dil.search.progress import fmt_duration
    from nas_dil.search.storage import safe_url

    try:
        results = run_study(Study.from_toml(args.study), args.n_trials, storage=args.storage,
                            out=args.out, address=args.address, resume=args.resume,
                            progress="line" if not args.quiet else None,
                            tensorboard=args.tensorboard, confirm=args.confirm)
    except KeyboardInterrupt:  # stopped before the first trial
        _end_if_terminated("nas-dil search: interrupted")
        raise
    summary = results.summary
    assert summary is not None and results.storage_url is not None  # set by run_study
    out_dir = Path(summary.out_dir)
    url = results.storage_url
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
            for w in ([report["knee_close"]] if report["knee_close"] else []):
                print(f"  note: {w}")
            for w in report["warnings"]:
                print(f"  warning: {w}")
        elif why:
            print(f"  report:  none ({why})")
    if summary.interrupted:
        _end_if_terminated("nas-dil search: interrupted; run the same command again to continue")
        print("nas-dil search: interrupted; run the same command again to continue",
              file=sys.stderr)
        return 130
    return 0


def _end_if_terminated(line: str) -> None:
    """After SIGTERM and a clean stop (running trials marked and enqueued again, storage
    closed, the driver lock released, a local Ray stopped), end the process now, exit 130:
    SIGTERM asks a process to end, and the interpreter's own teardown of a CUDA build of
    torch takes 2-7 s on a loaded machine (measured), past a common 5 s kill grace."""
    from nas_dil.search.driver import stopped_by_sigterm

    if not stopped_by_sigterm():
        return
    import atexit
    import os

    print(line, file=sys.stderr)
    atexit._run_exitfuncs()  # what the interpreter's exit would run (logging, Ray, tqdm)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
