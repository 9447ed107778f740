"""The embedded synthetic data: determinism, labels, class balance, sizes and batches."""

from __future__ import annotations

import json

import pytest
import torch

from nas_dil.data import DataConfig, DataError, SegData, load_data
from nas_dil.data.synthetic import CLASS_NAMES, render


def small_cfg(**kw) -> DataConfig:
    base = {"n_train": 24, "n_val": 10}
    base.update(kw)
    return DataConfig(**base)


def test_loads_with_fixed_classes() -> None:
    data = load_data(small_cfg())
    assert isinstance(data, SegData)
    assert data.num_classes == len(CLASS_NAMES) and 4 <= data.num_classes <= 6
    assert data.class_names == CLASS_NAMES and data.class_names[0] == "background"
    assert (data.n_train, data.n_val, data.ignore_index) == (24, 10, 255)
    d = data.describe()
    json.dumps(d)
    assert d["source"] == "synthetic" and d["n_train"] == 24 and d["image_size"] == 64
    assert d["seed"] == 0 and d["num_classes"] == data.num_classes


def test_num_classes_must_match() -> None:
    load_data(small_cfg(num_classes=len(CLASS_NAMES)))
    with pytest.raises(DataError, match="synthetic"):
        load_data(small_cfg(num_classes=len(CLASS_NAMES) + 1))


def test_same_seed_same_images_other_seed_other_images() -> None:
    a, b = render(8, 32, 3, "train"), render(8, 32, 3, "train")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = render(8, 32, 4, "train")
    assert not torch.equal(a[0], c[0])
    v = render(8, 32, 3, "val")
    assert not torch.equal(a[0], v[0])  # val is not a copy of train


def test_image_depends_only_on_its_index() -> None:
    few, more = render(5, 32, 1, "train"), render(70, 32, 1, "train")
    assert torch.equal(few[0], more[0][:5]) and torch.equal(few[1], more[1][:5])


def test_labels_in_range_and_every_class_present() -> None:
    x, y = render(64, 64, 0, "train")
    assert x.dtype == torch.float32 and x.shape == (64, 3, 64, 64)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < len(CLASS_NAMES)
    share = torch.bincount(y.flatten(), minlength=len(CLASS_NAMES)).float() / y.numel()
    assert (share > 0.02).all(), share  # every class has a real share of the pixels
    assert share[0] < 0.8  # background does not swamp the rest


def test_colour_does_not_give_the_class_away() -> None:
    """Object classes share one colour distribution: their mean colours are close."""
    x, y = render(64, 64, 0, "train")
    means = torch.stack([x.permute(1, 0, 2, 3)[:, y == c].mean(1)
                         for c in range(1, len(CLASS_NAMES))])
    assert (means.max(0).values - means.min(0).values).max() < 0.12


@pytest.mark.parametrize("size", [16, 24, 32, 48, 96, 128, 256])
def test_other_image_sizes(size: int) -> None:
    data = load_data(small_cfg(image_size=size, n_train=16))
    (x, y), = list(data.train_batches(16, 0, 0))
    assert x.shape == (16, 3, size, size) and y.shape == (16, size, size)
    _, labels = render(32, size, 0, "train")
    assert set(labels.unique().tolist()) == set(range(len(CLASS_NAMES)))


def test_train_batches_shapes_partial_last_and_normalised() -> None:
    data = load_data(small_cfg())
    batches = list(data.train_batches(10, epoch=0, seed=0))
    assert [len(y) for _, y in batches] == [10, 10, 4]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (10, 3, 64, 64)
    assert y.dtype == torch.int64 and y.shape == (10, 64, 64)
    assert abs(float(x.mean())) < 1.0 and 0.3 < float(x.std()) < 2.0  # ImageNet-normalised


def test_train_batches_are_a_flipped_permutation() -> None:
    data = load_data(small_cfg())
    tx, ty = data.train_x, data.train_y  # type: ignore[attr-defined]
    seen, flips = [], 0
    for x, y in data.train_batches(7, epoch=2, seed=5):
        for xi, yi in zip(x, y, strict=True):
            j = next(j for j in range(len(tx)) if torch.equal(tx[j], xi)
                     or torch.equal(tx[j].flip(-1), xi))
            flipped = not torch.equal(tx[j], xi)
            assert torch.equal(ty[j].flip(-1) if flipped else ty[j], yi)  # mask follows image
            seen.append(j)
            flips += flipped
    assert sorted(seen) == list(range(24)) and 0 < flips < 24


def test_order_deterministic_in_seed_and_epoch() -> None:
    data = load_data(small_cfg())

    def first(epoch: int, seed: int) -> torch.Tensor:
        return next(iter(data.train_batches(24, epoch, seed)))[1]

    assert torch.equal(first(0, 0), first(0, 0))
    assert not torch.equal(first(0, 0), first(1, 0))
    assert not torch.equal(first(0, 0), first(0, 1))


def test_flip_off() -> None:
    data = load_data(small_cfg(flip=False))
    y = torch.cat([y for _, y in data.train_batches(24, 0, 0)])
    ty = data.train_y  # type: ignore[attr-defined]
    assert all(any(torch.equal(a, b) for b in ty) for a in y)


def test_val_batches_fixed() -> None:
    data = load_data(small_cfg())
    a, b = list(data.val_batches(4)), list(data.val_batches(4))
    assert [len(y) for _, y in a] == [4, 4, 2]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1])
               for p, q in zip(a, b, strict=True))


def test_bad_batch_size() -> None:
    data = load_data(small_cfg())
    with pytest.raises(ValueError):
        next(data.val_batches(0))


def _marks(x: torch.Tensor) -> torch.Tensor:
    """(n,H,W) pixels of a saturated colour: only the class marks are (regions are near-grey)."""
    return (x.max(1).values - x.min(1).values) > 0.45


def test_the_class_is_written_only_in_the_mark() -> None:
    """Each image has one mark, inside its one object, in the object's class colour."""
    x, y = render(48, 48, 0, "train")
    marks = _marks(x)
    for i in range(len(x)):
        obj = y[i] > 0
        cls = set(y[i][obj].unique().tolist())
        assert len(cls) == 1, cls  # one object per image
        m = marks[i]
        assert int(m.sum()) >= 9 and bool(obj[m].all())  # the mark lies inside the object
        colour = x[i][:, m].mean(1)
        assert int(colour.argmax()) == cls.pop() - 1  # red, green, blue name classes 1, 2, 3


def test_most_object_pixels_are_far_from_the_mark() -> None:
    """At the quickstart's 48 px, about half the object pixels are more than 10 px (per axis)
    from the nearest mark pixel and over a third more than 12 px: at or beyond the edge of a
    [1,1,1] stack's view (31 px RF: 15 px each side, much less in effect), well within
    [1,3,5]'s (79 px)."""
    x, y = render(64, 48, 0, "train")
    marks = _marks(x)
    ax = torch.arange(48)
    far, far12, total = 0, 0, 0
    for i in range(len(x)):
        my, mx = torch.nonzero(marks[i], as_tuple=True)
        dy = (ax.view(-1, 1, 1) - my.view(1, 1, -1)).abs()  # (H,1,k)
        dx = (ax.view(1, -1, 1) - mx.view(1, 1, -1)).abs()  # (1,W,k)
        dist = torch.maximum(dy, dx).min(-1).values  # Chebyshev px to the nearest mark pixel
        obj = y[i] > 0
        far += int((dist[obj] > 10).sum())
        far12 += int((dist[obj] > 12).sum())
        total += int(obj.sum())
    assert far / total > 0.45 and far12 / total > 0.33, (far / total, far12 / total)
