"""The written report: self-contained HTML, PNGs, pareto.csv, trials.csv / trials_dataframe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import nas_dil
from nas_dil.report import trials_dataframe, write_report
from nas_dil.report.data import NoCompleteTrialError
from tests.report.studies import HAND_MADE, new_study

PNG = b"\x89PNG\r\n\x1a\n"


def test_trials_dataframe_every_trial_every_field(hand_made_ro: Path) -> None:
    df = trials_dataframe(hand_made_ro)
    assert df is not None and len(df) == len(HAND_MADE)
    assert df["number"].tolist() == list(range(8))
    assert df["state"].tolist() == ["COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "PRUNED",
                                    "FAIL", "COMPLETE", "RUNNING"]
    assert df["values_miou"].iloc[6] == 0.65 and pd.isna(df["values_miou"].iloc[4])
    assert df["feasible"].tolist() == [True, True, True, False, True, True, True, True]
    assert df["pareto"].tolist() == [True, True, False, False, False, False, True, False]
    assert df["constraints"].iloc[3] == {"gflops_budget": 1.0}
    # every user attr the search records is a column (nested dicts flattened)
    for col in ("candidate.rates", "arch.width", "rf", "rf_stack", "holes", "coverage",
                "gridding_free", "hdc_rule1", "hdc_rule2", "hdc_rule3", "hdc", "m", "macs",
                "flops", "gflops", "params", "miou", "per_class_iou", "miou_curve",
                "loss_curve", "fail_reason", "pruned_reason", "baseline", "key", "seed"):
        assert col in df.columns, col
    assert df["candidate.rates"].iloc[0] == [1, 2, 5]
    assert df["fail_reason"].iloc[5].startswith("diverged")
    # the same through the package's lazy name, and on an open Study object
    assert nas_dil.trials_dataframe(hand_made_ro / "study.db").shape == df.shape


def test_trials_dataframe_of_an_empty_study(tmp_path: Path) -> None:
    new_study(tmp_path / "e")
    df = trials_dataframe(tmp_path / "e")
    assert len(df) == 0 and list(df.columns[:3]) == ["number", "state", "values_miou"]


def test_write_report_files(hand_made: Path) -> None:
    files = write_report(hand_made)
    out = hand_made / "report"
    assert files.out_dir == out and files.html == out / "report.html"
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "pareto.csv", "trials.csv", "miou_vs_gflops.png", "miou_vs_rf.png",
            "hypervolume.png", "miou_curves.png", "coverage_trial_0.png", "coverage_trial_1.png",
            "coverage_trial_6.png"} <= names
    for p in files.pngs.values():
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 5000
    pareto = pd.read_csv(files.pareto_csv)
    assert sorted(pareto["number"]) == [0, 1, 6]
    assert {"schedule", "values_miou", "values_rf", "values_gflops", "rf", "holes", "gflops",
            "params", "miou", "hdc_rule1", "hdc_rule2", "hdc_rule3", "hdc", "knee"} <= set(pareto)
    trials = pd.read_csv(files.trials_csv)
    assert len(trials) == 8 and json.loads(trials["miou_curve"].iloc[0]) == [0.3, 0.5, 0.6]


def test_html_is_self_contained(hand_made: Path) -> None:
    html = write_report(hand_made).html.read_text()
    # no external resource: every src/href is a data URI or an anchor
    refs = re.findall(r'<(?:script|img|link|iframe)[^>]*?(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith("data:") for r in refs), [r[:40] for r in refs]
    assert "<script src=" not in html
    heat = re.findall(r'<figure><img alt="[^"]*" src="data:image/png;base64,', html)
    assert len(heat) == 3  # one heat map per Pareto schedule
    assert "plotly" in html.lower() and len(html) > 1_000_000  # plotly.js inlined
    for fig in ("miou_vs_gflops", "miou_vs_rf", "hypervolume", "miou_curves"):
        assert f'id="fig-{fig}"' in html
    assert "hdc-125" in html and "★knee" in html and "reference point" in html


def test_bad_study_writes_nothing(tmp_path: Path) -> None:
    new_study(tmp_path / "e")
    with pytest.raises(NoCompleteTrialError):
        write_report(tmp_path / "e")
    assert not (tmp_path / "e" / "report").exists()
