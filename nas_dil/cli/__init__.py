"""`nas-dil`: one entry point, subcommands in one table (`COMMANDS`).

Each subcommand module has `add_arguments(parser)` and `run(args) -> int`, imported only
when that subcommand runs, so `nas-dil analyze` never pays for torch or ray.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import NoReturn

from nas_dil.errors import UserError

# name -> (module under nas_dil.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("analyze", "RF, HDC rules, exact coverage and holes of one schedule"),
    "space": ("space", "count, sample or list the candidates of a search space"),
    "search": ("search", "run or resume a multi-objective study of dilation schedules on Ray"),
    "model": ("model", "the net for a schedule: layers, params, FLOPs and RF (no training)"),
    "train": ("train", "train one candidate briefly and print its metrics (--out: export it)"),
    "eval": ("eval", "mIoU, per-class IoU and pixel accuracy of an exported net on a data folder"),
    "data": ("data", "check a data folder: every file decoded, labels scanned (verdict cached)"),
    "report": ("report", "Pareto front, figures, report.html and CSVs of a search's study"),
    "dashboard": ("dashboard", "optuna-dashboard on a study, with schedules and coverage maps"),
    "export": ("export", "write the picked trial's schedule.json, weights (and ONNX)"),
}


DESCRIPTION = (
    "Search per-layer dilation schedules for segmentation nets: mIoU against receptive field "
    "and FLOPs, without gridding. Start with `nas-dil search quickstart`."
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), as every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from nas_dil import __version__

    parser = _Parser(prog="nas-dil", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"nas-dil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = import_module(f"nas_dil.cli.{module}")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:  # a usage error (a flag out of its range too) is one line and exit 2, as in a shell
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args))
    except UserError as exc:
        msg = str(exc)
        # a message that already names the command ("train: …", from the [train] table)
        # is not prefixed twice
        msg = msg.removeprefix(f"{args.command}: ")
        print(f"nas-dil {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas-dil {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
