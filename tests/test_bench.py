"""scripts/bench.py: the quick benchmarks' data functions return sane structures."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nas_dil_bench", REPO / "scripts" / "bench.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nas_dil_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_registry(bench: ModuleType) -> None:
    assert set(bench.BENCHMARKS) == {"scoring", "trial", "orchestration", "search", "proxy",
                                     "gpu"}


def test_search_efficiency(bench: ModuleType, tmp_path: Path) -> None:
    r = bench.search_efficiency(samplers=("random", "nsga2", "brute"), seeds=range(2),
                                budgets=(10, 25), max_trials=320, plot=tmp_path / "hv.png",
                                caps={})
    assert r["candidates"] == 320 and r["exhaustive_hv"] > 0
    assert len(r["reference_point"]) == 3
    for name, s in r["samplers"].items():
        for b in (10, 25):
            v = s["hv_fraction_at"][b]
            assert 0 <= v["min"] <= v["median"] <= v["max"] <= 1 + 1e-9, name
        assert s["hv_fraction_at"][10]["median"] <= s["hv_fraction_at"][25]["median"]
    # brute force tries every candidate once: it ends on the exhaustive front exactly
    assert all(t is not None and t <= 320 for t in r["samplers"]["brute"]["trials_to_95"])
    assert r["best_sampler"] == "nsga2" and isinstance(r["target_met"], bool)
    assert (tmp_path / "hv.png").stat().st_size > 1000


def test_proxy_from_stored_rows(bench: ModuleType, tmp_path: Path) -> None:
    cands = bench.proxy_candidates(bench.TABLE, 30)
    assert len(cands) == 30 and cands == sorted(cands, key=lambda c: c[1])
    out = tmp_path / "proxy.csv"
    rng = np.random.default_rng(0)
    with out.open("w", newline="") as f:
        f.write("# test\n")
        w = csv.DictWriter(f, fieldnames=["schedule", "long_epochs", "long_miou"])
        w.writeheader()
        for s, m in cands:
            w.writerow({"schedule": s, "long_epochs": 32, "long_miou": m + rng.normal(0, 1e-3)})
    r = bench.proxy_fidelity(out=out, train=False)
    assert r["candidates"] == 30 and r["long_epochs"] == 32
    assert 0.5 < r["kendall_tau"] <= 1 and r["target_met"]


def test_gpu_skips_without_cuda(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.bench_gpu(True) == {"skipped": "no CUDA device"}


def test_search_efficiency_builds_hvi_as_the_driver_does(bench: ModuleType) -> None:
    r = bench.search_efficiency(samplers=("hvi",), seeds=range(1), budgets=(10,),
                                max_trials=20, caps={})
    s = r["samplers"]["hvi"]
    assert s["trials_run"] == 20 and 0 < s["hv_fraction_at"][10]["median"] <= 1 + 1e-9
