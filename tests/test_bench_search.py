"""The v2 search benchmark (scripts/benchmarks/search.py) and its table
(scripts/make_tabular.py --v2): the wide table round-trips through the search's loader, the
regret per cost level matches hand-computed values, the variants keep what they promise, and
`scripts/bench.py search --quick` runs through the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from nas_dil.search.tabular import TableError, load_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def search() -> ModuleType:
    sys.path.insert(0, str(REPO / "scripts"))
    import benchmarks

    return benchmarks.load("search")


@pytest.fixture(scope="module")
def make_tabular() -> ModuleType:
    sys.path.insert(0, str(REPO / "scripts"))
    import make_tabular

    return make_tabular


def _fake_runs(mt: ModuleType, path: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict]:
    """Runs rows of the v2 space (analytic columns from nas-dil, made-up mIoU: larger with
    width and RF, plus a seed offset), written as the build writes them."""
    from nas_dil.models.analytic import analytic_batch
    from nas_dil.spaces import load_space

    cands = list(load_space(REPO / mt.V2_SPACE).enumerate())
    a = analytic_batch(cands, {"stem_width": 8, "num_classes": 4}, 40)
    rows = []
    for s in seeds:
        for i, c in enumerate(cands):
            m = 0.3 + 0.01 * c.width + 0.002 * float(a["rf"][i]) + 0.01 * s
            rows.append({"schedule": "-".join(map(str, c.rates)), "depth": c.depth,
                         "kernel": c.kernel, "output_stride": c.output_stride, "width": c.width,
                         "rf": int(a["rf"][i]), "rf_nominal": int(a["rf_nominal"][i]),
                         "dead_taps": 0, "rf_stack": 1, "holes": 0, "gridding_free": True,
                         "hdc": False, "macs": int(a["macs"][i]),
                         "gflops": float(a["gflops"][i]), "params": 1, "seed": s,
                         "miou": round(m, 6), "pixel_acc": 0.9,
                         "miou_curve": f"{m / 2:.4f} {m:.4f}", "train_time_s": 1.0})
    with path.open("w", newline="") as f:
        f.write("# fake runs\n")
        w = csv.DictWriter(f, fieldnames=mt.RUN_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return rows


def test_wide_table_round_trips_through_the_loader(make_tabular: ModuleType,
                                                   search: ModuleType, tmp_path: Path) -> None:
    runs = tmp_path / "t_runs.csv"
    _fake_runs(make_tabular, runs)
    out = tmp_path / "t.csv"
    assert make_tabular.write_table(out, runs, (0, 1, 2)) == 160
    t = load_table(out)
    assert t.seeds == [0, 1, 2] and len(t.rows) == 480
    row0, row2 = t.rows[("1-2-3", 3, 4, 16, 0)], t.rows[("1-2-3", 3, 4, 16, 2)]
    assert row2["miou"] == pytest.approx(row0["miou"] + 0.02)
    assert row0["miou_mean"] == pytest.approx(row0["miou"] + 0.01)  # mean of +0, +0.01, +0.02
    assert row0["miou_curve"] == [pytest.approx(row0["miou"] / 2, abs=1e-4),
                                  pytest.approx(row0["miou"], abs=1e-4)]
    tab = search.load_v2(out)
    assert tab.looks.shape == (160, 3) and len(np.unique(tab.gflops)) == 4
    np.testing.assert_allclose(tab.truth, tab.looks.mean(axis=1))
    # a candidate missing a seed is left out of the table, never half-written
    (tmp_path / "u_runs.csv").write_text(runs.read_text().rsplit("\n", 2)[0] + "\n")
    assert make_tabular.write_table(tmp_path / "u.csv", tmp_path / "u_runs.csv",
                                    (0, 1, 2)) == 159


def test_wide_table_errors_name_the_row(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    p.write_text("schedule,kernel,output_stride,width,seeds,miou,miou_s0,miou_curve_s0\n"
                 "1-2,3,4,8,0 1,0.5,0.5,0.4 0.5\n")
    with pytest.raises(TableError,
                       match="data row 1: seeds = '0 1' but no column miou_s1, miou_curve_s1"):
        load_table(p)
    p.write_text("schedule,kernel,output_stride,width,seeds\n1-2,3,4,8,0\n")
    with pytest.raises(TableError, match="missing columns miou"):
        load_table(p)


@pytest.mark.parametrize(("tried", "expected"), [
    # cost levels 1, 2, 3; truth 0.5 0.6 (cost 1), 0.7 (cost 2), 0.65 (cost 3):
    # best at cost <= 1, 2, 3: 0.6, 0.7, 0.7
    ([0], [0.1, 0.2, 0.2]),  # 0.5 reached everywhere: (0.1 + 0.2 + 0.2) / 3
    ([3], [0.6, 0.7, 0.05]),  # only cost 3 tried: nothing reached at 1 and 2 (mIoU 0)
    ([0, 2], [0.1, 0.0, 0.0]),
    ([0, 2, 1], [0.0, 0.0, 0.0]),
])
def test_regret_per_cost_level_by_hand(search: ModuleType, tried: list[int],
                                       expected: list[float]) -> None:
    truth = np.array([0.5, 0.6, 0.7, 0.65])
    cost = np.array([1.0, 1.0, 2.0, 3.0])
    got = search.regret_per_cost_level(truth, cost, tried)
    assert got[-1] == pytest.approx(np.mean(expected))
    assert np.all(np.diff(got) <= 1e-12)  # trying more never raises the regret


@pytest.mark.parametrize(("tried", "seen", "expected"), [
    # the table of the test above; the pick within each budget is the best observed mean
    ([0, 1], [0.9, 0.2], [0.1, 0.2, 0.2]),  # lucky look at 0 hides 1 (truth .6): .5 picked
    ([0, 1, 1], [0.9, 0.2, 0.9], [0.1, 0.2, 0.2]),  # 1's mean .55 < .9: still 0
    ([0, 1, 0], [0.9, 0.6, 0.1], [0.0, 0.1, 0.1]),  # 0's 2nd look: mean .5 < .6, 1 picked
    ([3, 2], [0.8, 0.5], [0.6, 0.0, 0.05]),  # 3 seen better than 2: picked at cost 3
    ([2], [0.1], [0.6, 0.0, 0.0]),
])
def test_pick_regret_by_hand(search: ModuleType, tried: list[int], seen: list[float],
                             expected: list[float]) -> None:
    truth = np.array([0.5, 0.6, 0.7, 0.65])
    cost = np.array([1.0, 1.0, 2.0, 3.0])
    got = search.pick_regret_per_cost_level(truth, cost, tried, seen)
    assert got[-1] == pytest.approx(np.mean(expected))
    # with the truth as the looks, the pick is the best tried: the regret of what was tried
    np.testing.assert_allclose(search.pick_regret_per_cost_level(truth, cost, tried,
                                                                 truth[tried]),
                               search.regret_per_cost_level(truth, cost, tried))


def test_variants_keep_their_promises(make_tabular: ModuleType, search: ModuleType,
                                      tmp_path: Path) -> None:
    _fake_runs(make_tabular, tmp_path / "t_runs.csv")
    make_tabular.write_table(tmp_path / "t.csv", tmp_path / "t_runs.csv", (0, 1, 2))
    tab = search.load_v2(tmp_path / "t.csv")
    ctl = search.reshape(tab, "control")
    assert sorted(map(tuple, ctl.looks)) == sorted(map(tuple, tab.looks))  # same rows
    assert not np.array_equal(ctl.looks, tab.looks)
    n2 = search.reshape(tab, "noise2")
    np.testing.assert_allclose(n2.truth, tab.truth)
    np.testing.assert_allclose(n2.looks - n2.truth[:, None],
                               2 * (tab.looks - tab.truth[:, None]), atol=1e-12)
    mir, i = search.reshape(tab, "mirror"), tab.index
    assert mir.looks[i[("1-2-5", 3, 4, 8)]].tolist() == tab.looks[i[("5-2-1", 3, 4, 8)]].tolist()
    ws = search.reshape(tab, "width_swap")
    assert ws.looks[i[("1-2-5", 3, 4, 8)]].tolist() == tab.looks[i[("1-2-5", 3, 4, 16)]].tolist()
    hv = search.truth_hv_share(tab, range(len(tab.keys)))
    assert hv[-1] == pytest.approx(1.0) and np.all(np.diff(hv) >= -1e-12)


def test_hard_shapes_keep_their_promises(make_tabular: ModuleType, search: ModuleType,
                                        tmp_path: Path) -> None:
    _fake_runs(make_tabular, tmp_path / "t_runs.csv")
    make_tabular.write_table(tmp_path / "t.csv", tmp_path / "t_runs.csv", (0, 1, 2))
    tab = search.load_v2(tmp_path / "t.csv")
    assert search.expand_shapes(["table", "rf_hurts", "mid_best:1"]) == [
        "table", "rf_hurts:0", "rf_hurts:1", "rf_hurts:2", "mid_best:1"]
    depth = np.array([len(k[0].split("-")) for k in tab.keys])
    levels = np.unique(tab.gflops)
    for shape in search.expand_shapes(["hard"]):
        h = search.reshape(tab, shape)
        assert sorted(map(tuple, h.looks)) == sorted(map(tuple, tab.looks))  # same rows
        assert h.shape == shape
    for d in (0, 1):  # shuffled among candidates of one depth only, differently per draw
        h = search.reshape(tab, f"shuffle_depth:{d}")
        for k in np.unique(depth):
            assert sorted(h.truth[depth == k]) == pytest.approx(sorted(tab.truth[depth == k]))
    assert not np.array_equal(search.reshape(tab, "shuffle_depth:0").looks,
                              search.reshape(tab, "shuffle_depth:1").looks)
    rh = search.reshape(tab, "rf_hurts:0")
    for g in levels:  # within a GFLOPs level the same values, and mIoU falls with RF
        at = tab.gflops == g
        assert sorted(rh.truth[at]) == pytest.approx(sorted(tab.truth[at]))
        lo, hi = tab.rf[at] == tab.rf[at].min(), tab.rf[at] == tab.rf[at].max()
        if np.ptp(tab.rf[at]) > 0:  # the smallest RF's mean mIoU above the largest's
            assert rh.truth[at][lo].mean() > rh.truth[at][hi].mean()
            assert tab.truth[at][lo].mean() < tab.truth[at][hi].mean()  # (was the reverse)
    mb = search.reshape(tab, "mid_best:0")
    best = int(np.argmax(mb.truth))
    assert mb.gflops[best] not in (levels[0], levels[-1])  # the best sits at middle cost


@pytest.mark.skipif(not (REPO / "benchmarks" / "tabular_v2.csv").exists(),
                    reason="benchmarks/tabular_v2.csv not built")
def test_quick_benchmark_through_the_cli() -> None:
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "search", "--quick",
                        "--json"], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)["search"]
    assert set(r["shapes"]) == {"table", "control"}
    for x in r["shapes"].values():
        assert x["candidates"] == 160 and x["cost_levels"] == 4
        for s in x["samplers"].values():
            assert 1 <= s["to_regret"]["median"] <= s["n_trials"] + 1
            assert 0 < s["hv_at_20"] <= 1 + 1e-9
