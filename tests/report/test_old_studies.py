"""Studies written by an earlier nas-dil stay readable: ``tests/fixtures/study_v0_1.db`` was
written by nas-dil 0.1 (``tests/fixtures/study_v0_1.toml``: sleep trials, two baselines, one
reused duplicate), where ``hdc_rule1`` was the per-group verdict and ``hdc_rule1_whole`` the
whole-schedule one. Report, tables and export read it with today's names."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from nas_dil.export import export_trial
from nas_dil.report import build_report
from nas_dil.report.source import open_study
from nas_dil.report.tables import trials_dataframe

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "study_v0_1.db"


@pytest.fixture
def old_study(tmp_path: Path) -> Path:
    db = tmp_path / "study.db"
    shutil.copy(FIXTURE, db)  # reading never writes, but a test never risks the fixture
    return db


def _raw(db: Path) -> dict[int, dict[str, object]]:
    study = optuna.load_study(study_name="fixture", storage=f"sqlite:///{db}")
    return {t.number: t.user_attrs for t in study.trials}


def test_report_reads_an_old_study(old_study: Path) -> None:
    raw = _raw(old_study)
    assert raw[0]["hdc_rule1"] is True and raw[0]["hdc_rule1_whole"] is False  # 1,2,5,1,2,5
    data = build_report(old_study)
    assert data.study_name == "fixture" and data.states == {"COMPLETE": 5}
    assert sorted(r.number for r in data.pareto) == [2, 3]  # 4 reused 2's result: 2 once
    assert data.baselines == {"hdc": 0, "constant2": 1}
    assert data.meta["version"] == "0.1.0" and data.meta["git_commit"] is None
    for r in data.pareto:
        assert r.hdc_rule1 is raw[r.number]["hdc_rule1_whole"]
        assert r.hdc_rule1_groups is raw[r.number]["hdc_rule1"]
    assert data.hypervolume is not None and data.hypervolume.values[-1] > 0
    src = open_study(old_study)
    assert [o.name for o in src.objectives] == ["miou", "rf", "gflops"]
    assert src.meta.hypervolume["reference"] == 1.1


def test_tables_use_todays_names(old_study: Path) -> None:
    df = trials_dataframe(open_study(old_study)).set_index("number")
    assert "hdc_rule1_whole" not in df.columns
    assert df.loc[0, "hdc_rule1"] == False  # noqa: E712  # the whole schedule 1,2,5,1,2,5
    assert df.loc[0, "hdc_rule1_groups"] == True  # noqa: E712


def test_export_reads_an_old_study(old_study: Path, tmp_path: Path) -> None:
    doc = export_trial(old_study, "trial=0", tmp_path / "exp").document
    assert doc["schedule"]["rates"] == [1, 2, 5, 1, 2, 5]
    assert doc["provenance"]["baseline"] == "hdc"
    assert doc["provenance"]["search_version"] == "0.1.0"
    assert doc["provenance"]["search_git_commit"] is None  # 0.1 did not record it
    assert doc["hdc_certificate"]["hdc_rule1"] is False  # whole schedule, as analyze() says
    assert doc["hdc_certificate"]["hdc_rule1_groups"] is True


def test_an_old_study_says_its_rf_is_nominal(old_study: Path, tmp_path: Path) -> None:
    raw = _raw(old_study)
    data = build_report(old_study)
    t = data.table
    rf = next(c for c in t.columns if c.key == "rf")
    assert rf.label == "RF px (nominal)" and rf.direction == "maximize"
    cells = {n: dict(zip([c.key for c in t.columns], row, strict=True))
             for n, row in zip(t.numbers, t.rows, strict=True)}
    for r in data.pareto:
        assert r.rf_usable is None and r.dead_taps is None and r.rf_nominal == raw[r.number]["rf"]
        assert r.crop == (64, 64)  # from the trial's training config
        assert cells[r.number]["rf"] == raw[r.number]["rf"]
        assert cells[r.number]["dead_taps"] is None  # unknown, not 0
    assert t.notes == ["this study did not record the usable RF nor dead taps (written by an "
                       "older nas-dil): their rf is the nominal RF, '?' is unknown"]
    assert data.knee is not None and data.knee_note is None  # unknown dead taps count as 0
    assert "nominal RF" in data.scatters[1].x_label and data.scatters[1].x_mark is None
    assert data.dead_taps == {}
    df = trials_dataframe(open_study(old_study)).set_index("number")
    assert (df["rf_nominal"] == df["rf"]).all() and df["dead_taps"].isna().all()
    assert export_trial(old_study, "knee", tmp_path / "k").trial == data.knee
