"""The stored study as typed records: a trial's attributes and the study metadata round-trip,
older attribute names read as today's, unknown ones survive."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from nas_dil.search.records import (
    ANALYTIC_KEYS,
    RESULT_KEYS,
    Objective,
    StoredTrial,
    StudyMeta,
    TrialRecord,
    feasible,
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


def test_stored_trial_is_decoded_once_from_optuna() -> None:
    import optuna

    t = optuna.trial.create_trial(
        values=[0.5, 10.0], params={"a": 1},
        distributions={"a": optuna.distributions.IntDistribution(0, 3)},
        user_attrs={**ATTRS, "hdc_rule1_whole": False}, intermediate_values={1: 0.4, 0: 0.3},
        system_attrs={"constraints": [0.0, -1.0]})
    t.number = 7
    st = StoredTrial.from_frozen(t)
    assert (st.number, st.state, st.values, dict(st.params)) == (7, "complete", (0.5, 10.0),
                                                                 {"a": 1})
    assert st.record.analytic["hdc_rule1"] is False  # older names read as today's
    assert st.record.weights == "weights/trial_3.pt" and st.intermediate == (0.3, 0.4)
    assert st.feasible and list(st.constraints.values()) == [0.0, -1.0]


@pytest.mark.parametrize(("constraints", "ok"), [
    ({}, True), ({"max_gflops": 0.0}, True), ({"a": -1.0, "b": 0.5}, False),
    ({"dead_taps": 3.0}, False), ({"a": float("nan")}, False),
])
def test_the_one_feasibility_rule(constraints: dict[str, float], ok: bool) -> None:
    assert feasible(constraints) is ok
    assert StoredTrial(0, "complete", (1.0,), constraints=constraints).feasible is ok


@pytest.mark.parametrize(("attrs", "facts"), [
    ({"rates": None}, ("?", None, None, None)),
    ({"candidate": {"rates": [1, 2, 5], "kernel": 3, "output_stride": 8, "width": 16}},
     ("1,2,5", 3, 8, 16)),
])
def test_schedule_facts(attrs: dict[str, Any], facts: tuple[Any, ...]) -> None:
    assert TrialRecord.from_attrs(attrs).schedule_facts() == facts


@pytest.mark.parametrize(("stored", "num", "integer", "flag"), [
    (0.5, 0.5, 0, None), (True, None, None, True), (float("inf"), None, None, None),
    ("x", None, None, None), (3, 3.0, 3, None), (None, None, None, None),
])
def test_typed_reads(stored: Any, num: float | None, integer: int | None,
                     flag: bool | None) -> None:
    rec = TrialRecord.from_attrs({"coverage": stored})
    assert rec.number("coverage") == num and rec.flag("coverage") == flag
    assert rec.integer("coverage") == integer


# -- stored attributes are decoded in one place --------------------------------------------

PKG = Path(__file__).resolve().parents[2] / "nas_dil"
DECODER = PKG / "search" / "records.py"


def _user_attrs_reads(source: str) -> list[int]:
    """Lines that read some object's ``user_attrs`` (an object's own ``self.user_attrs``, a
    trial stand-in that records them, is not a read of a stored trial)."""
    return sorted(n.lineno for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Attribute) and n.attr == "user_attrs"
            and not (isinstance(n.value, ast.Name) and n.value.id == "self"))


def test_the_read_check_finds_reads() -> None:
    assert _user_attrs_reads("a = t.user_attrs.get('x')\nb = s.user_attrs\n") == [1, 2]
    assert _user_attrs_reads("self.user_attrs = {}\nf(user_attrs={})\n") == []


@pytest.mark.parametrize("path", sorted(p for p in PKG.rglob("*.py") if p != DECODER),
                         ids=lambda p: str(p.relative_to(PKG)))
def test_only_records_reads_user_attrs(path: Path) -> None:
    """Stored attributes are decoded once, in `nas_dil.search.records` (`StoredTrial`,
    `TrialRecord.from_frozen`, `stored_meta`, `asked_attrs`); nothing else reads them raw."""
    lines = _user_attrs_reads(path.read_text())
    assert not lines, f"{path.relative_to(PKG)} reads user_attrs on lines {lines}"
