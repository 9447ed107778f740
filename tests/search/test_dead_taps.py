"""The dead-tap policy (`nas_dil.search.dead_taps`): one setting, three values; an older
space file's ``avoid_dead_taps`` folded in; what each value binds, refuses and says."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from nas_dil.errors import UserError
from nas_dil.models.config import ArchTemplate
from nas_dil.search.dead_taps import DeadTaps
from nas_dil.search.records import feasible as is_feasible
from nas_dil.search.resolved import constraint_values
from nas_dil.spaces import Space, load_space

SPACE = ('kernel = [3]\noutput_stride = [8]\nwidth = [16]\ndepth = 2\n'
         '[rates]\nrule = "free"\nchoices = [1, 2, 9]\n')  # 64 px at OS 8: 8×8 maps, 9 dead


def space(tmp_path: Path, avoid: bool) -> Space:
    (tmp_path / "sp.toml").write_text(("avoid_dead_taps = true\n" if avoid else "") + SPACE)
    return load_space(tmp_path / "sp.toml")


@pytest.mark.parametrize(("study", "space_avoids", "follows"), [
    ("refuse", False, "refuse"), ("avoid", False, "avoid"), ("allow", False, "allow"),
    ("refuse", True, "avoid"), ("avoid", True, "avoid"),  # the older space flag: avoid
])
def test_the_policy_a_study_follows(tmp_path: Path, study: str, space_avoids: bool,
                                    follows: str) -> None:
    assert DeadTaps(study).with_space(space(tmp_path, space_avoids), "s.toml").policy == follows


def test_allowing_them_with_a_space_that_avoids_them_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^s\.toml: dead_taps = \"allow\", but space sp sets "
                                        r"avoid_dead_taps = true: choose one$"):
        DeadTaps("allow").with_space(space(tmp_path, True), "s.toml")


@pytest.mark.parametrize(("policy", "bound", "count"), [
    ("refuse", False, 9), ("allow", False, 9), ("avoid", True, 4)])  # 3² stacks; 2² live
def test_only_avoid_binds_the_space_to_the_crop(tmp_path: Path, policy: str, bound: bool,
                                                count: int) -> None:
    sp = space(tmp_path, False)
    got = DeadTaps(policy).bind(sp, ArchTemplate(), (64, 64), "s.toml")
    assert (got.sides is not None) is bound and got.count() == count


@pytest.mark.parametrize(("policy", "dead", "feasible", "constraint"), [
    ("refuse", 0, True, 0.0), ("refuse", 6, False, 6.0), ("avoid", 6, False, 6.0),
    ("allow", 6, True, None), ("refuse", None, True, None)])  # None: an older trial's attrs
def test_feasibility_and_the_optuna_constraint(policy: str, dead: int | None, feasible: bool,
                                               constraint: float | None) -> None:
    p = DeadTaps(policy)
    attrs = {} if dead is None else {"dead_taps": dead}
    study = SimpleNamespace(constraints=(), gridding_free=False, dead_taps=p)  # what it reads
    assert is_feasible(constraint_values(study, attrs)) is feasible  # type: ignore[arg-type]
    if dead is None:
        return
    got = p.constraint({**attrs, "dead_layers": []}, (64, 64))
    assert (got if got is None else got[0]) == constraint
    if got is not None:
        assert (got[1] is None) is (dead == 0)
        assert got[1] is None or got[1].startswith("6 dead taps at 64×64")


@pytest.mark.parametrize(("policy", "share", "said"), [
    ("refuse", 0.5, None), ("refuse", 0.56, "they are refused as infeasible"),
    ("allow", 0.9, 'they train anyway (dead_taps = "allow")')])
def test_a_mostly_dead_space_is_said_before_the_search(policy: str, share: float,
                                                       said: str | None) -> None:
    w = DeadTaps(policy).warning(share, True, "sp", (64, 48))
    assert w is None if said is None else (said in w and "at the 64×48 crop" in w), w


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="dead_taps='ignore'"):
        DeadTaps("ignore")
