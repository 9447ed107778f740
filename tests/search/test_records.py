"""The stored study as typed records: a trial's attributes and the study metadata round-trip,
older attribute names read as today's, unknown ones survive."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nas_dil.search.records import (
    ANALYTIC_KEYS,
    RESULT_KEYS,
    Objective,
    StudyMeta,
    TrialRecord,
    merge_looks,
)

ATTRS = {
    "candidate": {"rates": [1, 2, 5], "kernel": 3, "output_stride": 8, "width": 16},
    "repaired": False, "arch": {"width": 16}, "trial_config": {"seed": 0}, "seed": 0,
    "key": "abc", "rf": 43, "rf_stack": 17, "holes": 0, "coverage": 1.0,
    "gridding_free": True, "hdc_rule1": True, "hdc_rule1_groups": True, "hdc_rule2": True,
    "hdc_rule3": True, "hdc": True, "m": [1, 2, 5], "macs": 10, "flops": 20, "gflops": 2e-8,
    "params": 99, "miou": 0.5, "miou_curve": [0.4, 0.5], "retries": 1,
    "retry_reasons": ["lost"], "node": "n1", "weights": "weights/trial_3.pt",
    "some_future_field": {"x": 1},
}


def test_attrs_round_trip() -> None:
    rec = TrialRecord.from_attrs(ATTRS)
    assert rec.to_attrs() == ATTRS
    assert rec.analytic["rf"] == 43 and rec.result["miou"] == 0.5
    assert rec.retry_reasons == ("lost",) and rec.extra == {"some_future_field": {"x": 1}}
    assert rec.get("gflops") == 2e-8 and rec.get("weights") == "weights/trial_3.pt"
    assert rec.get("fail_reason") is None and rec.get("no_such") is None
    json.dumps(rec.to_attrs())


def test_none_fields_are_not_stored() -> None:
    assert TrialRecord(key="k", infeasible=True).to_attrs() == {"key": "k", "infeasible": True}
    assert TrialRecord().to_attrs() == {}


@pytest.mark.parametrize(("stored", "whole", "groups"), [
    # nas-dil 0.1: hdc_rule1 was the per-group verdict, hdc_rule1_whole the whole schedule
    ({"hdc_rule1": True, "hdc_rule1_whole": False}, False, True),
    ({"hdc_rule1": False, "hdc_rule1_whole": True}, True, False),
    # today: hdc_rule1 is the whole schedule
    ({"hdc_rule1": False, "hdc_rule1_groups": True}, False, True),
])
def test_old_hdc_rule1_names_are_mapped(stored: dict[str, bool], whole: bool,
                                        groups: bool) -> None:
    rec = TrialRecord.from_attrs(stored)
    assert rec.analytic == {"hdc_rule1": whole, "hdc_rule1_groups": groups}
    assert "hdc_rule1_whole" not in rec.to_attrs()


def test_keys_are_disjoint() -> None:
    assert not set(ANALYTIC_KEYS) & set(RESULT_KEYS)


def test_study_meta_round_trip() -> None:
    raw = {"version": "0.1.0", "study_config": {"seed": 0},
           "objectives": [{"name": "miou", "direction": "maximize"}], "space": {"name": "hdc"},
           "out_dir": "/x", "data": {"source": "synthetic"}, "hypervolume": {"reference": 1.1},
           "early_stop": {"enabled": False}, "warnings": ["w"], "newer": 1}
    meta = StudyMeta.from_dict(raw)
    assert meta.objectives == (Objective("miou", "maximize"),)
    assert meta.git_commit is None  # written by a version that did not record it
    assert meta.to_dict() == {**raw, "git_commit": None}
    assert StudyMeta.from_dict({}).to_dict()["objectives"] == []
    with pytest.raises(ValueError, match="malformed 'objectives'"):
        StudyMeta.from_dict({"objectives": [{"name": "miou"}]})


def test_objective_of_a_foreign_metric_is_measured() -> None:
    assert Objective("rf", "maximize").measured is False
    assert Objective("latency", "minimize").measured is True
    assert Objective("rf", "maximize").sign == -1.0


def test_analytic_keys_are_what_the_search_stores() -> None:
    from nas_dil.models import ArchConfig
    from nas_dil.models.analytic import BATCH_KEYS, analytic_attrs
    from nas_dil.spaces import Candidate

    cand = Candidate((1, 2, 5), 3, 8, 16)
    attrs = analytic_attrs(cand.schedule, ArchConfig(output_stride=8, width=16), 32)
    assert set(attrs) == set(ANALYTIC_KEYS) == {*BATCH_KEYS, "m", "dead_layers"}


def _trial(number: int, miou: float, **attrs: Any) -> Any:
    import optuna

    t = optuna.trial.create_trial(values=[miou, 10.0], user_attrs={"miou": miou, **attrs})
    t.number = number
    return t


def test_merge_looks_averages_each_candidate_and_leaves_the_rest() -> None:
    objs = [Objective("miou", "maximize"), Objective("rf", "maximize")]
    trials = [_trial(0, 0.6, key="a"), _trial(1, 0.5, key="b"),
              _trial(2, 0.3, key="a1", look_of="a", look=1, weights="weights/trial_2.pt"),
              _trial(3, 0.5, key="b", reused_from=1),
              _trial(4, 0.45, key="a2", look_of="a", look=2)]
    out = merge_looks(trials, objs)
    assert [t.number for t in out] == [2, 1, 3]  # a sits where its first look was
    a = out[0]
    assert a.values == pytest.approx([0.45, 10.0]) and a.user_attrs["miou"] == pytest.approx(0.45)
    assert a.user_attrs["looks"] == 3 and a.user_attrs["look_trials"] == [0, 2, 4]
    assert a.user_attrs["miou_looks"] == [0.6, 0.3, 0.45]
    assert a.user_attrs["miou_std"] == pytest.approx(0.15)  # (n - 1): std of .6 .3 .45
    assert a.user_attrs["weights"] == "weights/trial_2.pt"  # the look with weights
    assert out[1] is trials[1] and out[2] is trials[3]  # single looks, reused: untouched
    assert trials[2].values == [0.3, 10.0] and "looks" not in trials[2].user_attrs
    assert merge_looks(trials[1:2], objs)[0] is trials[1]
