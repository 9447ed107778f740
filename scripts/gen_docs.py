"""Generate the docs site's reference pages from the code, so they cannot drift from it.

- ``docs/reference/study_file.md``: every key of a study file, table by table, read from the
  config types (the frozen dataclasses' fields, their defaults, their inline comments and the
  ranges declared with ``nas_dil._check.bounded``);
- ``docs/reference/cli.md``: every subcommand's ``--help``, from ``nas_dil.cli.build_parser``.

Run by mkdocs as a hook (``mkdocs.yml``: ``hooks``; ``on_pre_build`` regenerates both pages
before every build, ``mkdocs serve`` included) or by hand:
``PYTHONPATH=$PWD .venv/bin/python scripts/gen_docs.py``. The pages are build outputs
(``.gitignore``d): a new config key or flag is documented by the next build, with nothing to
commit.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import os
import re
import sys
import textwrap
import tokenize
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "reference"


def _import_repo() -> None:
    """Import nas_dil from this checkout (mkdocs runs hooks without PYTHONPATH)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


# -- the study file ---------------------------------------------------------------------------

def tables() -> dict[str, tuple[type, tuple[str, ...]]]:
    """Study-file table -> (the dataclass whose fields are its keys, fields it excludes)."""
    _import_repo()
    from nas_dil.data.config import DataConfig
    from nas_dil.models.config import PER_NET, ArchConfig
    from nas_dil.search.baselines import BaselineConfig
    from nas_dil.search.config import (
        ConfirmConfig,
        EarlyStopConfig,
        NoiseConfig,
        ParallelConfig,
        TrialKindConfig,
    )
    from nas_dil.train.config import TrainConfig

    return {
        "parallel": (ParallelConfig, ()),
        "trial": (TrialKindConfig, ()),
        "arch": (ArchConfig, PER_NET),
        "data": (DataConfig, ()),
        "train": (TrainConfig, ()),
        "early_stop": (EarlyStopConfig, ()),
        "baselines": (BaselineConfig, ()),
        "noise": (NoiseConfig, ()),
        "confirm": (ConfirmConfig, ()),
    }


# tables whose keys are not one dataclass's fields: documented from their own sources below
SPECIAL = ("objectives", "constraints", "sampler")


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its inline comment (the comment on the field's lines and the comment-only
    lines right under it), read from the class's source."""
    src = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}
    comment_only: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            line = tok.start[0]
            comments[line] = tok.string.lstrip("#").strip()
            if not tok.line[: tok.start[1]].strip():
                comment_only.add(line)
    cls_node = ast.parse(src).body[0]
    assert isinstance(cls_node, ast.ClassDef)
    out: dict[str, str] = {}
    for node in cls_node.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        parts = [comments[i] for i in range(node.lineno, end + 1) if i in comments]
        nxt = end + 1
        while nxt in comment_only:
            parts.append(comments[nxt])
            nxt += 1
        out[node.target.id] = " ".join(p for p in parts if p)
    return out


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        v = f.default
    elif f.default_factory is not dataclasses.MISSING:
        v = f.default_factory()
    else:
        return "required"
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_keys(cls: type, exclude: tuple[str, ...] = ()) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in exclude]


def _dataclass_table(cls: type, exclude: tuple[str, ...]) -> list[str]:
    from nas_dil._check import bound_of

    notes = field_comments(cls)
    rows = ["| key | type | default | range | meaning |", "| --- | --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        b = bound_of(f)
        rows.append(f"| `{f.name}` | `{_cell(str(f.type))}` | `{_cell(_default(f))}` | "
                    f"{_cell(b.spoken()) if b else ''} | {_cell(notes.get(f.name, ''))} |")
    return rows


def top_level_notes() -> dict[str, str]:
    """Top-level key -> its comment in nas_dil/search/config.py's docstring (the annotated
    example study file there)."""
    _import_repo()
    from nas_dil.search import config

    notes: dict[str, str] = {}
    current: list[str] = []
    for line in (config.__doc__ or "").splitlines():
        if not line.startswith("    "):
            current = []
            continue
        body, _, comment = line.partition("#")
        if current and comment.startswith("   "):  # "#   …": the key above goes on
            for k in current:
                notes[k] += " " + comment.strip()
            continue
        if body.strip().startswith("["):
            current = re.findall(r"\[+(\w+)\]+", body)
        elif "=" in body:
            current = [body.split("=", 1)[0].strip()]
        else:
            current = []
        current = [k for k in current if k not in notes]  # the first mention names a key
        for k in current:
            notes[k] = comment.strip()
    return {k: " ".join(v.split()) for k, v in notes.items()}


def study_file_page() -> str:
    _import_repo()
    from nas_dil.search.config import _TOP
    from nas_dil.search.objectives import CONSTRAINT_METRICS
    from nas_dil.search.records import METRICS
    from nas_dil.search.samplers import _DRIVER_ARGS, SAMPLERS, sampler_class

    tabs = tables()
    notes = top_level_notes()
    lines = [
        "# Study-file reference",
        "",
        "Generated from the config types by `scripts/gen_docs.py` at every docs build: the",
        "frozen dataclasses of `nas_dil/search/config.py`, `nas_dil/models/config.py`,",
        "`nas_dil/data/config.py` and `nas_dil/train/config.py`, their inline comments and",
        "the ranges declared on their fields (`nas_dil/_check.py`). Every key is optional",
        "except `space`. A number outside its range, NaN or ±inf is one line naming the",
        "file and the key, exit 2. An annotated example: `studies/quickstart.toml`.",
        "",
        "## Top-level keys",
        "",
        "| key | meaning |",
        "| --- | --- |",
    ]
    for k in _TOP:
        if k in tabs or k in SPECIAL:
            where = f"table, [below](#{k})"
            lines.append(f"| `{k}` | {_cell(notes.get(k, ''))} ({where}) |")
        else:
            lines.append(f"| `{k}` | {_cell(notes.get(k, ''))} |")

    lines += ["", "## objectives", "",
              "A list of `{ name, direction }` (default: miou ↑, rf ↑, gflops ↓); `direction`",
              "defaults to the metric's own.", "",
              "| name | default direction | known | meaning |", "| --- | --- | --- | --- |"]
    for m in METRICS.values():
        lines.append(f"| `{m.name}` | {m.direction} | "
                     f"{'after training' if m.measured else 'analytic, at ask time'} | "
                     f"{_cell(m.doc)} |")

    lines += ["", "## constraints", "",
              "Checked at ask time; an infeasible candidate is stored as PRUNED and never "
              "trained.", "", "| key | meaning |", "| --- | --- |"]
    for m in CONSTRAINT_METRICS:
        for kind, op in (("min", ">="), ("max", "<=")):
            lines.append(f"| `{kind}_{m}` | `{m}` {op} the value |")
    lines += ["| `gridding_free` | true: only hole-free stacks |",
              "| `allow_dead_taps` | the old spelling of `dead_taps = \"allow\"` (true) or "
              "`\"refuse\"` (false) |"]

    lines += ["", "## sampler", "",
              "`name` picks the sampler (default `hvi`); every other key is a keyword of that",
              "sampler's class.", "", "| name | class |", "| --- | --- |"]
    for name, cls_name in SAMPLERS.items():
        lines.append(f"| `{name}` | `{cls_name}` |")
    hvi = inspect.signature(sampler_class("hvi").__init__).parameters
    opts = [f"`{p.name}` (default `{p.default}`)" for p in hvi.values()
            if p.name not in _DRIVER_ARGS and p.kind is not p.VAR_KEYWORD]
    lines += ["", "hvi's keywords: " + ", ".join(opts) + "."]

    for name, (cls, exclude) in tabs.items():
        header = f"[[{name}]]" if name == "baselines" else f"[{name}]"
        lines += ["", f"## {name}", "", f"`{header}`: the fields of `{cls.__module__}."
                  f"{cls.__name__}`" + (f" but {', '.join(exclude)} (set per net)"
                                        if exclude else "") + ".", ""]
        lines += _dataclass_table(cls, exclude)
    return "\n".join(lines) + "\n"


# -- the CLI -----------------------------------------------------------------------------------

def cli_page() -> str:
    _import_repo()
    import argparse

    from nas_dil.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width: fix it
    parser = build_parser()
    lines = ["# CLI reference", "",
             "Generated from `nas_dil.cli.build_parser()` by `scripts/gen_docs.py` at every docs",
             "build: each subcommand's `--help`. What each does, in one table:",
             "[Commands](../commands.md).", "", "```text", parser.format_help().rstrip(), "```"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        lines += ["", f"## nas-dil {name}", "", "```text", p.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


# -- writing -----------------------------------------------------------------------------------

def generate(out: Path = OUT) -> list[Path]:
    """Write both pages (only when their text changed, so `mkdocs serve` does not loop)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("study_file.md", study_file_page()), ("cli.md", cli_page())):
        path = out / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def on_pre_build(config: Any) -> None:
    """mkdocs hook: regenerate the reference pages before every build."""
    generate()


if __name__ == "__main__":
    for p in generate():
        print(p)
