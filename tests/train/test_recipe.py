"""The training recipe (`nas_dil.train.recipe`): the learning-rate schedules follow their
formulas, SGD's first step is the hand-computed update, class weights and label smoothing
change the loss as F.cross_entropy's do, inverse-frequency weights are N / (K·n_c) of the
training labels, and the auxiliary head trains without entering the net."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nas_dil.data import DataConfig, load_data
from nas_dil.data.base import Batch
from nas_dil.models import ArchConfig
from nas_dil.train import TrainConfig, TrialConfig, TrialConfigError, run_trial
from nas_dil.train.fit import fit
from nas_dil.train.recipe import criterion_for, inverse_frequency, lr_at
from nas_dil.train.regime import Regime
from tests.data._builders import write_image, write_mask

CPU = torch.device("cpu")


# (config, total steps, step) -> lr, by hand: poly lr·(1-t)^0.9, cosine lr/2·(1+cos πt),
# t = (step - warmup) / (total - warmup); warm-up lr·(step+1)/warmup
@pytest.mark.parametrize(("train", "total", "step", "lr"), [
    ({"lr_schedule": "poly"}, 10, 0, 0.1),
    ({"lr_schedule": "poly"}, 10, 5, 0.1 * 0.5 ** 0.9),  # 0.0535887
    ({"lr_schedule": "poly"}, 10, 9, 0.1 * 0.1 ** 0.9),  # 0.0125893
    ({"lr_schedule": "poly", "poly_power": 2.0}, 10, 5, 0.025),
    ({"lr_schedule": "poly", "warmup_steps": 2}, 12, 0, 0.05),
    ({"lr_schedule": "poly", "warmup_steps": 2}, 12, 7, 0.1 * 0.5 ** 0.9),
    ({"lr_schedule": "poly"}, None, 7, 0.1),  # seconds budget: flat
    ({}, 10, 0, 0.1),
    ({}, 10, 5, 0.05),
    ({}, 10, 10, 0.0),
    ({"warmup_steps": 2}, 12, 1, 0.1),
])
def test_lr_follows_the_schedule_formula(train: dict, total: int | None, step: int,
                                         lr: float) -> None:
    tc = TrainConfig(lr=0.1, **train)
    assert lr_at(step, total, tc) == pytest.approx(lr, abs=1e-12)


class _Tiny:
    """Two 4×4 images of 3 classes in memory: a `Batches` for `fit`."""

    num_classes, ignore_index, n_train = 3, 255, 2

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(2, 3, 4, 4, generator=g)
        self.y = torch.randint(0, 3, (2, 4, 4), generator=g)
        self.y[0, 0, :2] = 255  # ignored pixels take no part in either loss

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
        yield self.x, self.y

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        yield self.x, self.y

    def label_counts(self) -> np.ndarray:
        return np.bincount(self.y[self.y < 3].numpy(), minlength=3)


def _one_step(**train: object) -> tuple[nn.Conv2d, nn.Conv2d, float, _Tiny]:
    """A 1×1 conv net before and after one `fit` step, and the loss `fit` recorded."""
    torch.manual_seed(0)
    net = nn.Conv2d(3, 3, 1)
    before = nn.Conv2d(3, 3, 1)
    before.load_state_dict(net.state_dict())
    data = _Tiny()
    tc = TrainConfig(epochs=None, steps=1, eval_every_steps=1, device="cpu", lr=0.1,
                     weight_decay=0.01, **train)  # type: ignore[arg-type]
    f = fit(Regime(net, data, CPU), tc, 0, val_batch_size=2, crop_hw=(4, 4))
    return before, net, f.loss_curve[0], data


@pytest.mark.parametrize(("nesterov", "factor"), [(False, 1.0), (True, 1.9)])
def test_sgd_first_step_is_the_hand_computed_update(nesterov: bool, factor: float) -> None:
    """SGD's first step: buffer = g + wd·p, p ← p - lr·buffer (Nesterov: g + m·buffer, so
    (1 + 0.9)× the buffer on the first step); the poly schedule's first rate is lr."""
    before, after, _, data = _one_step(optimizer="sgd", lr_schedule="poly", nesterov=nesterov)
    loss = F.cross_entropy(before(data.x), data.y, ignore_index=255)
    grads = torch.autograd.grad(loss, [before.weight, before.bias])
    for p0, g, p1 in zip([before.weight, before.bias], grads, [after.weight, after.bias],
                         strict=True):
        want = p0 - 0.1 * factor * (g + 0.01 * p0)
        torch.testing.assert_close(p1, want.detach(), rtol=1e-6, atol=1e-7)


def test_adamw_first_step_differs_from_sgd() -> None:
    """AdamW's first step moves every weight by about lr (its normalised step), SGD's by
    lr × its gradient: the optimiser is the one named."""
    b, adamw, _, _ = _one_step()
    _, sgd, _, _ = _one_step(optimizer="sgd")
    step = (adamw.weight - b.weight).abs()
    # lr·g/|g| (Adam's first step) plus the decoupled decay lr·wd·|p| < 0.001
    assert torch.allclose(step, torch.full_like(step, 0.1), atol=0.001)
    assert not torch.allclose(adamw.weight, sgd.weight)


@pytest.mark.parametrize("train", [
    {},
    {"class_weights": (1.0, 3.0, 0.5)},
    {"label_smoothing": 0.1},
    {"class_weights": (0.0, 2.0, 1.0), "label_smoothing": 0.2},
    {"class_weights": "inverse_frequency"},
])
def test_loss_is_cross_entropy_with_the_weights(train: dict) -> None:
    """The loss `fit` records for its one step is F.cross_entropy(weight, label_smoothing)
    of the net before the step."""
    before, _, loss, data = _one_step(**train)
    cw = train.get("class_weights")
    if cw == "inverse_frequency":
        cw = tuple(inverse_frequency(data.label_counts()))
    weight = None if cw is None else torch.tensor(cw, dtype=torch.float32)
    want = F.cross_entropy(before(data.x), data.y, weight=weight, ignore_index=255,
                           label_smoothing=train.get("label_smoothing", 0.0))
    assert loss == pytest.approx(want.item(), rel=1e-6)
    if train:
        plain = F.cross_entropy(before(data.x), data.y, ignore_index=255)
        assert loss != pytest.approx(plain.item(), rel=1e-4)  # the recipe changed the loss


@pytest.mark.parametrize(("counts", "weights"), [
    ([10, 30, 60], [100 / 30, 100 / 90, 100 / 180]),
    ([5, 0, 5], [1.0, 0.0, 1.0]),  # an absent class: never a target, weight 0
    ([1, 1], [1.0, 1.0]),
])
def test_inverse_frequency_by_hand(counts: list[int], weights: list[float]) -> None:
    assert inverse_frequency(np.array(counts)) == pytest.approx(weights)


def test_inverse_frequency_of_a_folder_counts_training_masks_only(tmp_path: Path) -> None:
    """Train masks (a, b) hold 16/3/1 pixels of classes 0/1/2 and 4 ignored; the val mask
    (all class 2) does not count: weights 20/(3·16), 20/(3·3), 20/(3·1)."""
    a = np.zeros((4, 4), np.uint8)
    a[0, :3] = 1
    a[1, 0] = 2
    b = np.zeros((2, 4), np.uint8)
    b[1, :] = 255
    val = np.full((4, 4), 2, np.uint8)
    for stem, m in (("a", a), ("b", b), ("v", val)):
        write_image(tmp_path / "images" / f"{stem}.png", np.zeros((*m.shape, 3), np.uint8))
        write_mask(tmp_path / "masks" / f"{stem}.png", m)
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "val.txt").write_text("v\n")
    data = load_data(DataConfig(source=str(tmp_path), num_classes=3, image_size=8))
    assert data.label_counts().tolist() == [16, 3, 1]
    crit = criterion_for(TrainConfig(class_weights="inverse_frequency"), data, CPU)
    assert crit.weight is not None
    assert crit.weight.tolist() == pytest.approx([20 / 48, 20 / 9, 20 / 3])


def test_synthetic_label_counts_are_every_training_pixel() -> None:
    data = load_data(DataConfig(image_size=16, n_train=8, n_val=2))
    counts = data.label_counts()
    assert counts.sum() == 8 * 16 * 16
    assert counts.tolist() == torch.bincount(data.train_y.flatten(),  # type: ignore[attr-defined]
                                             minlength=data.num_classes).tolist()


def test_class_weights_must_match_the_classes() -> None:
    with pytest.raises(TrialConfigError, match=r"class_weights has 2 weights, the data 3"):
        criterion_for(TrainConfig(class_weights=(1.0, 2.0)), _Tiny(), CPU)


# -- the recorded config -------------------------------------------------------------------

# TrainConfig().to_dict()'s keys before recipes existed (the trial keys of stored studies)
OLD_KEYS = {"epochs", "steps", "seconds", "eval_every_steps", "batch_size", "val_batch_size",
            "lr", "weight_decay", "warmup_steps", "device", "amp", "channels_last",
            "cudnn_benchmark", "threads", "cpus", "max_batch_pixels", "check_finite_every"}


@pytest.mark.parametrize(("train", "recorded"), [
    ({}, {}),
    ({"optimizer": "sgd"}, {"optimizer": "sgd", "momentum": 0.9, "nesterov": False}),
    ({"lr_schedule": "poly"}, {"lr_schedule": "poly", "poly_power": 0.9}),
    ({"class_weights": [1, 2.5]}, {"class_weights": [1, 2.5]}),
    ({"label_smoothing": 0.1, "slide": [32, 48]}, {"label_smoothing": 0.1, "slide": [32, 48]}),
])
def test_recipe_keys_are_recorded_only_when_set(train: dict, recorded: dict) -> None:
    """Unset, the config serialises exactly as before recipes existed (stored studies keep
    their trial keys); set, the recipe is in the trial's config and round-trips."""
    tc = TrainConfig(**train)
    d = json.loads(json.dumps(tc.to_dict()))
    assert set(d) == OLD_KEYS | set(recorded)
    assert {k: d[k] for k in recorded} == recorded
    assert TrialConfig.from_dict({"train": d}).train == tc


@pytest.mark.parametrize(("train", "fragment"), [
    ({"optimizer": "adam"}, "optimizer='adam'"),
    ({"lr_schedule": "step"}, "lr_schedule='step'"),
    ({"momentum": 1.0}, "momentum=1.0"),
    ({"optimizer": "sgd", "momentum": 0.0, "nesterov": True}, "needs momentum > 0"),
    ({"poly_power": 0.0}, "poly_power=0.0"),
    ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
    ({"aux_weight": -0.1}, "aux_weight=-0.1"),
    ({"class_weights": (1.0, -1.0)}, "class_weights=(1.0, -1.0)"),
    ({"class_weights": "balanced"}, "class_weights='balanced'"),
    ({"slide": (0, 8)}, "slide=(0, 8)"),
    ({"slide_stride": (8, 8)}, "a stride needs a slide"),
])
def test_bad_recipes_are_one_line(train: dict, fragment: str) -> None:
    with pytest.raises(TrialConfigError) as e:
        TrainConfig(**train)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("arch", "train", "fragment"), [
    ({}, {"aux_weight": 0.4}, "aux_weight=0.4 needs a torchvision backbone"),
    ({"backbone": "resnet18"}, {"aux_weight": 0.4, "freeze": "backbone"}, "freeze='none'"),
    ({"backbone": "resnet18"}, {"slide": (8, 8), "freeze": "backbone"}, "cached features"),
])
def test_aux_and_slide_refusals(arch: dict, train: dict, fragment: str) -> None:
    with pytest.raises(TrialConfigError, match=fragment):
        TrialConfig(arch=ArchConfig(**arch), train=TrainConfig(**train))


# -- a whole trial ---------------------------------------------------------------------------

TINY = DataConfig(image_size=32, n_train=16, n_val=4)
TINY_ARCH = ArchConfig(output_stride=4, stem_width=8, width=8)


def _trial(arch: ArchConfig = TINY_ARCH, **train: object) -> dict:
    tc = TrainConfig(epochs=None, steps=3, eval_every_steps=3, batch_size=8, threads=1,
                     device="cpu", **train)  # type: ignore[arg-type]
    return run_trial(TrialConfig(arch, TINY, tc), "1,2", seed=0).result.to_dict()


def test_sgd_poly_trains_differently_and_is_recorded() -> None:
    plain, sgd = _trial(), _trial(optimizer="sgd", lr_schedule="poly", lr=0.01)
    assert plain["loss_curve"] == _trial()["loss_curve"]  # same seed, same values
    assert sgd["loss_curve"] != plain["loss_curve"]
    assert sgd["config"]["train"]["optimizer"] == "sgd"
    assert sgd["config"]["train"]["lr_schedule"] == "poly"
    assert "optimizer" not in plain["config"]["train"]


def test_aux_head_trains_but_is_not_part_of_the_net() -> None:
    """On a ResNet-18 trial the head changes the loss, not the net: same parameter count,
    same state_dict keys, its config records aux_weight."""
    pytest.importorskip("torchvision")
    arch = ArchConfig(backbone="resnet18", output_stride=8, width=16)
    tc = TrainConfig(epochs=None, steps=1, eval_every_steps=1, batch_size=4, threads=1,
                     device="cpu")
    cfg = TrialConfig(arch, TINY, tc)
    plain = run_trial(cfg, "1,2", seed=0)
    aux = run_trial(TrialConfig(arch, TINY, TrainConfig(**{**tc.__dict__, "aux_weight": 0.4})),
                    "1,2", seed=0)
    assert aux.result.params == plain.result.params
    assert aux.model.state_dict().keys() == plain.model.state_dict().keys()
    assert aux.result.loss_curve[0] > plain.result.loss_curve[0]  # + 0.4 × the aux loss
    assert aux.result.config["train"]["aux_weight"] == 0.4
    assert not aux.model.backbone.trunk.layer3._forward_hooks  # the hook is gone


@pytest.mark.parametrize(("backbone", "stage", "channels"), [
    ("resnet18", "layer3", 256),  # res4, as mmseg's PSPNet/DeepLab aux head
    ("mobilenet_v3_large", "features.11", 112),  # two thirds of 17 blocks
])
def test_aux_regime_head_on_the_stage_trains(backbone: str, stage: str, channels: int) -> None:
    """The head reads the named stage (its channels probed), and one step moves both the
    head and the net."""
    pytest.importorskip("torchvision")
    from nas_dil.models.backbones import BackboneSegNet
    from nas_dil.train.aux import AuxRegime

    torch.manual_seed(0)
    data = load_data(DataConfig(image_size=32, n_train=4, n_val=2))
    net = BackboneSegNet("1,2", ArchConfig(backbone=backbone, output_stride=8, width=16,
                                           num_classes=data.num_classes))
    regime = AuxRegime(net, data, CPU, False, 0.4)
    assert regime.stage is net.get_submodule(f"backbone.trunk.{stage}")
    assert regime.head[0].in_channels == channels
    head0 = regime.head[0].weight.detach().clone()
    cls0 = {k: v.clone() for k, v in net.head.state_dict().items()}
    tc = TrainConfig(epochs=None, steps=1, eval_every_steps=1, batch_size=4, device="cpu",
                     aux_weight=0.4)
    fit(regime, tc, 0, val_batch_size=2, crop_hw=(32, 32))
    assert not torch.equal(regime.head[0].weight, head0)
    assert any(not torch.equal(v, cls0[k]) for k, v in net.head.state_dict().items()
               if v.is_floating_point())
