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
    # the effective RF: the usable RF is the 48-px crop for every feasible candidate there
    assert [(o.name, o.direction) for o in cfg.objectives] == [
        ("miou", "maximize"), ("erf", "maximize"), ("gflops", "minimize")]
    assert cfg.data.source == "synthetic" and cfg.trial.kind == "train"
    # the calibrated triple of docs/synthetic_data.md, plus HDC's sawtooth; 3 seeds each,
    # and the front confirmed over 3 seeds
    rates = {b.name: b.rates for b in cfg.baselines}
    assert rates == {"small_rf": (1, 1, 1), "gridded": (3, 3, 3), "hole_free": (1, 3, 5),
                     "hdc": BASELINES["hdc"]}
    assert cfg.noise.baseline_seeds == 3 and cfg.confirm.seeds == 3
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
    ({"sampler": {"name": "hvi", "beta": "big"}}, "sampler.beta: expected float | None, got 'big'"),
    ({"sampler": {"name": "hvi", "pool_size": 8}}, "sampler: pool_size = 8: must be"),
    ({"objectives": [{"name": "latency"}]}, "objectives[0].name: unknown objective 'latency'"),
    ({"objectives": [{"name": "rf", "direction": "up"}]}, "objectives[0].direction"),
    ({"objectives": ["rf", "rf"]}, "given twice"),
    ({"objectives": []}, "objectives: expected a non-empty list"),
    ({"constraints": {"max_latency": 1}}, "constraints.max_latency: unknown key"),
    ({"constraints": {"min_rf": 9, "max_rf": 3}}, "nothing is feasible"),
    ({"constraints": {"max_gflops": "x"}}, "constraints.max_gflops: expected a finite number"),
    ({"parallel": {"max_in_flight": 0}}, "parallel.max_in_flight: expected an integer >= 1"),
    ({"parallel": {"gpus": -1}}, "parallel.gpus"),
    ({"trial": {"kind": "tabular"}}, "trial.table: kind tabular needs table"),
    ({"arch": {"width": 8}}, "arch.width: is set per trial by the search space"),
    ({"arch": {"norm": "xx"}}, "s.toml: arch: norm='xx'"),
    ({"arch": {"stem_width": "8"}}, "arch.stem_width: expected int"),
    ({"train": {"lr": "fast"}}, "train.lr: expected float"),
    ({"train": {"epochs": 1, "steps": 2}}, "s.toml: train: set exactly one budget"),
    ({"data": {"image_size": 4}}, "s.toml: data: image_size 4"),
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


@pytest.mark.parametrize(("over", "policy"), [
    ({}, "refuse"),
    ({"dead_taps": "refuse"}, "refuse"),
    ({"dead_taps": "avoid"}, "avoid"),
    ({"dead_taps": "allow"}, "allow"),
    ({"constraints": {"allow_dead_taps": True}}, "allow"),  # an older file's spelling
    ({"constraints": {"allow_dead_taps": False}}, "refuse"),
])
def test_dead_taps_is_one_setting_reading_the_old_flag(over: dict[str, object],
                                                       policy: str) -> None:
    cfg = parse(**over)
    assert cfg.dead_taps.policy == policy
    d = cfg.to_dict()
    # recorded as the policy; "allow" also as before, so a stored study resumes unchanged
    assert d["dead_taps"] == policy
    assert d["constraints"].get("allow_dead_taps", False) is (policy == "allow")


@pytest.mark.parametrize(("over", "fragment"), [
    ({"dead_taps": "ignore"},
     "s.toml: dead_taps: expected one of refuse, avoid, allow, got 'ignore'"),
    ({"dead_taps": 1}, "s.toml: dead_taps: "),
    ({"dead_taps": "allow", "constraints": {"allow_dead_taps": True}},
     "s.toml: constraints.allow_dead_taps: the old spelling of dead_taps, given with "
     "dead_taps = 'allow': keep one"),
    ({"trial": {"kind": "nap"}}, "s.toml: trial.kind: expected one of train, sleep, tabular, "
                                 "got 'nap'"),
    ({"arch": {"num_classes": 3}}, "arch.num_classes: is set per trial"),
])
def test_dead_taps_and_kind_refusals_are_one_line(over: dict[str, object],
                                                  fragment: str) -> None:
    with pytest.raises(StudyConfigError) as e:
        parse(**over)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_arch_is_a_template_with_the_defaults_read_once() -> None:
    from nas_dil.models.config import ArchConfig, Place

    cfg = parse(arch={"stem_width": 8, "context_rates": [1, 2]})
    assert (cfg.arch.backbone, cfg.arch.target, cfg.arch.weights) == ("stem", "head", "none")
    assert cfg.arch.to_dict() == {"stem_width": 8, "context_rates": [1, 2]}  # as given
    assert cfg.to_dict()["arch"] == {"stem_width": 8, "context_rates": [1, 2]}
    assert cfg.arch.at(Place(4, 16), 5) == ArchConfig(
        stem_width=8, context_rates=(1, 2), output_stride=4, width=16, num_classes=5)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("over", "line"), [
    # issue 23 item 1: NaN, inf and negatives passed every `<= 0` range check
    ({"train": {"seconds": NAN}},
     "s.toml: train.seconds: expected a finite number, got nan"),
    ({"train": {"seconds": INF}}, "s.toml: train.seconds: expected a finite number, got inf"),
    ({"train": {"lr": INF}}, "s.toml: train.lr: expected a finite number, got inf"),
    ({"train": {"weight_decay": -1}},
     "s.toml: train.weight_decay: expected a finite number >= 0, got -1.0"),
    ({"parallel": {"cpus": NAN}}, "s.toml: parallel.cpus: expected a finite number, got nan"),
    ({"parallel": {"pending_timeout_s": NAN}},
     "s.toml: parallel.pending_timeout_s: expected a finite number, got nan"),
    ({"parallel": {"resources": {"tpu": INF}}},
     "s.toml: parallel.resources.tpu: expected a finite number >= 0, got inf"),
    ({"early_stop": {"margin": NAN}},
     "s.toml: early_stop.margin: expected a finite number, got nan"),
    ({"trial": {"kind": "sleep", "sleep_s": NAN}},
     "s.toml: trial.sleep_s: expected a finite number, got nan"),
    ({"constraints": {"max_gflops": NAN}},
     "s.toml: constraints.max_gflops: expected a finite number, got nan"),
    ({"sampler": {"name": "tpe", "prior_weight": NAN}},
     "s.toml: sampler.prior_weight: expected a finite number, got nan"),
    # issue 23 item 13: sizes no machine holds
    ({"data": {"n_train": 1_000_000_000_000}},
     "s.toml: data.n_train: expected an integer in [1, 100000000], got 1000000000000"),
    ({"data": {"n_train": 10_000_000}},
     "s.toml: data: n_train 10000000 + n_val 128 synthetic images of 64² px need 763 GiB in "
     "memory (at most 32 GiB)"),
    ({"arch": {"stem_width": 2**40}},
     "s.toml: arch.stem_width: expected an integer in [1, 4096], got 1099511627776"),
    ({"train": {"threads": 2**40}},
     "s.toml: train.threads: expected an integer in [1, 4096], got 1099511627776"),
    ({"sampler": {"pool_size": 2**40}},
     "s.toml: sampler: pool_size = 1099511627776: must be an integer <= 1048576"),
    # issue 23 item 14: one format, the file and the table named once
    ({"train": {"batch_size": 0}},
     "s.toml: train.batch_size: expected an integer in [1, 65536], got 0"),
    ({"train": {"epochs": 1, "steps": 2}},
     "s.toml: train: set exactly one budget, got epochs=1, steps=2, seconds=None"),
    ({"data": {"num_classes": 1}},
     "s.toml: data.num_classes: expected an integer in [2, 65536], got 1"),
    # issue 23 item 15: description is a string like every other top-level text key
    ({"description": 7}, "s.toml: description: expected a string, got 7"),
    # issue 23 item 9: an out-of-range seed names the seed key, not the sampler
    ({"seed": 2**40}, "s.toml: seed: expected an integer in [0, 4294967295], got 1099511627776"),
    ({"seed": -1}, "s.toml: seed: expected an integer in [0, 4294967295], got -1"),
    ({"sampler": {"name": "random", "seed": -1}},
     "s.toml: sampler.seed: expected an integer in [0, 4294967295], got -1"),
    # an Optuna option Optuna itself takes and fails on later
    ({"sampler": {"name": "tpe", "n_ei_candidates": -1}},
     "s.toml: sampler.n_ei_candidates: expected an integer >= 1, got -1"),
])
def test_refusal_is_the_exact_line(over: dict[str, object], line: str) -> None:
    with pytest.raises(StudyConfigError) as e:
        parse(**over)
    assert str(e.value) == line


def test_unknown_key_names_the_file_once(tmp_path: Path) -> None:
    """Issue 23 item 14: `train: tr_unknown.toml: train.colour: unknown key` said the table
    before the file, and the file twice."""
    study = tmp_path / "tr_unknown.toml"
    study.write_text('space = "hdc"\n[train]\ncolour = 1\n')
    with pytest.raises(StudyConfigError) as e:
        load_study_config(study)
    assert str(e.value).startswith(f"{study}: train.colour: unknown key (allowed: amp, ")
    assert str(e.value).count("tr_unknown.toml") == 1


def test_repeats_with_freeze_is_refused_where_the_file_is_parsed() -> None:
    """One check per rule: the study file alone decides it, so parsing refuses it (it was a
    preflight check, after the space and storage were opened)."""
    with pytest.raises(StudyConfigError) as e:
        parse(arch={"backbone": "resnet18"}, train={"freeze": "backbone"},
              sampler={"name": "hvi", "repeats": 2})
    assert str(e.value) == ("s.toml: sampler: repeats = 2 with [train] freeze = 'backbone': "
                            "each look would need its own feature cache; use repeats = 0 for "
                            "frozen studies")


def test_recipe_keys_are_accepted_and_bad_values_refused_in_one_line() -> None:
    cfg = parse(train={"optimizer": "sgd", "momentum": 0.9, "nesterov": True,
                       "lr_schedule": "poly", "class_weights": [1, 2.5, 0.5],
                       "label_smoothing": 0.1, "slide": [64, 48], "slide_stride": [32, 32]})
    t = cfg.train  # type: ignore[attr-defined]
    assert (t.optimizer, t.nesterov, t.lr_schedule) == ("sgd", True, "poly")
    assert t.class_weights == (1.0, 2.5, 0.5) and t.slide == (64, 48)
    inv = parse(train={"class_weights": "inverse_frequency"})
    assert inv.train.class_weights == "inverse_frequency"  # type: ignore[attr-defined]
    for train, fragment in [
        ({"optimizer": "adam"}, "s.toml: train: optimizer='adam'"),
        ({"class_weights": [1, "x"]}, "train.class_weights: expected list of numbers | str"),
        ({"slide": 64}, "train.slide: expected list of int | None, got 64"),
        ({"aux_weight": 0.4}, "aux_weight=0.4 needs a torchvision backbone"),
    ]:
        with pytest.raises(StudyConfigError) as e:
            parse(train=train)
        assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize(("over", "seeds", "confirm", "cap"), [
    ({}, 3, 3, None),  # the defaults: 3 seeds per baseline, the front confirmed over 3
    ({"noise": {"baseline_seeds": 1}, "confirm": {"seeds": 0}}, 1, 0, None),  # as before
    ({"confirm": {"seeds": 5, "max_trials": 12}}, 3, 5, 12),
])
def test_noise_and_confirm_tables(over: dict[str, object], seeds: int, confirm: int,
                                  cap: int | None) -> None:
    cfg = parse(**over)
    assert (cfg.noise.baseline_seeds, cfg.confirm.seeds, cfg.confirm.max_trials) == (
        seeds, confirm, cap)
    assert cfg.confirm.enabled is (confirm >= 2)
    d = cfg.to_dict()
    assert d["noise"] == {"baseline_seeds": seeds}
    assert d["confirm"] == {"seeds": confirm, "max_trials": cap}
    assert "noise" not in cfg.identity() and "confirm" not in cfg.identity()  # may change


@pytest.mark.parametrize(("over", "fragment"), [
    ({"noise": {"baseline_seeds": 0}},
     "s.toml: noise.baseline_seeds: expected an integer in [1, 100], got 0"),
    ({"noise": {"seeds": 3}}, "s.toml: noise.seeds: unknown key"),
    ({"confirm": {"seeds": -1}}, "s.toml: confirm.seeds: expected an integer in [0, 100], got -1"),
    ({"confirm": {"max_trials": 1.5}}, "s.toml: confirm.max_trials: expected int | None, got 1.5"),
    ({"confirm": 3}, "s.toml: confirm: expected a table, got 3"),
])
def test_noise_and_confirm_refusals_are_one_line(over: dict[str, object],
                                                 fragment: str) -> None:
    with pytest.raises(StudyConfigError) as e:
        parse(**over)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("over", [{"data": {"source": "\x00"}}, {"space": "hdc\x00"},
                                  {"feature_cache": "a\x00b"}, {"description": "x\x00"}])
def test_a_nul_byte_in_a_string_is_one_line(over: dict[str, object]) -> None:
    """Found by the fuzz test: `[data] source = "\\x00"` was a ValueError from pathlib."""
    with pytest.raises(StudyConfigError) as e:
        parse(**over)
    assert "NUL" in str(e.value) or "expected str" in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
