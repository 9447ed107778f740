"""What several benchmarks share: paths, best-of timing, the "met" word."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
TABLE = REPO / "benchmarks" / "tabular_dilation.csv"
PROXY = REPO / "benchmarks" / "proxy_fidelity.csv"
TABULAR_SPACE = REPO / "search_spaces" / "tabular.toml"
TABULAR_STUDY = REPO / "studies" / "tabular.toml"
QUICKSTART = REPO / "studies" / "quickstart.toml"


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The shortest of ``repeats`` wall times of ``fn()``, seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def met(ok: object) -> str:
    return "met" if ok else "NOT met"


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (for stable JSON)."""
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
TABLE_V2 = REPO / "benchmarks" / "tabular_v2.csv"
TABULAR_V2_SPACE = REPO / "search_spaces" / "tabular_v2.toml"
TABULAR_V2_STUDY = REPO / "studies" / "tabular_v2.toml"


def optuna_sampler(label: str, seed: int) -> object:
    """The Optuna sampler a benchmark compares hvi with, by label (tpe_mv: TPE, multivariate;
    nsga2; gp: GPSampler; brute: the no-repeat random order; anything else: random)."""
    import optuna

    s = optuna.samplers
    makers: dict[str, Callable[[], object]] = {
        "tpe_mv": lambda: s.TPESampler(seed=seed, multivariate=True, group=True),
        "nsga2": lambda: s.NSGAIISampler(seed=seed),
        "gp": lambda: s.GPSampler(seed=seed),
        "brute": lambda: s.BruteForceSampler(seed=seed),
    }
    return makers.get(label, lambda: s.RandomSampler(seed=seed))()
