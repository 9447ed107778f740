"""Sliding-window evaluation (`nas_dil.train.slide`): the windows mmseg's slide mode takes,
logits averaged where they overlap (checked by hand), and the whole-image logits where one
window covers the image (in `evaluate_model` and in a trial)."""

from __future__ import annotations

import pytest
import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.models import ArchConfig, build_model
from nas_dil.train import TrainConfig, TrialConfig, evaluate_model, run_trial
from nas_dil.train.slide import default_stride, slide_logits, windows


@pytest.mark.parametrize(("size", "window", "stride", "spans"), [
    (5, 3, 2, [(0, 3), (2, 5)]),
    (6, 3, 2, [(0, 3), (2, 5), (3, 6)]),  # the last window shifted back to the border
    (9, 3, 3, [(0, 3), (3, 6), (6, 9)]),
    (3, 3, 2, [(0, 3)]),
    (2, 3, 2, [(0, 2)]),  # smaller than the window: the image itself
    (1024, 769, 513, [(0, 769), (255, 1024)]),  # mmseg's Cityscapes width... of a height
])
def test_windows(size: int, window: int, stride: int, spans: list[tuple[int, int]]) -> None:
    assert windows(size, window, stride) == spans


def test_default_stride_is_two_thirds() -> None:
    assert default_stride((769, 769)) == (513, 513) and default_stride((3, 6)) == (2, 4)


def _window_sum(x: torch.Tensor) -> torch.Tensor:
    """A position-dependent 'net': every pixel gets the sum of its window (one channel)."""
    return x.sum(dim=(1, 2, 3), keepdim=True).expand(x.shape[0], 1, *x.shape[-2:])


def test_overlapping_windows_average_by_hand() -> None:
    """1×5 image 1..5, windows 1×3 two apart: [1,2,3] sums 6, [3,4,5] sums 12; pixel 3 is in
    both: (6 + 12) / 2."""
    x = torch.arange(1.0, 6.0).view(1, 1, 1, 5)
    out = slide_logits(_window_sum, x, (1, 3), (1, 2))
    assert out.flatten().tolist() == [6, 6, 9, 12, 12]
    # 2-D: 3×3 image of ones, 2×2 windows one apart: each window sums 4 wherever it is
    ones = torch.ones(1, 1, 3, 3)
    assert slide_logits(_window_sum, ones, (2, 2), (1, 1)).flatten().tolist() == [4.0] * 9


def test_one_window_is_the_whole_image() -> None:
    torch.manual_seed(0)
    net = build_model("1,2,5", arch=ArchConfig(output_stride=4, stem_width=8, width=8,
                                                num_classes=4)).eval()
    x = torch.randn(2, 3, 24, 32)
    with torch.no_grad():
        whole = net(x)
        assert torch.equal(slide_logits(net, x, (24, 32)), whole)
        assert torch.equal(slide_logits(net, x, (64, 64), (8, 8)), whole)
        assert not torch.equal(slide_logits(net, x, (16, 16), (8, 8)), whole)


def test_evaluate_model_slide_equals_whole_image_when_one_window_covers_it() -> None:
    data = load_data(DataConfig(image_size=32, n_train=1, n_val=8))
    torch.manual_seed(0)
    net = build_model("1,2", arch=ArchConfig(output_stride=4, stem_width=8, width=8,
                                             num_classes=data.num_classes))
    cpu = torch.device("cpu")
    whole = evaluate_model(net, data, device=cpu)
    one = evaluate_model(net, data, device=cpu, slide=(32, 32))
    assert one["slide"] == {"window": [32, 32], "stride": [22, 22]} and whole["slide"] is None
    assert {k: one[k] for k in ("miou", "per_class_iou", "pixel_acc")} == {
        k: whole[k] for k in ("miou", "per_class_iou", "pixel_acc")}


def test_trial_with_one_window_equals_the_whole_image_trial() -> None:
    cfg = TrialConfig(ArchConfig(output_stride=4, stem_width=8, width=8),
                      DataConfig(image_size=32, n_train=16, n_val=4),
                      TrainConfig(epochs=1, batch_size=8, threads=1, device="cpu"))
    whole = run_trial(cfg, "1,2", seed=0).result
    slide = run_trial(TrialConfig(cfg.arch, cfg.data, TrainConfig(
        epochs=1, batch_size=8, threads=1, device="cpu", slide=(32, 32))), "1,2", seed=0).result
    assert slide.miou_curve == whole.miou_curve and slide.loss_curve == whole.loss_curve
    assert list(slide.config["train"]["slide"]) == [32, 32]
