"""Real Optuna studies that follow the search's storage contract, for report/export tests.

``hand_made_study``: values chosen by hand (Pareto set, knee and hypervolume known), every
trial state, both constraint formats; ``with_dead_taps`` marks some of its trials as trained
with dead taps. ``crop_study``: trials whose analytic attrs (usable and nominal RF, dead taps)
come from the real code at a training crop, as the search stores them today.
``trained_study``: real tiny ``run_trial`` trainings with weights kept as the search keeps
them (``OUT/weights/trial_<N>.pt``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

import nas_dil
from nas_dil.models import ArchConfig
from nas_dil.schedule import analyze, net_cost
from nas_dil.spaces import Candidate

OBJECTIVES = [
    {"name": "miou", "direction": "maximize"},
    {"name": "rf", "direction": "maximize"},
    {"name": "gflops", "direction": "minimize"},
]
STUDY = "demo"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def meta(out_dir: Path, objectives: list[dict[str, str]] = OBJECTIVES,
         name: str = STUDY) -> dict[str, Any]:
    return {
        "version": nas_dil.__version__,
        "study_config": {"name": name, "space": "hdc", "n_trials": 8},
        "objectives": objectives,
        "space": {"name": "hdc"},
        "out_dir": str(out_dir),
        "data": {"source": "synthetic", "image_size": 16},
    }


def new_study(out_dir: Path, objectives: list[dict[str, str]] = OBJECTIVES,
              name: str = STUDY, with_meta: bool = True) -> optuna.Study:
    out_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=f"sqlite:///{out_dir / 'study.db'}", study_name=name,
        directions=[o["direction"] for o in objectives])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.set_metric_names([o["name"] for o in objectives])
    if with_meta:
        study.set_user_attr("nas_dil", meta(out_dir, objectives, name))
    return study


def schedule_attrs(cand: Candidate, arch: ArchConfig | None = None) -> dict[str, Any]:
    """The analytic attrs every trial has before training (from the real schedule code)."""
    a = analyze(cand.schedule)
    arch = arch or ArchConfig(output_stride=cand.output_stride, width=cand.width, num_classes=5)
    return {
        "candidate": cand.to_dict(), "arch": arch.to_dict(), "key": cand.key(), "seed": 0,
        "rf_stack": a["rf"], "holes": a["holes"], "coverage": a["coverage"],
        "gridding_free": a["gridding_free"], "hdc_rule1": a["hdc_rule1"],
        "hdc_rule1_groups": a["hdc_rule1_groups"],
        "hdc_rule2": a["hdc_rule2"], "hdc_rule3": a["hdc_rule3"], "hdc": a["hdc"], "m": a["m"],
    }


@dataclass
class Spec:
    rates: tuple[int, ...]
    state: TrialState = TrialState.COMPLETE
    miou: float | None = None
    rf: float = 50.0
    gflops: float = 1.0
    constraint: float | None = None  # > 0: infeasible
    old_constraint_format: bool = False  # the list under "constraints" (sampler constraints_func)
    baseline: str | None = None
    curve: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def add_trial(study: optuna.Study, s: Spec) -> None:
    cand = Candidate(s.rates, 3, 8, 16)
    attrs = schedule_attrs(cand)
    arch = ArchConfig.from_dict(attrs["arch"])
    params = net_cost(64, 64, cand.rates, kernel=cand.kernel, **arch.cost_kwargs()).params
    attrs.update(rf=s.rf, gflops=s.gflops, flops=int(s.gflops * 1e9), macs=int(s.gflops * 5e8),
                 params=params, node="test", retries=0, **s.extra)
    if s.baseline:
        attrs["baseline"] = s.baseline
    if s.curve is not None:
        attrs["miou_curve"] = s.curve
        attrs["loss_curve"] = [1.0] * len(s.curve)
    if s.miou is not None and s.state == TrialState.COMPLETE:
        attrs.update(miou=s.miou, pixel_acc=0.9, per_class_iou=[s.miou] * 5, wall_time_s=1.0)
    if s.state == TrialState.FAIL:
        attrs["fail_reason"] = "diverged: loss nan at step 3"
    if s.state == TrialState.PRUNED:
        attrs["pruned_reason"] = "below the median"
    kw: dict[str, Any] = {}
    if s.constraint is not None:
        if s.old_constraint_format:
            kw["system_attrs"] = {"constraints": [s.constraint]}
        else:
            kw["constraints"] = {"gflops_budget": s.constraint}
    values = [s.miou, s.rf, s.gflops] if s.state == TrialState.COMPLETE else None
    inter = {i: v for i, v in enumerate(s.curve)} if s.curve else None
    study.add_trial(optuna.trial.create_trial(state=s.state, values=values, user_attrs=attrs,
                                              intermediate_values=inter, **kw))


# number -> spec. Feasible COMPLETE: 0, 1, 2, 6; Pareto: 0, 1, 6 (2 is dominated by 0;
# 3 dominates all but is infeasible); knee: 0 (see test_report_data for the arithmetic).
HAND_MADE = [
    Spec((1, 2, 5), miou=0.60, rf=100, gflops=2.0, baseline="hdc-125", curve=[0.3, 0.5, 0.6],
         constraint=-1.0),
    Spec((1, 2, 3), miou=0.55, rf=80, gflops=1.0, curve=[0.2, 0.4, 0.55]),
    Spec((2, 2, 2), miou=0.50, rf=70, gflops=2.5, baseline="constant-2", curve=[0.2, 0.3, 0.5],
         constraint=0.0, old_constraint_format=True),
    Spec((1, 2, 9), miou=0.70, rf=150, gflops=0.5, constraint=1.0, curve=[0.5, 0.6, 0.7]),
    Spec((1, 3, 5), TrialState.PRUNED, curve=[0.1, 0.15]),
    Spec((1, 5, 9), TrialState.FAIL),
    Spec((1, 3, 5), miou=0.65, rf=90, gflops=3.0, curve=[0.3, 0.5, 0.65]),
    Spec((1, 2, 4), TrialState.RUNNING),
]


def hand_made_study(out_dir: Path) -> optuna.Study:
    study = new_study(out_dir)
    for s in HAND_MADE:
        add_trial(study, s)
    return study


def with_dead_taps(out_dir: Path, dead: dict[int, int]) -> optuna.Study:
    """The hand-made study where trial N of ``dead`` trained with that many dead taps (its
    nominal RF four times its usable one); the other trials record 0 dead taps."""
    study = new_study(out_dir)
    for i, s in enumerate(HAND_MADE):
        n = dead.get(i, 0)
        layers = [{"name": "stack.2", "kernel": [3, 3], "dilation": [9, 9], "stride": 1,
                   "size_in": [6, 6], "dead_h": [-9, 9], "dead_w": [-9, 9], "dead": n}] if n else []
        add_trial(study, replace(s, extra={**s.extra, "rf_nominal": s.rf * (4 if n else 1),
                                            "dead_taps": n, "dead_layers": layers}))
    return study


CROP = 48  # the crop_study's training crop (the quickstart's)
# (rates, mIoU, baseline); at 48 px and OS 8 the stack's input is 6×6, so rate 9 is dead
CROP_TRIALS = [((1, 2, 3), 0.50, None), ((1, 3, 9, 1, 3, 9), 0.62, "gridded-139"),
               ((2, 2, 2), 0.45, None)]


def crop_study(out_dir: Path, crop: int | tuple[int, int] = CROP) -> optuna.Study:
    """COMPLETE trials of CROP_TRIALS (OS 8, width 16) with their real analytic attrs and
    training config at ``crop``; values (mIoU, usable RF, GFLOPs)."""
    from nas_dil.data import DataConfig
    from nas_dil.models.analytic import analytic_attrs
    from nas_dil.train import TrainConfig, TrialConfig

    study = new_study(out_dir)
    for rates, miou, base in CROP_TRIALS:
        cand = Candidate(rates, 3, 8, 16)
        arch = ArchConfig(output_stride=8, width=16, num_classes=5)
        cfg = TrialConfig(arch=arch, data=DataConfig(image_size=crop),
                          train=TrainConfig(epochs=None, steps=2, device="cpu"))
        attrs = {**schedule_attrs(cand, arch), **analytic_attrs(cand.schedule, arch, crop),
                 "trial_config": cfg.to_dict(), "miou": miou, "node": "test", "retries": 0}
        if base:
            attrs["baseline"] = base
        study.add_trial(optuna.trial.create_trial(
            values=[miou, attrs["rf"], attrs["gflops"]], user_attrs=attrs))
    return study


# -- real trainings ---------------------------------------------------------------------------
TRAINED = [((1, 2, 3), 8), ((2, 2, 2), 8), ((1, 2, 5), 4)]  # (rates, width)


def tiny_trial_config(width: int) -> Any:
    from nas_dil.data import DataConfig
    from nas_dil.train import TrainConfig, TrialConfig

    return TrialConfig(
        arch=ArchConfig(width=width, stem_width=4, output_stride=4),
        data=DataConfig(image_size=16, n_train=8, n_val=4),
        train=TrainConfig(epochs=None, steps=2, eval_every_steps=1, batch_size=4,
                          val_batch_size=4, device="cpu", threads=1))


@dataclass
class Trained:
    out_dir: Path
    study: optuna.Study
    outputs: dict[int, Any]  # trial number -> trained model's output on `fixed_input`
    params: dict[int, int]


def fixed_input() -> Any:
    import torch

    g = torch.Generator().manual_seed(1234)
    return torch.randn(2, 3, 16, 16, generator=g)


def trained_study(out_dir: Path) -> Trained:
    """Train TRAINED for real; keep weights as the search does: Pareto-front trials and the
    seed baseline (trial 0, "baseline-123") get ``OUT/weights/trial_<N>.pt``."""
    import torch

    from nas_dil.pareto import pareto_mask
    from nas_dil.train import run_trial

    study = new_study(out_dir)
    (out_dir / "weights").mkdir()
    outputs: dict[int, Any] = {}
    params: dict[int, int] = {}
    done = []
    for number, (rates, width) in enumerate(TRAINED):
        cfg = tiny_trial_config(width)
        cand = Candidate(rates, 3, cfg.arch.output_stride, width)
        outcome = run_trial(cfg, cand.schedule, seed=number)
        r = outcome.result
        model = outcome.model.eval()
        with torch.no_grad():
            outputs[number] = model(fixed_input())
        params[number] = r.params
        arch = ArchConfig.from_dict(r.config["arch"])
        attrs = schedule_attrs(cand, arch)
        attrs.update(
            trial_config=r.config, seed=number, rf=r.rf, macs=r.macs, flops=r.flops,
            gflops=r.flops / 1e9, params=r.params, miou=r.miou, per_class_iou=r.per_class_iou,
            pixel_acc=r.pixel_acc, miou_curve=r.miou_curve, loss_curve=r.loss_curve,
            wall_time_s=r.wall_time_s, images_per_s=r.images_per_s,
            peak_mem_bytes=r.peak_mem_bytes, node=r.node, retries=0)
        if number == 0:
            attrs["baseline"] = "baseline-123"
        done.append((model, attrs, [r.miou, r.rf, r.flops / 1e9]))
    front = pareto_mask([v for *_, v in done], [o["direction"] for o in OBJECTIVES])
    for number, ((model, attrs, values), on_front) in enumerate(zip(done, front, strict=True)):
        if on_front or attrs.get("baseline"):
            rel = f"weights/trial_{number}.pt"
            torch.save(model.state_dict(), out_dir / rel)
            attrs["weights"] = rel
        study.add_trial(optuna.trial.create_trial(
            values=values, user_attrs=attrs,
            intermediate_values=dict(enumerate(attrs["miou_curve"]))))
    return Trained(out_dir, study, outputs, params)


_TRAINED: dict[str, Trained] = {}


def shared_trained(base: Path) -> Trained:
    """One trained study per test session (tests must not change it)."""
    if "t" not in _TRAINED:
        _TRAINED["t"] = trained_study(base / "trained-out")
    return _TRAINED["t"]
