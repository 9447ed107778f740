"""scripts/calibrate_synthetic.py: the study's settings, dead rates and the 2-sigma verdicts."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cal() -> ModuleType:
    path = REPO / "scripts" / "calibrate_synthetic.py"
    spec = importlib.util.spec_from_file_location("nas_dil_calibrate", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nas_dil_calibrate"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_trial_config_is_the_studys(cal: ModuleType) -> None:
    tc = cal.trial_config(REPO / "studies" / "quickstart.toml", 4, 16, threads=1)
    assert tc["arch"]["output_stride"] == 4 and tc["arch"]["width"] == 16
    assert tc["arch"]["stem_width"] == 8  # the study's [arch]
    assert (tc["data"]["image_size"], tc["data"]["n_train"], tc["data"]["n_val"]) == (48, 512, 64)
    assert (tc["train"]["epochs"], tc["train"]["batch_size"], tc["train"]["lr"]) == (10, 12, 0.005)
    assert tc["train"]["threads"] == 1 and tc["train"]["device"] == "cpu"


@pytest.mark.parametrize(("rates", "crop", "os", "dead"), [
    ((1, 3, 9), 48, 8, [9]),  # 6-px map: rate 9 (and 6 or more) reads only padding
    ((1, 2, 5), 48, 8, []),
    ((1, 3, 5), 48, 4, []),  # 12-px map
    ((1, 1, 2, 4, 8, 16, 1), 64, 4, [16]),  # 16-px map: 16 is dead, 8 is not
    ((2, 4, 8), 64, 8, [8]),
])
def test_dead_rates(cal: ModuleType, rates: tuple[int, ...], crop: int, os: int,
                    dead: list[int]) -> None:
    assert cal.dead_rates(rates, crop, os) == dead


def test_analytic_flops_depend_on_depth_not_rates(cal: ModuleType) -> None:
    tc = cal.trial_config(REPO / "studies" / "quickstart.toml", 4, 16, threads=1)
    same = {cal.analytic_flops(tc, r) for r in ((1, 3, 5), (1, 1, 1), (3, 3, 3))}
    assert len(same) == 1 and cal.analytic_flops(tc, (1, 1, 1, 1)) > same.pop()


def test_summarise_verdicts(cal: ModuleType) -> None:
    good, small, grid = [0.50, 0.52, 0.51], [0.40, 0.42, 0.41], [0.49, 0.53, 0.47]
    results = [{"kind": k, "lr_scale": 1.0, "lr": 0.01, "seed": i, "miou": m, "rates": [1],
                "rf": 31} for k, ms in (("good", good), ("small_rf", small), ("gridded", grid))
               for i, m in enumerate(ms)]
    rows = {r["kind"]: r for r in cal.summarise(results, [1.0])}
    assert rows["small_rf"]["gap"] == pytest.approx(0.10)
    assert rows["small_rf"]["bar"] == pytest.approx(2 * statistics.stdev(good))
    assert rows["small_rf"]["holds"] and rows["small_rf"]["wins"] == 3
    assert rows["gridded"]["bar"] == pytest.approx(2 * statistics.stdev(grid))
    assert not rows["gridded"]["holds"]  # gap 0.013 < 2 x 0.03
    table = cal.markdown(list(rows.values()))
    assert table.count("\n") == 4 and "**yes**" in table and "| no |" in table
    assert all(line.count("|") == 11 for line in table.splitlines())
