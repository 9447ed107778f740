"""Study files: the shipped ones parse; every bad key or value is one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_dil.resources import shipped_names
from nas_dil.search import StudyConfigError, load_study_config, parse_study_config
from nas_dil.search.config import BASELINES

BASE = {"space": "hdc"}


def parse(**over: object) -> object:
    return parse_study_config({**BASE, **over}, Path("s.toml"))


@pytest.mark.parametrize("name", shipped_names("studies"))
def test_shipped_studies_parse(name: str) -> None:
    cfg = load_study_config(name)
    assert cfg.n_trials >= 1 and cfg.objectives
    assert cfg.space_path.is_file()


def test_quickstart_defaults_and_contract() -> None:
    cfg = load_study_config("quickstart")
    assert cfg.name == "quickstart" and cfg.n_trials >= 24
    assert [(o.name, o.direction) for o in cfg.objectives] == [
        ("miou", "maximize"), ("rf", "maximize"), ("gflops", "minimize")]
    assert cfg.data.source == "synthetic" and cfg.trial.kind == "train"
    # the calibrated triple of docs/synthetic_data.md, plus two literature baselines
    rates = {b.name: b.rates for b in cfg.baselines}
    assert rates == {"small_rf": (1, 1, 1), "gridded": (3, 3, 3), "hole_free": (1, 3, 5),
                     "constant2": BASELINES["constant2"], "hdc": BASELINES["hdc"]}
    d = cfg.to_dict()
    assert d["objectives"][0] == {"name": "miou", "direction": "maximize"}
    assert d["train"]["epochs"] == cfg.train.epochs


def test_defaults() -> None:
    cfg = parse()
    assert [o.name for o in cfg.objectives] == ["miou", "rf", "gflops"]
    assert cfg.sampler.name == "hvi" and cfg.out == Path("runs/s") and cfg.storage is None
    assert cfg.train.epochs is not None


def test_steps_budget_replaces_epochs() -> None:
    cfg = parse(train={"steps": 4})
    assert cfg.train.steps == 4 and cfg.train.epochs is None


@pytest.mark.parametrize(("over", "fragment"), [
    ({"bogus": 1}, "s.toml: bogus: unknown key"),
    ({"n_trials": 0}, "s.toml: n_trials: expected an integer >= 1"),
    ({"n_trials": "3"}, "n_trials: expected an integer"),
    ({"space": "no_such_space"}, "s.toml: space: 'no_such_space': no such file"),
    ({"sampler": {"name": "cmaes"}}, "sampler.name: unknown sampler 'cmaes'"),
    ({"sampler": {"name": "nsga2", "bogus": 3}}, "sampler.bogus: not an option of NSGAIISampler"),
    # option types against the sampler's signature, before anything is written
    ({"sampler": {"name": "tpe", "n_startup_trials": "ten"}},
     "s.toml: sampler.n_startup_trials: expected int, got 'ten'"),
    ({"sampler": {"name": "tpe", "multivariate": 1}},
     "sampler.multivariate: expected bool | None, got 1"),
    ({"sampler": {"name": "tpe", "gamma": 3}}, "sampler.gamma: cannot be set from a TOML file"),
    ({"sampler": {"name": "nsga2", "population_size": 2.5}},
     "sampler.population_size: expected int, got 2.5"),
    ({"sampler": {"name": "random", "seed": True}}, "sampler.seed: expected int | None"),
    # issue 23 item 9: the study's key is named, not the sampler that refused it
    ({"seed": 99999999999}, "s.toml: seed: expected an integer in [0, 4294967295], got 9999"),
    ({"seed": -1}, "s.toml: seed: expected an integer in [0, 4294967295], got -1"),
    ({"sampler": {"name": "hvi", "beta": "big"}}, "sampler.beta: expected float | None, got 'big'"),
    ({"sampler": {"name": "hvi", "pool_size": 8}}, "sampler: pool_size = 8: must be"),
    ({"objectives": [{"name": "latency"}]}, "objectives[0].name: unknown objective 'latency'"),
    ({"objectives": [{"name": "rf", "direction": "up"}]}, "objectives[0].direction"),
    ({"objectives": ["rf", "rf"]}, "given twice"),
    ({"objectives": []}, "objectives: expected a non-empty list"),
    ({"constraints": {"max_latency": 1}}, "constraints.max_latency: unknown key"),
    ({"constraints": {"min_rf": 9, "max_rf": 3}}, "nothing is feasible"),
    ({"constraints": {"max_gflops": "x"}}, "constraints.max_gflops: expected a number"),
    ({"parallel": {"max_in_flight": 0}}, "parallel.max_in_flight: expected an integer >= 1"),
    ({"parallel": {"gpus": -1}}, "parallel.gpus"),
    ({"trial": {"kind": "tabular"}}, "trial.table: kind tabular needs table"),
    ({"arch": {"width": 8}}, "arch.width: is set per trial by the search space"),
    ({"arch": {"norm": "xx"}}, "s.toml: arch: norm='xx'"),
    ({"arch": {"stem_width": "8"}}, "arch.stem_width: expected int"),
    ({"train": {"lr": "fast"}}, "train.lr: expected float"),
    ({"train": {"epochs": 1, "steps": 2}}, "s.toml: train: train: set exactly one budget"),
    ({"data": {"image_size": 4}}, "s.toml: data: config: image_size 4"),
    ({"data": {"colour": 1}}, "data.colour: unknown key"),
    ({"baselines": [{"name": "mine"}]}, "baselines[0].name: unknown baseline 'mine'"),
    ({"baselines": [{"name": "x", "rates": [0]}]}, "baselines[0].rates"),
    ({"early_stop": {"margin": -1.0}}, "early_stop"),
])
def test_bad_configs_are_one_line(over: dict[str, object], fragment: str) -> None:
    with pytest.raises(StudyConfigError) as e:
        parse(**over)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_space_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match="space: missing"):
        parse_study_config({}, "s.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("space = [")
    with pytest.raises(StudyConfigError, match="invalid TOML"):
        load_study_config(bad)
    with pytest.raises(StudyConfigError, match="no such file"):
        load_study_config(tmp_path / "none.toml")


def test_space_path_relative_to_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        'kernel = [3]\noutput_stride = [8]\nwidth = [16]\ndepth = 3\n'
        '[rates]\nrule = "free"\nchoices = [1, 2]\n')
    study = tmp_path / "study.toml"
    study.write_text('space = "mine.toml"\n')
    assert load_study_config(study).space_path == (tmp_path / "mine.toml").resolve()


@pytest.mark.parametrize("name", shipped_names("studies"))
def test_shipped_baselines_fit_their_sampler(name: str) -> None:
    """Samplers other than hvi/tpe/random learn only from trials inside the space."""
    from nas_dil.search.baselines import baseline_candidate
    from nas_dil.spaces import load_space

    cfg = load_study_config(name)
    space = load_space(cfg.space_path)
    if cfg.sampler.name not in ("hvi", "tpe", "random"):
        for b in cfg.baselines:
            assert space.params_for(baseline_candidate(b, space)) is not None, b.name
