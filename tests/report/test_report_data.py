"""`build_report` on real SQLite studies: the Pareto set, knee, hypervolume, figure data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from nas_dil.report import build_report
from nas_dil.report.data import NoCompleteTrialError
from nas_dil.report.source import StudySourceError, open_study
from nas_dil.schedule import Schedule, count_map_2d
from nas_dil.search.records import RFFacts, rf_facts
from tests.report.studies import (
    HAND_MADE,
    Spec,
    add_trial,
    crop_study,
    new_study,
    with_dead_taps,
)

# the hand-made study (tests/report/studies.py), costs to minimise (−mIoU, −RF, GFLOPs)
FEASIBLE = {0: (0.60, 100, 2.0), 1: (0.55, 80, 1.0), 2: (0.50, 70, 2.5), 6: (0.65, 90, 3.0)}
REF = (0.485, 67.0, 3.2)  # worst feasible value − 10 % of the range (mIoU, RF), + for GFLOPs


def _box(*pts: tuple[float, float, float]) -> float:
    """Volume dominated by all of ``pts`` at once (the intersection of their boxes)."""
    miou = min(p[0] for p in pts) - REF[0]
    rf = min(p[1] for p in pts) - REF[1]
    gfl = REF[2] - max(p[2] for p in pts)
    return miou * rf * gfl


def test_pareto_front_respects_constraints(hand_made_ro: Path) -> None:
    d = build_report(hand_made_ro)
    # trial 3 dominates everything but is infeasible (named constraint 1.0 > 0); trial 2 is
    # dominated by 0; trial 2's old-format constraint 0.0 counts as feasible
    assert sorted(r.number for r in d.pareto) == [0, 1, 6]
    assert [r.number for r in d.pareto] == [6, 0, 1]  # best mIoU first
    assert d.n_feasible == 4 and d.n_trials == 8
    assert d.states == {"COMPLETE": 5, "PRUNED": 1, "FAIL": 1, "RUNNING": 1}
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{hand_made_ro / 'study.db'}")
    assert {t.number for t in study.best_trials} == {0, 1, 6}  # Optuna agrees


def test_pareto_rows_carry_schedule_cost_and_hdc(hand_made_ro: Path) -> None:
    d = build_report(hand_made_ro)
    row = next(r for r in d.pareto if r.number == 0)
    assert row.schedule == "1,2,5" and row.kernel == 3 and row.output_stride == 8
    assert row.values == {"miou": 0.60, "rf": 100.0, "gflops": 2.0}
    assert row.rf == 100 and row.rf_stack == 17 and row.holes == 0 and row.gridding_free
    assert row.hdc_rule1 and row.hdc_rule2 and row.hdc_rule3 and row.hdc
    assert row.baseline == "hdc-125" and row.knee and row.params and row.params > 0
    assert d.knee == 0  # distances 0.707 (#0), 1.414 (#1), 1.118 (#6)


def test_hypervolume_hand_computed(hand_made_ro: Path) -> None:
    hv = build_report(hand_made_ro).hypervolume
    assert hv is not None
    assert hv.reference_point == pytest.approx(REF)
    assert hv.numbers == [0, 1, 2, 3, 6]  # COMPLETE trials in order
    a, b, c = FEASIBLE[0], FEASIBLE[1], FEASIBLE[6]
    after_1 = _box(a) + _box(b) - _box(a, b)
    final = after_1 + _box(c) - _box(a, c) - _box(b, c) + _box(a, b, c)
    # 2 is dominated and 3 infeasible: the volume stays
    assert hv.values == pytest.approx([_box(a), after_1, after_1, after_1, final])
    assert hv.values == pytest.approx([4.554, 5.399, 5.399, 5.399, 5.629])
    assert hv.ideal_point == pytest.approx([0.65, 100, 1.0])
    ideal_box = (0.65 - 0.485) * (100 - 67) * (3.2 - 1.0)
    assert hv.normalized[-1] == pytest.approx(5.629 / ideal_box)
    # a given reference point is used as is
    hv2 = build_report(hand_made_ro, ref_point=(0.0, 0.0, 10.0)).hypervolume
    assert hv2 is not None and hv2.rule == "reference point: given"


def test_hypervolume_figure_shows_shares_above_one(hand_made_ro: Path) -> None:
    """Shares pass 1 when the reference point lies past the ranges (the search's space
    reference: 10 % further): the figure's axis must still show the whole line."""
    from dataclasses import replace

    from nas_dil.report.render import plotly_figures

    data = build_report(hand_made_ro)
    assert data.hypervolume is not None
    high = replace(data, hypervolume=replace(data.hypervolume, normalized=[0.5, 1.25, 1.3]))
    top = plotly_figures(high, heatmaps=False)["hypervolume"].layout.yaxis.range[1]
    assert top >= 1.3
    low = plotly_figures(data, heatmaps=False)["hypervolume"].layout.yaxis.range[1]
    assert low == pytest.approx(max(1.02, 1.03 * max(data.hypervolume.normalized)))


def test_scatter_data_flags_baselines_pareto_and_feasibility(hand_made_ro: Path) -> None:
    d = build_report(hand_made_ro)
    s = {x.name: x for x in d.scatters}
    g = s["miou_vs_gflops"]
    assert g.numbers == [0, 1, 2, 3, 6]
    assert g.x == [2.0, 1.0, 2.5, 0.5, 3.0] and g.y == [0.60, 0.55, 0.50, 0.70, 0.65]
    assert g.color == [100, 80, 70, 150, 90]  # coloured by RF
    assert g.pareto == [True, True, False, False, True]
    assert g.feasible == [True, True, True, False, True]
    assert g.baseline == ["hdc-125", None, "constant-2", None, None]
    assert g.knee == [True, False, False, False, False]
    r = s["miou_vs_rf"]
    assert r.x == [100, 80, 70, 150, 90] and r.color is None
    assert d.baselines == {"hdc-125": 0, "constant-2": 2}


def test_curves_include_pruned(hand_made_ro: Path) -> None:
    d = build_report(hand_made_ro)
    curves = {c.number: c for c in d.curves}
    assert sorted(curves) == [0, 1, 2, 3, 4, 6]  # not the FAIL or RUNNING ones
    assert curves[4].state == "PRUNED" and curves[4].miou == [0.1, 0.15]
    assert curves[0].miou == HAND_MADE[0].curve and curves[0].pareto
    assert curves[0].baseline == "hdc-125"


def test_heat_maps_for_each_pareto_schedule(hand_made_ro: Path) -> None:
    d = build_report(hand_made_ro)
    assert [h.number for h in d.heatmaps] == [0, 1, 6]
    h = d.heatmaps[0]
    assert h.schedule == "1,2,5" and h.data.rf == 17 and h.data.holes == 0
    assert np.array_equal(h.data.counts, count_map_2d(Schedule((1, 2, 5))))


def test_objectives_read_from_the_study(tmp_path: Path) -> None:
    objs = [{"name": "miou", "direction": "maximize"}, {"name": "gflops", "direction": "minimize"}]
    study = new_study(tmp_path / "two", objs)
    from nas_dil.spaces import Candidate
    from tests.report.studies import schedule_attrs

    for rates, miou, gfl in (((1, 2, 3), 0.5, 1.0), ((1, 2, 5), 0.6, 2.0), ((2, 2, 2), 0.4, 3.0)):
        attrs = {**schedule_attrs(Candidate(rates, 3, 8, 16)), "miou": miou, "gflops": gfl,
                 "rf": 50}
        study.add_trial(optuna.trial.create_trial(values=[miou, gfl], user_attrs=attrs))
    d = build_report(tmp_path / "two")
    assert [o.name for o in d.objectives] == ["miou", "gflops"]
    assert sorted(r.number for r in d.pareto) == [0, 1]
    assert d.pareto[0].values == {"miou": 0.6, "gflops": 2.0}
    assert d.hypervolume is not None and len(d.hypervolume.reference_point) == 2


def test_empty_and_incomplete_studies(tmp_path: Path) -> None:
    new_study(tmp_path / "empty")
    with pytest.raises(NoCompleteTrialError, match=r"has no trials yet"):
        build_report(tmp_path / "empty")
    study = new_study(tmp_path / "failed")
    add_trial(study, Spec((1, 2, 3), TrialState.FAIL))
    add_trial(study, Spec((1, 2, 5), TrialState.PRUNED, curve=[0.1]))
    with pytest.raises(NoCompleteTrialError, match=r"no COMPLETE trial yet \(1 FAIL, 1 PRUNED\)"):
        build_report(tmp_path / "failed")


def test_all_infeasible_still_reports(tmp_path: Path) -> None:
    study = new_study(tmp_path / "inf")
    add_trial(study, Spec((1, 2, 3), miou=0.5, constraint=2.0))
    d = build_report(tmp_path / "inf")
    assert d.pareto == [] and d.knee is None and d.hypervolume is None
    assert d.scatters[0].feasible == [False]


def test_storage_errors(tmp_path: Path) -> None:
    with pytest.raises(StudySourceError, match=r"no such file or folder"):
        open_study(tmp_path / "nope")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(StudySourceError, match=r"no study.db in this folder"):
        open_study(tmp_path / "empty-dir")
    (tmp_path / "text.db").write_text("hello")
    with pytest.raises(StudySourceError, match=r"not an SQLite database"):
        open_study(tmp_path / "text.db")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("create table t (x int)")
    with pytest.raises(StudySourceError, match=r"not an Optuna storage"):
        open_study(other)
    with pytest.raises(StudySourceError, match=r"no such file"):
        open_study(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()  # a wrong path never creates a database


def test_not_a_nas_dil_study_and_study_choice(tmp_path: Path) -> None:
    new_study(tmp_path / "plain", with_meta=False)
    with pytest.raises(StudySourceError, match=r"is not a nas-dil study"):
        open_study(tmp_path / "plain")
    url = f"sqlite:///{tmp_path / 'plain' / 'study.db'}"
    optuna.create_study(storage=url, study_name="second")
    with pytest.raises(StudySourceError, match=r"holds 2 studies .*--study NAME"):
        open_study(tmp_path / "plain")
    with pytest.raises(StudySourceError, match=r"no study 'third'"):
        open_study(tmp_path / "plain", "third")
    optuna.load_study(study_name="second", storage=url).set_user_attr("nas_dil", {})
    src = open_study(url, "second")
    assert src.name == "second" and src.out_dir == (tmp_path / "plain").resolve()
    with pytest.raises(StudySourceError, match=r"no study in the storage|holds no study"):
        empty = tmp_path / "none.db"
        optuna.create_study(storage=f"sqlite:///{empty}", study_name="x")
        optuna.delete_study(study_name="x", storage=f"sqlite:///{empty}")
        open_study(empty)


def test_reading_never_writes_the_database(hand_made: Path) -> None:
    db = hand_made / "study.db"
    before = db.read_bytes()
    build_report(hand_made)
    assert db.read_bytes() == before


def test_open_study_accepts_a_study_object(hand_made_ro: Path) -> None:
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{hand_made_ro / 'study.db'}")
    src = open_study(study)
    assert src.out_dir == hand_made_ro.resolve()
    assert [o.name for o in src.objectives] == ["miou", "rf", "gflops"]
    assert sorted(r.number for r in build_report(study).pareto) == [0, 1, 6]


# -- dead taps, usable / nominal RF, the table ---------------------------------------------------
def test_knee_skips_a_trial_trained_with_dead_taps(tmp_path: Path) -> None:
    # the hand-made knee #0 trained with dead taps: among #1 (−0.55, −80, 1) and #6 (−0.65,
    # −90, 3), normalised over those two, #1 is (1, 1, 0) (distance √2), #6 (0, 0, 1) (1)
    with_dead_taps(tmp_path / "d", {0: 8})
    d = build_report(tmp_path / "d")
    assert sorted(r.number for r in d.pareto) == [0, 1, 6]  # still on the front, flagged
    assert d.knee == 6 and [r.number for r in d.pareto if r.knee] == [6]
    assert d.knee_note == ("not the knee, dead taps at the training crop (they never trained): "
                           "#0 (8)")
    row = next(r for r in d.pareto if r.number == 0)
    assert row.dead_taps == 8 and row.dead_layers == ("stack.2 r9: 8 dead",)
    assert row.rf_usable == 100 and row.rf_nominal == 400
    assert d.table.dead == [False, True, False]  # rows: #6, #0, #1
    assert d.table.notes == ["dead taps at the training crop (they read only padding, never "
                             "trained, and wake up untrained at a larger input), never the knee: "
                             "#0 (stack.2 r9: 8 dead)"]
    g = next(s for s in d.scatters if s.name == "miou_vs_gflops")
    assert g.dead == [True, False, False, False, False] and g.knee[-1]  # trials 0, 1, 2, 3, 6
    assert "8 dead taps" in g.labels[0]


def test_no_knee_when_every_front_trial_has_dead_taps(tmp_path: Path) -> None:
    with_dead_taps(tmp_path / "d", {0: 8, 1: 8, 6: 4, 2: 0})
    d = build_report(tmp_path / "d")
    assert d.knee is None and not any(r.knee for r in d.pareto)
    assert d.knee_note == ("no knee: every Pareto trial had dead taps at its training crop (taps "
                           "that read only padding never trained): #0 (8), #1 (8), #6 (4)")
    assert d.table.notes[-1] == d.knee_note
    assert not any(any(s.knee) for s in d.scatters)


def test_table_shows_each_objective_once_and_rf_against_the_crop(tmp_path: Path) -> None:
    crop_study(tmp_path / "c")
    d = build_report(tmp_path / "c")
    t = d.table
    objectives = [(c.key, c.direction) for c in t.columns if c.direction]
    assert objectives == [("miou", "maximize"), ("rf", "maximize"), ("gflops", "minimize")]
    keys = [c.key for c in t.columns]
    assert len(keys) == len(set(keys)) and not any(k.startswith("values.") for k in keys)
    labels = {c.key: c.label for c in t.columns}
    assert labels["rf"] == "RF px usable / nominal"
    assert labels["rf_crop"] == "× crop usable / nominal"
    rows = {n: dict(zip(keys, cells, strict=True)) for n, cells in zip(t.numbers, t.rows,
                                                                       strict=True)}
    assert sorted(rows) == [0, 1]  # (2, 2, 2) is dominated by (1, 2, 3)
    # 1,3,9,1,3,9 at OS 8 on a 48-px crop: a 6×6 map, each rate-9 layer has 8 dead taps;
    # nominal RF 431 (docs/theory.md), the usable one the whole crop
    assert rows[1]["rf"] == "48 / 431" and rows[1]["rf_crop"] == "1.00 / 8.98"
    assert rows[1]["crop"] == "48" and rows[1]["dead_taps"] == 16
    assert rows[0]["rf"] == "48 / 111" and rows[0]["dead_taps"] == 0
    r1 = next(r for r in d.pareto if r.number == 1)
    assert r1.dead_layers == ("stack.2 r9: 8 dead", "stack.5 r9: 8 dead") and r1.crop == (48, 48)
    # the higher mIoU is the dead one: the knee is the other
    assert d.knee == 0 and t.knee == [False, True] and t.dead == [True, False]
    assert {s.x_label for s in d.scatters} == {
        "GFLOPs per image",
        "usable RF at the training crop (image px; rf: the study's RF objective)"}
    assert d.scatters[1].x_mark == (48.0, "training crop 48×48 px (the usable RF's limit)")
    assert d.dead_taps == {1: 16}  # every COMPLETE trial trained with dead taps


def test_a_foreign_objective_gets_its_own_column(tmp_path: Path) -> None:
    objs = [{"name": "miou", "direction": "maximize"}, {"name": "latency", "direction": "minimize"}]
    study = new_study(tmp_path / "f", objs)
    from nas_dil.spaces import Candidate
    from tests.report.studies import schedule_attrs

    study.add_trial(optuna.trial.create_trial(values=[0.5, 3.0], user_attrs={
        **schedule_attrs(Candidate((1, 2, 3), 3, 8, 16)), "miou": 0.5, "rf": 50}))
    t = build_report(tmp_path / "f").table
    assert [(c.key, c.label, c.direction) for c in t.columns if c.direction] == [
        ("miou", "mIoU", "maximize"), ("values.latency", "latency", "minimize")]
    assert t.rows[0][[c.key for c in t.columns].index("values.latency")] == 3.0
    assert "rf" in [c.key for c in t.columns]  # shown, not an objective


def test_non_square_crop(tmp_path: Path) -> None:
    crop_study(tmp_path / "c", crop=(48, 64))
    d = build_report(tmp_path / "c")
    row = next(r for r in d.pareto if r.number == 1)
    assert row.crop == (48, 64) and row.rf_usable == 48  # the smaller axis
    keys = [c.key for c in d.table.columns]
    cells = dict(zip(keys, d.table.rows[d.table.numbers.index(1)], strict=True))
    assert cells["crop"] == "48×64" and cells["rf_crop"].startswith("1.00 / ")


@pytest.mark.parametrize(
    ("attrs", "fallback", "facts"),
    [
        # today's trial: rf is the usable RF, the crop from its training config
        ({"rf": 48, "rf_nominal": 431, "dead_taps": 16,
          "trial_config": {"data": {"image_size": 48}}}, None,
         RFFacts(48.0, 431.0, (48, 48), 16, ())),
        ({"rf": 40, "rf_nominal": 143, "dead_taps": 0,
          "trial_config": {"data": {"image_size": [40, 64]}}}, 99,
         RFFacts(40.0, 143.0, (40, 64), 0, ())),
        # an older study: its rf is the nominal one, dead taps unknown; the study's crop
        ({"rf": 135}, 64, RFFacts(None, 135.0, (64, 64), None, ())),
        ({"rf": 135}, None, RFFacts(None, 135.0, None, None, ())),
    ],
)
def test_rf_facts(attrs: dict[str, object], fallback: object, facts: RFFacts) -> None:
    assert rf_facts(attrs, fallback) == facts
    assert facts.per_crop(facts.usable) == (None if facts.usable is None or facts.crop is None
                                            else facts.usable / min(facts.crop))
