"""scripts/benchmarks/val_subset.py: Kendall tau-b against hand-computed values (ties
included) and scipy, top-k, and the `--quick` path through `scripts/bench.py`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vs() -> ModuleType:
    sys.path.insert(0, str(REPO / "scripts"))
    import benchmarks

    return benchmarks.load("val_subset")


# (x, y, tau-b) computed by hand: C concordant, D discordant pairs, n0 = n(n-1)/2 pairs,
# n1 / n2 pairs tied in x / y; tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2))
TAU_B = [
    ([1, 2, 3], [1, 2, 3], 1.0),  # C 3
    ([1, 2, 3], [3, 2, 1], -1.0),  # D 3
    ([1, 2, 3, 4], [1, 3, 2, 4], 4 / 6),  # C 5, D 1
    ([1, 2, 2, 3], [1, 2, 3, 3], 0.8),  # C 4, one tie in x, one in y: 4 / sqrt(5 * 5)
    ([1, 2, 3, 4], [1, 1, 2, 3], 5 / np.sqrt(30)),  # C 5, one tie in y: 5 / sqrt(6 * 5)
    ([1, 1, 2, 2], [1, 2, 1, 2], 0.0),  # C 1, D 1, two ties each: 0 / sqrt(4 * 4)
    ([0.5, 0.1, 0.9, 0.3, 0.7], [0.4, 0.2, 0.8, 0.1, 0.3], 0.6),  # C 8, D 2 of 10
]


@pytest.mark.parametrize(("x", "y", "want"), TAU_B)
def test_kendall_tau_b_by_hand(vs: ModuleType, x: list[float], y: list[float],
                               want: float) -> None:
    assert vs.kendall_tau_b(x, y) == pytest.approx(want, abs=1e-12)
    assert vs.kendall_tau_b(y, x) == pytest.approx(want, abs=1e-12)  # symmetric


def test_kendall_tau_b_constant_and_bad_shapes(vs: ModuleType) -> None:
    assert np.isnan(vs.kendall_tau_b([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="shapes"):
        vs.kendall_tau_b([1, 2, 3], [1, 2])


def test_kendall_tau_b_against_scipy(vs: ModuleType) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (2, 5, 12, 30):
        for _ in range(20):
            x = rng.integers(0, 4, n)  # few values: many ties
            y = x + rng.integers(-2, 3, n)
            want = stats.kendalltau(x, y).statistic
            got = vs.kendall_tau_b(x, y)
            assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12)


def test_top_k_and_agreement(vs: ModuleType) -> None:
    full = np.array([0.5, 0.9, 0.7, 0.1])
    assert vs.top_k(full, 1) == {1} and vs.top_k(full, 3) == {0, 1, 2}
    swapped = np.array([0.5, 0.7, 0.9, 0.1])  # best two swapped: one discordant pair of 6
    a = vs.agreement(full, swapped)
    # the better half by full mIoU is candidates 1 and 2, in reverse order: tau -1; keeping
    # candidate 2 (0.7) instead of 1 (0.9) loses 0.2 of full-validation mIoU
    assert a == {"tau": pytest.approx(4 / 6), "tau_top_half": -1.0, "top1": 0.0, "top3": 1.0,
                 "regret": pytest.approx(0.2)}


def test_quick_through_the_cli() -> None:
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "val_subset",
                        "--quick", "--json"], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)["val_subset"]
    assert len(r["candidates"]) == 4 and r["n_val"] == 24
    assert set(r["subsets"]) == {"4", "8"} and set(r["val_sizes"]) == {"24"}
    # a subset's mIoU from summed per-image matrices is what evaluate() gives on that subset
    assert r["summed_equals_evaluate"] is True
    for s in [*r["subsets"].values(), *r["val_sizes"].values()]:
        tau = s.get("tau_mean", s.get("tau"))
        assert tau is None or np.isnan(tau) or -1 <= tau <= 1
        assert s["eval_s"] > 0
