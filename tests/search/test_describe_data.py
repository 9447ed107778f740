"""What the search records about its data: the val split's class pixel counts (the report's
chance level) beside the data set's own description."""

from __future__ import annotations

from dataclasses import asdict

import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.search.worker import describe_data


def test_val_class_pixels_count_every_labelled_val_pixel() -> None:
    cfg = DataConfig(image_size=16, n_train=4, n_val=6)
    got = describe_data(asdict(cfg), "cpu")
    px = got["describe"]["val_class_pixels"]
    assert len(px) == got["num_classes"] and sum(px) == 6 * 16 * 16  # no ignored label
    d = load_data(cfg, torch.device("cpu"))
    ys = torch.cat([y.reshape(-1) for _, y in d.val_batches(4)])
    assert px == torch.bincount(ys, minlength=d.num_classes).tolist()
    assert max(px) < sum(px)  # more than one class: the chance level is below 1
