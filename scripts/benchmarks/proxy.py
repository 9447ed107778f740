"""Proxy fidelity: Kendall tau between the short-budget mIoU of the table (what tabular trials
read; the budget of scripts/make_tabular.py) and a 4x longer budget over >= 30 candidates
spread over the table's mIoU range (stored, resumable: benchmarks/proxy_fidelity.csv;
--quick only recomputes tau from that file)."""

from __future__ import annotations

import csv
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import PROXY, SCRIPTS, TABLE


def _make_tabular() -> Any:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import make_tabular

    return make_tabular


def proxy_candidates(table_path: Path, n: int, seed: int = 0) -> list[tuple[str, float]]:
    """``n`` schedules spread evenly over the table's mIoU ranking (seed ``seed``), with
    their short-budget mIoU."""
    from nas_dil.search.tabular import load_table

    rows = sorted(((k[0], r["miou"]) for k, r in load_table(table_path).rows.items()
                   if k[4] == seed), key=lambda x: x[1])
    idx = np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))
    return [rows[i] for i in idx]


def proxy_fidelity(table_path: Path = TABLE, out: Path = PROXY, n: int = 30, factor: int = 4,
                   workers: int = 2, budget: dict[str, dict[str, Any]] | None = None,
                   train: bool = True) -> dict[str, Any]:
    """Train each candidate at ``factor`` × the table's epochs (seed 0; rows already in
    ``out`` are kept: resumable) and compare with the table's short-budget mIoU."""
    from scipy.stats import kendalltau, spearmanr

    mt = _make_tabular()
    budget = budget or mt.BUDGET
    long_epochs = int(budget["train"]["epochs"]) * factor
    cands = proxy_candidates(table_path, n)
    done: dict[str, dict[str, str]] = {}
    if out.exists() and out.stat().st_size > 0:
        done = {r["schedule"]: r for r in mt.read_rows(out)
                if int(r["long_epochs"]) == long_epochs}
    todo = [s for s, _ in cands if s not in done] if train else []
    fields = ["schedule", "rf", "holes", "gridding_free", "short_epochs", "short_miou",
              "long_epochs", "long_miou", "long_curve", "long_train_time_s"]
    short = dict(cands)
    if todo:
        new = not out.exists() or out.stat().st_size == 0
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", newline="") as f, ProcessPoolExecutor(workers) as pool:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                f.write(f"# proxy fidelity: table {table_path.name} (short budget) vs "
                        f"{factor}x epochs, seed 0; made {time.strftime('%Y-%m-%d')}; "
                        f"budget {budget}\n")
                w.writeheader()
            futs = {pool.submit(mt.train_row, tuple(int(x) for x in s.split("-")), 0,
                                long_epochs, budget): s for s in todo}
            for fut in as_completed(futs):
                r = fut.result()
                row = {"schedule": r["schedule"], "rf": r["rf"], "holes": r["holes"],
                       "gridding_free": r["gridding_free"],
                       "short_epochs": budget["train"]["epochs"],
                       "short_miou": short[r["schedule"]], "long_epochs": long_epochs,
                       "long_miou": r["miou"], "long_curve": r["miou_curve"],
                       "long_train_time_s": r["train_time_s"]}
                w.writerow(row)
                f.flush()
                done[r["schedule"]] = {k: str(v) for k, v in row.items()}
    pairs = [(short[s], float(done[s]["long_miou"])) for s, _ in cands if s in done]
    if len(pairs) < 3:
        return {"candidates": len(pairs), "error": f"only {len(pairs)} candidates measured"}
    a, b = np.array(pairs).T
    tau = kendalltau(a, b)
    rho = spearmanr(a, b)
    return {"candidates": len(pairs), "short_epochs": int(budget["train"]["epochs"]),
            "long_epochs": long_epochs, "kendall_tau": round(float(tau.statistic), 3),
            "tau_pvalue": float(tau.pvalue), "spearman_rho": round(float(rho.statistic), 3),
            "short_miou_range": [round(float(a.min()), 4), round(float(a.max()), 4)],
            "long_miou_range": [round(float(b.min()), 4), round(float(b.max()), 4)],
            "target_met": len(pairs) >= 30, "file": str(out)}


def run(quick: bool) -> dict[str, Any]:
    if quick:  # no training: tau from the stored run
        return proxy_fidelity(train=False)
    return proxy_fidelity()


def show(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"  {r['error']}")
        return
    print(f"  {r['candidates']} candidates, {r['short_epochs']} vs {r['long_epochs']} epochs: "
          f"Kendall tau {r['kendall_tau']} (p {r['tau_pvalue']:.1e}), Spearman rho "
          f"{r['spearman_rho']}")
