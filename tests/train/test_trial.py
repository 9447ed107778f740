"""Real (tiny) training trials on the synthetic data: determinism, budgets, failures."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.models import ArchConfig, count_params
from nas_dil.models.analytic import analytic_attrs
from nas_dil.schedule import Schedule, net_cost
from nas_dil.train import (
    TrainConfig,
    TrialConfig,
    TrialConfigError,
    TrialDiverged,
    TrialOOM,
    run_trial,
)

TINY_DATA = DataConfig(image_size=24, n_train=32, n_val=8)
TINY_ARCH = ArchConfig(output_stride=4, stem_width=8, width=8)


def _cfg(**train: object) -> TrialConfig:
    base = {"epochs": None, "steps": 3, "batch_size": 8, "threads": 1, "device": "cpu"}
    base.update(train)
    return TrialConfig(arch=TINY_ARCH, data=TINY_DATA, train=TrainConfig(**base))


def test_same_seed_same_result_other_seed_other_result() -> None:
    a = run_trial(_cfg(), "1,2,3", seed=1).result
    b = run_trial(_cfg(), "1,2,3", seed=1).result
    c = run_trial(_cfg(), "1,2,3", seed=2).result
    assert a.miou == b.miou and a.loss_curve == b.loss_curve
    assert a.loss_curve != c.loss_curve


def test_result_fields_are_analytic_and_json() -> None:
    r = run_trial(_cfg(), "1,2,5", seed=0).result
    s = Schedule((1, 2, 5))
    arch = ArchConfig(output_stride=4, stem_width=8, width=8, num_classes=len(r.per_class_iou))
    cost = net_cost(24, 24, s.rates, **arch.cost_kwargs())
    assert (r.flops, r.macs, r.rf_nominal) == (cost.flops, cost.macs, cost.rf_image) == (
        230400, 115200, 71)
    assert r.rf == 24 and r.dead_taps == 0  # usable: never more than the 24-px crop
    assert r.rf_stack == 17 and r.holes == 0 and r.gridding_free and r.hdc
    d = json.loads(json.dumps(r.to_dict()))
    assert d["steps"] == 3 and d["train_images"] == 24 and 0 <= d["miou"] <= 1
    assert TrialConfig.from_dict(d["config"]).arch.num_classes == len(r.per_class_iou)
    assert r.images_per_s > 0 and r.peak_mem_bytes > 0


def test_known_analytic_attributes_are_taken_as_given() -> None:
    """The search passes what it computed at ask time (`payload.analytic`); the trial
    takes it rather than computing it again, and computes it only when not given."""
    r = run_trial(_cfg(), "1,2,5", seed=0).result
    arch = ArchConfig(output_stride=4, stem_width=8, width=8, num_classes=len(r.per_class_iou))
    known = analytic_attrs(Schedule((1, 2, 5)), arch, (24, 24))
    assert (known["rf"], known["flops"], known["holes"]) == (r.rf, r.flops, r.holes)
    given = run_trial(_cfg(), "1,2,5", seed=0, known={**known, "rf": 999, "flops": 7}).result
    assert (given.rf, given.flops, given.holes) == (999, 7, r.holes)
    assert given.loss_curve == r.loss_curve  # the training is the same


def test_params_match_the_model() -> None:
    outcome = run_trial(_cfg(), "2,2", seed=0)
    r = outcome.result
    assert r.params == count_params(outcome.model)
    assert r.holes > 0 and not r.gridding_free


def test_epoch_budget_evaluates_each_epoch() -> None:
    r = run_trial(_cfg(steps=None, epochs=2), "1,2", seed=0).result
    assert r.steps == 2 * math.ceil(32 / 8) and len(r.miou_curve) == 2 == len(r.loss_curve)
    assert r.epochs == pytest.approx(2.0)


def test_steps_budget_with_intermediate_evaluations() -> None:
    r = run_trial(_cfg(steps=5, eval_every_steps=2), "1,2", seed=0).result
    assert r.steps == 5 and len(r.miou_curve) == 3  # after steps 2, 4 and the final 5


def test_seconds_budget_stops() -> None:
    r = run_trial(_cfg(steps=None, seconds=0.5, eval_every_steps=1000), "1", seed=0).result
    assert r.steps >= 1 and r.train_time_s < 10


def test_callback_stops_early() -> None:
    seen: list[int] = []

    def cb(i: int, miou: float, partial: dict) -> bool:
        seen.append(i)
        assert partial["miou_curve"][-1] == miou
        return i >= 2

    r = run_trial(_cfg(steps=None, epochs=5), "1,2", seed=0, callback=cb).result
    assert r.stopped_early and seen == [1, 2] and len(r.miou_curve) == 2


def test_nan_loss_raises_trial_diverged_with_the_step() -> None:
    data = load_data(TINY_DATA)
    original = data.train_batches

    def poisoned(batch_size: int, epoch: int, seed: int) -> Iterator:
        for i, (x, y) in enumerate(original(batch_size, epoch, seed)):
            yield (x * float("nan") if i == 2 else x), y

    data.train_batches = poisoned  # type: ignore[method-assign]
    with pytest.raises(TrialDiverged) as info:
        run_trial(_cfg(steps=4, check_finite_every=10), "1,2", seed=0, data=data)
    assert info.value.step == 3 and "diverged" in info.value.reason


def test_out_of_memory_becomes_trial_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    """The conversion path (a real CUDA OOM is in the gpu-marked test below)."""
    from nas_dil.models.net import DilatedSegNet

    def boom(self: object, x: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(DilatedSegNet, "forward", boom)
    with pytest.raises(TrialOOM) as info:
        run_trial(_cfg(), "1,2", seed=0)
    assert info.value.batch == 8 and "batch 8 at 24x24" in info.value.reason


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_oom() -> None:
    cfg = TrialConfig(
        arch=ArchConfig(output_stride=4, width=1024, stem_width=512),
        data=DataConfig(image_size=1024, n_train=64, n_val=8),
        train=TrainConfig(epochs=None, steps=1, batch_size=64, max_batch_pixels=2**40),
    )
    with pytest.raises(TrialOOM):
        run_trial(cfg, "1,2,4,8,16", seed=0)


def test_memory_cap_and_bad_config() -> None:
    with pytest.raises(TrialConfigError, match="max_batch_pixels"):
        run_trial(_cfg(max_batch_pixels=100), "1", seed=0)
    with pytest.raises(TrialConfigError, match="exactly one budget"):
        TrainConfig(epochs=2, steps=3)
    with pytest.raises(TrialConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(TrialConfigError, match="unknown keys"):
        TrialConfig.from_dict({"train": {"epoch": 3}})


def test_config_json_round_trip() -> None:
    cfg = _cfg()
    assert TrialConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_folder_trial_same_with_worker_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Data loaded in DataLoader workers (the trial's cpus) trains exactly as in-process."""
    from tests.data._builders import make_folder

    root = make_folder(tmp_path / "d", n=8, sizes=[(20, 28), (24, 24)])
    results = []
    for workers in (0, 1):
        data = DataConfig(source=str(root), image_size=[16, 20], workers=workers)
        cfg = TrialConfig(arch=TINY_ARCH, data=data,
                          train=TrainConfig(epochs=None, steps=3, batch_size=4, threads=1,
                                            device="cpu", eval_every_steps=2,
                                            max_batch_pixels=4 * 24 * 28))
        results.append(run_trial(cfg, "1,2", seed=0).result)
    a, b = results
    assert a.loss_curve == b.loss_curve and a.miou_curve == b.miou_curve
    assert len(a.miou_curve) == 2  # an evaluation mid-epoch did not disturb the training pass
    assert a.macs == net_cost(16, 20, (1, 2), **ArchConfig(
        output_stride=4, stem_width=8, width=8, num_classes=3).cost_kwargs()).macs


def test_cpus_must_be_positive() -> None:
    with pytest.raises(TrialConfigError, match="cpus=0"):
        TrainConfig(cpus=0)
