"""The resolved study (`preflight.resolve_study`): the space scored once for the ranges, the
dead-tap share and feasibility; the nets of its candidates from the [arch] template; planning
and the sampler take it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_dil.errors import UserError
from nas_dil.models.analytic import analytic_attrs
from nas_dil.models.config import ArchConfig
from nas_dil.search.baselines import baseline_candidates
from nas_dil.search.config import parse_study_config
from nas_dil.search.hvi import HVISampler
from nas_dil.search.preflight import resolve_study, study_space
from nas_dil.search.resolved import ResolvedStudy
from nas_dil.search.trials import plan_trial
from nas_dil.spaces import Candidate


def study(tmp_path: Path, image_size: int = 64, **over: object) -> ResolvedStudy:
    data = {"space": "hdc", "arch": {"stem_width": 8}, "data": {"image_size": image_size},
            "trial": {"kind": "sleep"}, "baselines": [{"name": "hdc"}], **over}
    cfg = parse_study_config(data, tmp_path / "s.toml")
    space = study_space(cfg)
    return resolve_study(cfg, space, 5, baseline_candidates(cfg.baselines, space, "s.toml"))


def test_the_nets_come_from_the_template_and_the_data_classes(tmp_path: Path) -> None:
    s = study(tmp_path)
    c = Candidate((1, 2, 5), 3, 8, 32)
    assert s.arch(c) == ArchConfig(stem_width=8, output_stride=8, width=32, num_classes=5)
    cols = s.score([c])
    one = analytic_attrs(c.schedule, s.arch(c), (64, 64))
    assert {k: cols[k][0].item() for k in ("rf", "gflops", "params", "dead_taps")} == {
        k: one[k] for k in ("rf", "gflops", "params", "dead_taps")}
    plan = plan_trial(s, c, 0, None)
    assert plan.record.arch == s.arch(c).to_dict() and plan.payload.analytic == one


def test_ranges_warnings_and_sampler(tmp_path: Path) -> None:
    s = study(tmp_path, image_size=32)  # every hdc stack fills a 32-px crop: rf cannot vary
    assert s.ranges["rf"].best == s.ranges["rf"].worst == 32.0 and s.ranges["rf"].exact
    assert s.ranges["miou"].best == 1.0
    assert any(w.startswith("objective rf cannot vary in space hdc") for w in s.warnings)
    assert isinstance(s.sampler, HVISampler)
    assert [n for n, _ in s.baselines] == ["hdc"]


@pytest.mark.parametrize(("over", "fragment"), [
    ({"constraints": {"max_gflops": 1e-9}}, "constraints.max_gflops = 1e-09: no candidate"),
    ({"data": {"image_size": 8}}, "every candidate of the 96 candidates of space hdc has dead "
                                  "taps at the 8×8 crop"),
])
def test_infeasible_studies_are_refused_when_resolved(tmp_path: Path, over: dict[str, object],
                                                      fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        study(tmp_path, **over)


def test_allowed_dead_taps_are_not_refused(tmp_path: Path) -> None:
    s = study(tmp_path, data={"image_size": 8}, dead_taps="allow")
    assert any('they train anyway (dead_taps = "allow")' in w for w in s.warnings)
