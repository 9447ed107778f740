"""`nas-dil dashboard OUT_DIR_OR_STORAGE [--host 127.0.0.1] [--port 8080] [--study NAME]`."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from nas_dil._check import Bound, flag_type
from nas_dil.cli._common import add_study_source, int_flag


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_study_source(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_flag("--port", 0, 65535), default=8080,
                   help="port (default 8080; 0: any free)")
    p.add_argument("--refresh", type=flag_type(Bound(False, gt=0, le=86_400), "--refresh"),
                   default=10.0, metavar="SECONDS",
                   help="rebuild the attached figures this often when trials change")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the server the same way Ctrl-C does


def run(args: argparse.Namespace) -> int:
    from nas_dil.report.dashboard import serve_dashboard

    server = serve_dashboard(args.source, args.study, host=args.host, port=args.port,
                             refresh_s=args.refresh)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach it sees the study",
              file=sys.stderr)
    print(f"nas-dil dashboard: {server.url}  (read-only; Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
