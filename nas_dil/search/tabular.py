"""The tabular dilation benchmark: trained mIoU per (schedule, seed), read from a CSV.

`scripts/make_tabular.py` trains every candidate of a small finite space and writes the table
(leading ``#`` lines are comments: provenance, budget). Two layouts:

- long (`benchmarks/tabular_dilation.csv`): one row per (candidate, seed), columns ``seed``,
  ``miou``, ``miou_curve``;
- wide (`benchmarks/tabular_v2.csv`, ``--v2``): one row per candidate, ``seeds`` (e.g.
  ``0 1 2``), ``miou`` the seed mean, and per seed *k* ``miou_s<k>``, ``miou_curve_s<k>``
  (``pixel_acc_s<k>``). It is read as the long layout would be (one entry per seed, ``miou``
  that seed's), each entry also carrying ``miou_mean``.
A study with ``[trial] kind = "tabular"`` reads each trial's mIoU curve from it instead of
training, so sampler comparisons run in seconds and repeat exactly. RF, holes and FLOPs stay
analytic (the driver computes them as for any trial). A candidate the table lacks is a
one-line `TableError` when the study file is parsed, never a crash mid-search.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nas_dil.errors import UserError

__all__ = ["Table", "TableError", "load_table", "schedule_key"]

REQUIRED = ("schedule", "kernel", "output_stride", "width", "seed", "miou", "miou_curve")
REQUIRED_WIDE = ("schedule", "kernel", "output_stride", "width", "seeds", "miou")


class TableError(UserError, ValueError):
    """A missing, malformed or incomplete benchmark table; one line."""


def schedule_key(rates: Iterable[int]) -> str:
    """The table's schedule column: rates joined by '-' (``1-2-4``)."""
    return "-".join(str(int(r)) for r in rates)


@dataclass(frozen=True)
class Table:
    path: Path
    rows: dict[tuple[str, int, int, int, int], dict[str, Any]]  # (sched, K, OS, width, seed)
    comments: tuple[str, ...]  # the leading '#' lines, without '# '

    @property
    def seeds(self) -> list[int]:
        return sorted({k[4] for k in self.rows})

    def lookup(self, rates: Sequence[int], kernel: int, output_stride: int, width: int,
               seed: int) -> dict[str, Any]:
        key = (schedule_key(rates), int(kernel), int(output_stride), int(width), int(seed))
        row = self.rows.get(key)
        if row is None:
            raise TableError(
                f"{self.path}: no row for schedule {key[0]} (K {key[1]}, output stride "
                f"{key[2]}, width {key[3]}) and seed {key[4]} (table seeds: "
                f"{', '.join(map(str, self.seeds))}; {len(self.rows)} rows)")
        return row

    def check_space(self, space: Any, seed: int,
                    extra_rates: Iterable[Sequence[int]] = ()) -> int:
        """Every candidate of ``space`` (and each of ``extra_rates`` at the space's first
        output stride and width, K 3) has a row of ``seed``; returns the count checked."""
        n = 0
        for c in space.enumerate():
            self.lookup(c.rates, c.kernel, c.output_stride, c.width, seed)
            n += 1
        cfg = space.config
        for rates in extra_rates:
            self.lookup(rates, 3 if 3 in cfg.kernel else cfg.kernel[0], cfg.output_stride[0],
                        cfg.width[0], seed)
            n += 1
        return n


def _parse(path: Path) -> Table:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise TableError(f"{path}: cannot read: {e.strerror or e}") from None
    comments = tuple(ln.lstrip("#").strip() for ln in lines if ln.startswith("#"))
    reader = csv.DictReader(ln for ln in lines if not ln.startswith("#"))
    fields = reader.fieldnames or []
    wide = "seeds" in fields
    missing = [f for f in (REQUIRED_WIDE if wide else REQUIRED) if f not in fields]
    if missing:
        raise TableError(f"{path}: not a tabular benchmark: missing columns {', '.join(missing)}")
    rows: dict[tuple[str, int, int, int, int], dict[str, Any]] = {}
    for i, r in enumerate(reader, 2):
        try:
            for seed, row in (_wide_entries(r) if wide else [(int(r["seed"]), _entry(r, ""))]):
                key = (r["schedule"], int(r["kernel"]), int(r["output_stride"]),
                       int(r["width"]), seed)
                rows[key] = row
        except (TypeError, ValueError, KeyError) as e:
            raise TableError(f"{path}: data row {i - 1}: {e}") from None
    if not rows:
        raise TableError(f"{path}: no rows")
    return Table(path, rows, comments)


def _entry(r: dict[str, str], suffix: str) -> dict[str, Any]:
    """One (candidate, seed) entry: the seed's columns (``miou<suffix>`` …) as the long
    layout's ``miou``, ``miou_curve``, ``pixel_acc``."""
    curve = [float(x) for x in r["miou_curve" + suffix].split()]
    if not curve:
        raise ValueError(f"empty miou_curve{suffix}")
    row: dict[str, Any] = {**r, "miou": float(r["miou" + suffix]), "miou_curve": curve}
    for col in ("pixel_acc", "train_time_s"):
        v = r.get(col + suffix) if col == "pixel_acc" else r.get(col)
        if v not in (None, ""):
            row[col] = float(v)  # type: ignore[arg-type]
    return row


def _wide_entries(r: dict[str, str]) -> list[tuple[int, dict[str, Any]]]:
    seeds = [int(s) for s in r["seeds"].split()]
    if not seeds:
        raise ValueError(f"no seeds in seeds = {r['seeds']!r}")
    missing = [c for s in seeds for c in (f"miou_s{s}", f"miou_curve_s{s}") if c not in r]
    if missing:
        raise ValueError(f"seeds = {r['seeds']!r} but no column {', '.join(missing)}")
    mean = float(r["miou"])
    return [(s, _entry(r, f"_s{s}") | {"miou_mean": mean}) for s in seeds]


@lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> Table:
    return _parse(Path(path))


def load_table(path: str | Path) -> Table:
    """The table at ``path`` (parsed once per process and file version)."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as e:
        raise TableError(f"{p}: cannot read: {e.strerror or e}") from None
    return _cached(str(p), mtime)
