"""scripts/bench.py and scripts/benchmarks/: the CLI (every benchmark, by name or all) and the
quick benchmarks' data functions return sane structures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench.py"
ALL = {"scoring", "pool", "trial", "orchestration", "search", "proxy", "gpu", "nb201",
       "val_subset", "frozen", "recipes"}


def _bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def benchmarks() -> ModuleType:
    sys.path.insert(0, str(REPO / "scripts"))
    import benchmarks

    return benchmarks


def test_registry(benchmarks: ModuleType) -> None:
    assert set(benchmarks.names()) == ALL
    for name in ALL:
        mod = benchmarks.load(name)
        assert callable(mod.run) and callable(mod.show) and mod.__doc__


def test_cli_names_some_and_rejects_unknown() -> None:
    p = _bench("scoring", "proxy", "gpu", "--quick", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert set(d) & ALL == {"scoring", "proxy", "gpu"}
    assert set(d["scoring"]["cases"]) == {"rates 1-16", "rates 1-64"}
    assert d["proxy"]["candidates"] == 30
    p = _bench("nope")
    assert p.returncode == 2 and "unknown benchmark 'nope'" in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("bench.py: error:")
    help_ = _bench("--help").stdout
    assert all(name in help_ for name in ALL)


@pytest.mark.slow
def test_cli_quick_runs_every_benchmark() -> None:
    """`scripts/bench.py --quick` with no name runs them all (argparse once rejected it)."""
    p = _bench("--quick")
    assert p.returncode == 0, p.stderr
    assert {line[3:] for line in p.stdout.splitlines() if line.startswith("== ")} == ALL


def test_pool(benchmarks: ModuleType) -> None:
    r = benchmarks.load("pool").run(True)
    assert r["pool_size"] == 1024 and 0 < r["candidates"] <= 1024
    assert r["build_s"] > 0 and r["analytic_batch_per_s"] > 0 and r["speedup"] > 0


def test_search_efficiency(benchmarks: ModuleType, tmp_path: Path) -> None:
    search = benchmarks.load("search")
    r = search.search_efficiency(samplers=("random", "nsga2", "brute"), seeds=range(2),
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


def test_proxy_from_stored_rows(benchmarks: ModuleType, tmp_path: Path) -> None:
    proxy = benchmarks.load("proxy")
    cands = proxy.proxy_candidates(proxy.TABLE, 30)
    assert len(cands) == 30 and cands == sorted(cands, key=lambda c: c[1])
    out = tmp_path / "proxy.csv"
    rng = np.random.default_rng(0)
    with out.open("w", newline="") as f:
        f.write("# test\n")
        w = csv.DictWriter(f, fieldnames=["schedule", "long_epochs", "long_miou"])
        w.writeheader()
        for s, m in cands:
            w.writerow({"schedule": s, "long_epochs": 32, "long_miou": m + rng.normal(0, 1e-3)})
    r = proxy.proxy_fidelity(out=out, train=False)
    assert r["candidates"] == 30 and r["long_epochs"] == 32
    assert 0.5 < r["kendall_tau"] <= 1 and r["target_met"]


def test_gpu_skips_without_cuda(benchmarks: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert benchmarks.load("gpu").run(True) == {"skipped": "no CUDA device"}


def test_search_efficiency_builds_hvi_as_the_driver_does(benchmarks: ModuleType) -> None:
    r = benchmarks.load("search").search_efficiency(samplers=("hvi",), seeds=range(1),
                                                    budgets=(10,), max_trials=20, caps={})
    s = r["samplers"]["hvi"]
    assert s["trials_run"] == 20 and 0 < s["hv_fraction_at"][10]["median"] <= 1 + 1e-9


def test_nb201_regret_per_size_budget_by_hand(benchmarks: ModuleType) -> None:
    """Three cells (sizes 1, 1, 2; true accuracy 50, 60, 70): budgets 1 and 2 have best 60
    and 70; trying cell 0 leaves regrets 10 and 20 (mean 15), then cell 2 fixes budget 2 (5),
    then cell 1 leaves none (0). Truth-HV reaches 1 once the front (cells 1, 2) is tried."""
    nb = benchmarks.load("nb201")
    t = object.__new__(nb.Table)
    t.with_latency = False
    t.truth = np.array([50.0, 60.0, 70.0])
    t.size = np.array([1.0, 1.0, 2.0])
    t.latency = np.zeros(3)
    hv, regret = nb.scores([0, 2, 1], t)
    np.testing.assert_allclose(regret, [15.0, 5.0, 0.0])
    assert hv[-1] == pytest.approx(1.0) and hv[0] < hv[1] < hv[2]
