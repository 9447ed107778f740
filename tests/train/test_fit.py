"""The one training loop (`fit`) gives, from one seed, the trial values the loop it replaced
gave (recorded before the refactor of issue 20 on this CPU: torch, one thread); and its modes
(`Regime`) share it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.models import ArchConfig, build_model
from nas_dil.schedule import Schedule
from nas_dil.train import TrainConfig, TrialConfig, run_trial
from nas_dil.train.fit import fit
from nas_dil.train.regime import Regime

DATA = DataConfig(image_size=32, n_train=64, n_val=16)
ARCH = ArchConfig(output_stride=4, stem_width=8, width=8)


def _stop_at_2(i: int, miou: float, partial: dict[str, Any]) -> bool:
    return i >= 2


# (train settings, callback) -> (loss curve, mIoU curve, steps, stopped), by the old loop
RECORDED = [
    ({"epochs": None, "steps": 14, "eval_every_steps": 6, "warmup_steps": 2, "lr": 0.02}, None,
     [1.3777116139729817, 1.025343894958496, 0.9840389490127563],
     [0.11758987308685921, 0.31917611094987375, 0.31547746956165246], 14, False),
    ({"epochs": 3, "lr": 0.02}, _stop_at_2,
     [1.278359293937683, 0.9309730529785156], [0.2584968411831688, 0.31741344526243803], 16,
     True),
]


@pytest.mark.parametrize(("train", "callback", "losses", "mious", "steps", "stopped"), RECORDED)
def test_same_seed_same_values_as_the_loop_it_replaced(train, callback, losses, mious, steps,
                                                       stopped) -> None:
    cfg = TrialConfig(ARCH, DATA, TrainConfig(batch_size=8, threads=1, device="cpu", **train))
    r = run_trial(cfg, "1,2,5", seed=0, callback=callback).result
    # bit-identical on the machine they were recorded on; other CPUs may round differently
    assert r.loss_curve == pytest.approx(losses, rel=1e-4)
    assert r.miou_curve == pytest.approx(mious, rel=1e-4)
    assert (r.steps, r.stopped_early) == (steps, stopped)


def test_fit_trains_a_regime_directly() -> None:
    """`fit` needs only a regime: the whole net on in-memory data, from the torch seed."""
    data = load_data(DATA)
    cfg = TrialConfig(ARCH, DATA, TrainConfig(epochs=None, steps=6, eval_every_steps=6,
                                              batch_size=8, threads=1, lr=0.02, device="cpu"))
    torch.manual_seed(0)
    arch = ArchConfig(output_stride=4, stem_width=8, width=8, num_classes=data.num_classes)
    regime = Regime(build_model(Schedule((1, 2, 5)), arch=arch), data, torch.device("cpu"))
    seen: list[int] = []
    f = fit(regime, cfg.train, 0, val_batch_size=32, crop_hw=(32, 32),
            progress=lambda step, total, info: seen.append(step))
    assert seen == [1, 2, 3, 4, 5, 6] and f.steps == 6 and f.images == 48
    assert len(f.miou_curve) == len(f.loss_curve) == 1 and f.last["miou"] == f.miou_curve[0]
    assert regime.model.training  # left in train mode after the last evaluation
    # the same trial through run_trial: the same values
    r = run_trial(cfg, "1,2,5", seed=0, data=data).result
    assert r.loss_curve == f.loss_curve and r.miou_curve == f.miou_curve
