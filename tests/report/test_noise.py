"""Seed noise on the report's data: error bars, "within noise", the knee's neighbours, the
chance level and its warning, the RF axis the study searches (hand-computed values)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from nas_dil.cli import main
from nas_dil.report.data import ReportData, build_report, chance_miou
from nas_dil.spaces import Candidate
from tests.report.studies import OBJECTIVES, Spec, add_trial, meta, new_study

# 4 classes in the val labels, the first holding 60 % of the pixels: chance = 0.6 / 4
PIXELS = [600, 200, 100, 100, 0]  # a fifth class absent from the labels: out of the mean
CHANCE = 0.15


def _look(rates: tuple[int, ...], look: int) -> dict[str, Any]:
    key = Candidate(rates, 3, 8, 16).key()
    return {"key": f"{key}#look{look}", "look": look, "look_of": key} if look else {}


# (rates, looks' mIoU, rf, gflops). A: mean 0.82 ± 0.0283; B: 0.78 ± 0.02; E: 0.81;
# D: at A's cost, 0.015 below it (dominated); C: dominated by A at a worse RF.
# Pooled noise: sqrt((1·0.0008 + 2·0.0004) / 3) = 0.023094.
NOISY = [((1, 2, 5), [0.80, 0.84], 100, 2.0), ((1, 2, 3), [0.78, 0.80, 0.76], 80, 1.0),
         ((2, 2, 2), [0.81], 70, 2.5), ((1, 3, 5), [0.805], 100, 2.0),
         ((1, 2, 4), [0.81], 90, 1.5)]
NOISE = math.sqrt(0.0016 / 3)


def _study(out: Path, rows: list[tuple[tuple[int, ...], list[float], float, float]],
           pixels: list[int] | None = PIXELS, objectives: list[dict[str, str]] = OBJECTIVES
           ) -> Path:
    study = new_study(out, objectives)
    m = meta(out, objectives)
    if pixels is not None:
        m["data"] = {**m["data"], "val_class_pixels": pixels,
                     "class_names": ["bg", "a", "b", "c", "d"]}
    study.set_user_attr("nas_dil", m)
    for rates, looks, rf, gflops in rows:
        for i, y in enumerate(looks):
            add_trial(study, Spec(rates, miou=y, rf=rf, gflops=gflops, extra=_look(rates, i)))
    return out


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    return build_report(_study(tmp_path_factory.mktemp("noisy"), NOISY))


def _by_rates(d: ReportData, rates: str) -> int:
    return next(r for r in d.pareto if r.schedule == rates).number


def test_noise_is_pooled_over_candidates_with_two_looks(noisy: ReportData) -> None:
    assert noisy.noise == pytest.approx(NOISE)
    assert "2 candidate(s)" in noisy.noise_note and f"{NOISE:.4f}" in noisy.noise_note


def test_error_bars_only_where_two_looks_or_more(noisy: ReportData) -> None:
    for s in noisy.scatters:
        err = dict(zip(s.numbers, s.y_err, strict=True))
        a, b, e = (_by_rates(noisy, r) for r in ("1,2,5", "1,2,3", "1,2,4"))
        assert err[a] == pytest.approx(math.sqrt(0.0008))
        assert err[b] == pytest.approx(0.02)
        assert err[e] is None
        assert sorted(y for y in s.y_err if y is not None) == pytest.approx(
            [0.02, math.sqrt(0.0008)])


def test_a_front_member_within_the_noise_of_a_dominated_one_at_its_cost(
        noisy: ReportData) -> None:
    a = _by_rates(noisy, "1,2,5")
    d = next(n for n, s in zip(noisy.scatters[1].numbers, noisy.scatters[1].labels,
                               strict=True) if "[1,3,5]" in s)
    assert noisy.within_noise == {a: d}  # C (2,2,2) is dominated too, but at a worse RF
    row = next(r for r in noisy.pareto if r.number == a)
    assert row.within_noise == d
    col = [c.key for c in noisy.table.columns].index("within_noise")
    assert [cells[col] for cells in noisy.table.rows if cells[col]] == [f"≈ #{d}"]
    s = noisy.scatters[1]
    assert [n for n, w in zip(s.numbers, s.within_noise, strict=True) if w] == [a]


def test_the_knee_is_flagged_when_a_neighbour_is_within_the_noise(noisy: ReportData) -> None:
    e, a = _by_rates(noisy, "1,2,4"), _by_rates(noisy, "1,2,5")
    assert noisy.knee == e  # normalised distance 0.75 (A: 1, B: 1.41)
    assert noisy.knee_close is not None
    assert f"#{a} (mIoU 0.8200, Δ 0.0100)" in noisy.knee_close
    assert "#" + str(_by_rates(noisy, "1,2,3")) + " " not in noisy.knee_close  # Δ 0.03 > noise


@pytest.mark.parametrize(("data", "chance"), [
    ({"val_class_pixels": PIXELS}, CHANCE),
    ({"val_class_pixels": [10, 30]}, 0.75 / 2),
    ({"val_class_pixels": [5]}, 1.0),
    ({"val_class_pixels": [0, 0]}, None),
    ({"source": "synthetic"}, None),  # not recorded (older studies)
    (None, None),
])
def test_chance_level_by_hand(data: object, chance: float | None) -> None:
    got = chance_miou(data)
    assert (None if got is None else got[0]) == (None if chance is None
                                                 else pytest.approx(chance))


def test_chance_line_on_the_miou_axes_and_no_warning_above_it(noisy: ReportData) -> None:
    assert noisy.chance == pytest.approx(CHANCE)
    assert noisy.chance_note is not None and "'bg'" in noisy.chance_note
    for s in noisy.scatters:
        assert s.y_marks == ((pytest.approx(CHANCE), "chance level 0.150"),)
    assert noisy.warnings == []


def test_trials_near_chance_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [((1, 2, 5), [0.22, 0.30], 100, 2.0), ((1, 2, 3), [0.25], 80, 1.0),
            ((2, 2, 2), [0.28], 70, 0.5)]
    out = _study(tmp_path / "low", rows)
    d = build_report(out)
    assert len(d.warnings) == 2
    assert d.warnings[0].startswith("near chance level: the best mIoU 0.2800 is within 2× of "
                                    "the chance level 0.1500")
    assert "spread 0.0300 is below the seed noise 0.0566" in d.warnings[1]
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warning: near chance level" in printed
    assert "chance level 0.150: predicting the majority class 'bg'" in printed


def test_no_chance_line_when_the_study_did_not_record_the_labels(tmp_path: Path) -> None:
    d = build_report(_study(tmp_path / "s", NOISY[:2], pixels=None))
    assert d.chance is None and all(s.y_marks == () for s in d.scatters)


def test_one_look_each_leaves_the_noise_unknown(tmp_path: Path) -> None:
    d = build_report(_study(tmp_path / "s", [(r, ys[:1], rf, g) for r, ys, rf, g in NOISY]))
    assert d.noise is None and d.within_noise == {} and d.knee_close is None
    assert d.noise_note.startswith("seed noise unknown")
    assert all(e is None for s in d.scatters for e in s.y_err)


@pytest.mark.parametrize(("objective", "label"), [
    # these trials record no rf_nominal (as before 0.2): their rf is the nominal RF
    ("rf", "nominal RF (image px; rf: the study's RF objective)"),
    ("rf_stack", "RF of the searched layers (their input px; rf_stack: the study's RF "
                 "objective)"),
])
def test_the_rf_axis_is_the_studys_rf_objective(tmp_path: Path, objective: str,
                                                label: str) -> None:
    objs = [OBJECTIVES[0], {"name": objective, "direction": "maximize"}, OBJECTIVES[2]]
    rows = [((1, 2, 5), [0.6], 100, 2.0), ((1, 2, 3), [0.5], 80, 1.0),
            ((1, 1, 1), [0.4], 60, 0.5)]
    d = build_report(_study(tmp_path / objective, rows, objectives=objs))
    s = d.scatters[1]
    want = {"rf": [100, 80, 60], "rf_stack": [17, 13, 7]}[objective]  # stack: 1 + 2·Σ r
    assert s.x == want and s.constant is None
    assert s.x_label == label
    assert d.scatters[0].color == want and d.scatters[0].color_label == label


def test_a_constant_axis_states_its_value_instead_of_a_line(tmp_path: Path) -> None:
    # (these trials record no rf_nominal, as before 0.2: their rf is the nominal RF)
    rows = [((1, 2, 5), [0.6], 48, 1.0), ((1, 2, 3), [0.5], 48, 1.0),
            ((1, 1, 1), [0.4], 48, 1.0)]
    d = build_report(_study(tmp_path / "flat", rows))
    for s, note in zip(d.scatters, ("every trial: GFLOPs = 1 per image",
                                    "every trial: nominal RF = 48 image px"), strict=True):
        assert s.constant == note and note in s.title and note in s.x_label
        assert s.x == [float(n) for n in s.numbers]  # spread over the trial numbers


def test_the_figures_and_the_dashboard_note_carry_them(noisy: ReportData) -> None:
    from nas_dil.report.dashboard import _study_note
    from nas_dil.report.render import plotly_figures

    figs = plotly_figures(noisy, heatmaps=False)
    for fig in (figs["miou_vs_gflops"], figs["miou_vs_rf"]):
        errs = [e for tr in fig.data if tr.error_y is not None and tr.error_y.array is not None
                for e in tr.error_y.array if e is not None]
        assert sorted(errs) == pytest.approx([0.02, math.sqrt(0.0008)])
        assert [sh.y0 for sh in fig.layout.shapes] == [pytest.approx(CHANCE)]
        assert "front, within noise" in {tr.name for tr in fig.data}
    note = _study_note(noisy, None)
    assert noisy.noise_note in note and "chance level 0.150" in note
    assert noisy.knee_close is not None and noisy.knee_close in note
