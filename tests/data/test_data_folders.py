"""Real-data loading: plain folder, VOC and Cityscapes layouts, batches and bad-data errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas_dil.data import DataConfig, DataError, SegData, load_data
from nas_dil.data.base import IMAGENET_MEAN, IMAGENET_STD

from ._builders import make_cityscapes, make_folder, make_voc, write_image, write_mask


def cfg_for(root: Path, **kw) -> DataConfig:
    return DataConfig(source=str(root), **kw)


def pixels(item: object) -> np.ndarray:
    """An item's image, decoded here from its file (the data set keeps no pixels)."""
    return np.array(Image.open(item.image_path).convert("RGB"))  # type: ignore[attr-defined]


def labels(item: object) -> np.ndarray:
    return np.array(Image.open(item.mask_path))  # type: ignore[attr-defined]


def load_every_batch(data: SegData) -> None:
    """Labels and pixels are checked as batches load: pull every one."""
    list(data.train_batches(4, 0, 0))
    list(data.val_batches(4))


def red_code(x: torch.Tensor) -> torch.Tensor:
    """Undo normalisation of the red channel and recover the label it encodes (label*40)."""
    red = x[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return torch.round(red * 255 / 40).long()


# --- config -----------------------------------------------------------------------------------

def test_config_round_trips_through_json() -> None:
    cfg = DataConfig(source="/x", layout="voc", image_size=96, num_classes=21, seed=3)
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert DataConfig(**d) == cfg
    assert DataConfig(**dataclasses.asdict(DataConfig())) == DataConfig()


@pytest.mark.parametrize("kw, text", [
    ({"layout": "coco"}, "unknown layout"),
    ({"image_size": 4}, "image_size"),
    ({"num_classes": 1}, "num_classes"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"num_classes": 5, "ignore_index": 3}, "ignore_index"),
])
def test_bad_config_is_rejected(folder_root: Path, kw: dict, text: str) -> None:
    with pytest.raises(DataError, match=text):
        load_data(cfg_for(folder_root, **kw))


# --- plain folder ----------------------------------------------------------------------------

def test_folder_loads_with_seeded_split(folder_root: Path) -> None:
    data = load_data(cfg_for(folder_root, image_size=16, val_fraction=0.3))
    assert isinstance(data, SegData)
    assert (data.n_train, data.n_val) == (7, 3)
    assert data.num_classes == 3  # max label + 1
    assert data.class_names == ["class_0", "class_1", "class_2"]
    d = data.describe()
    json.dumps(d)
    assert d["layout"] == "folder" and d["n_train"] == 7 and d["num_classes"] == 3
    assert d["source"] == str(folder_root) and d["image_size"] == 16 and d["seed"] == 0


def _split(data: SegData) -> tuple[list[str], list[str]]:
    return [s.stem for s in data.train], [s.stem for s in data.val]  # type: ignore[attr-defined]


def test_seeded_split_is_deterministic_and_disjoint(folder_root: Path) -> None:
    a = _split(load_data(cfg_for(folder_root, seed=1)))
    assert a == _split(load_data(cfg_for(folder_root, seed=1)))
    assert not set(a[0]) & set(a[1]) and len(a[0]) + len(a[1]) == 10
    others = {tuple(_split(load_data(cfg_for(folder_root, seed=s)))[1]) for s in range(2, 6)}
    assert len(others | {tuple(a[1])}) > 1  # the seed does change the split


def test_split_lists_are_used(folder_root: Path) -> None:
    (folder_root / "train.txt").write_text("0000\n0001.png\n\n0002\n")
    (folder_root / "val.txt").write_text("0003\n")
    data = load_data(cfg_for(folder_root))
    assert _split(data) == (["0000", "0001", "0002"], ["0003"])
    (folder_root / "val.txt").unlink()
    data = load_data(cfg_for(folder_root))  # only train.txt: val is the rest
    assert _split(data)[1] == [f"{i:04d}" for i in range(3, 10)]


def test_num_classes_given_and_classes_txt(folder_root: Path) -> None:
    assert load_data(cfg_for(folder_root, num_classes=6)).num_classes == 6
    (folder_root / "classes.txt").write_text("sky\nroad\ncar\nbike\n")
    data = load_data(cfg_for(folder_root))
    assert data.num_classes == 4 and data.class_names == ["sky", "road", "car", "bike"]
    with pytest.raises(DataError, match=r"classes\.txt"):
        load_data(cfg_for(folder_root, num_classes=5))


def test_train_batches_shapes_dtypes_and_partial_last(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=6)
    data = load_data(cfg_for(root, image_size=16, val_fraction=0.2))  # 5 train
    batches = list(data.train_batches(2, epoch=0, seed=0))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (2, 3, 16, 16)
    assert y.dtype == torch.int64 and y.shape == (2, 16, 16)
    assert x.device.type == "cpu" and y.device.type == "cpu"
    for x, y in batches:  # crops and flips keep image and mask aligned
        assert torch.equal(red_code(x), y)


def _first_pixels(data: SegData, epoch: int, seed: int) -> list[torch.Tensor]:
    return [x for x, _ in data.train_batches(3, epoch, seed)]


def test_train_order_deterministic_in_seed_and_epoch(folder_root: Path) -> None:
    data = load_data(cfg_for(folder_root, image_size=20))
    a, b = _first_pixels(data, 0, 7), _first_pixels(data, 0, 7)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    c = _first_pixels(data, 1, 7)
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    d = _first_pixels(data, 0, 8)
    assert not all(torch.equal(p, q) for p, q in zip(a, d, strict=True))


def test_epoch_changes_order_without_augmentation(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=8, sizes=[(16, 16)])
    data = load_data(cfg_for(root, image_size=16, flip=False, val_fraction=0.25))

    def order(epoch: int) -> list[int]:
        x = torch.cat([x for x, _ in data.train_batches(4, epoch, 0)])
        # no crop (same size) and no flip: each sample is one whole training image
        originals = [torch.from_numpy(pixels(s)) for s in data.train]  # type: ignore[attr-defined]
        raw = (x.permute(0, 2, 3, 1) * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN))
        raw = torch.round(raw * 255).to(torch.uint8)
        return [next(i for i, o in enumerate(originals) if torch.equal(o, r)) for r in raw]

    o0, o1 = order(0), order(1)
    assert sorted(o0) == sorted(o1) == list(range(6))
    assert o0 != o1 and o0 == order(0)


def test_small_images_are_padded_with_ignore(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=4, sizes=[(16, 20)])
    data = load_data(cfg_for(root, image_size=32, val_fraction=0.25))
    for x, y in data.train_batches(4, 0, 0):
        assert y.shape == (3, 32, 32)
        for i in range(len(y)):
            assert int((y[i] != 255).sum()) == 16 * 20  # whole image kept, rest ignored
            assert x[i][:, y[i] == 255].abs().max() < 0.03  # padding is the mean colour


def test_large_images_are_cropped_windows(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=3, sizes=[(30, 40)])
    data = load_data(cfg_for(root, image_size=16, flip=False, val_fraction=0.34))
    full = [torch.from_numpy(labels(s)).long() for s in data.train]  # type: ignore[attr-defined]
    offsets = set()
    for epoch in range(4):
        for _, y in data.train_batches(8, epoch, 0):
            for m in y:
                hits = [(i, r, c) for i, f in enumerate(full) for r in range(15)
                        for c in range(25) if torch.equal(f[r:r + 16, c:c + 16], m)]
                assert hits, "crop is not a window of a training mask"
                offsets.add(hits[0][1:])
    assert len(offsets) > 1  # the crop position is random


def test_flip_happens_and_can_be_off(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=2, sizes=[(16, 16)])

    def flipped_count(flip: bool) -> int:
        data = load_data(cfg_for(root, image_size=16, flip=flip, val_fraction=0.5))
        m = torch.from_numpy(labels(data.train[0])).long()  # type: ignore[attr-defined]
        n = 0
        for epoch in range(12):
            (_, y), = data.train_batches(4, epoch, 0)
            assert torch.equal(y[0], m) or torch.equal(y[0], m.flip(-1))
            n += int(not torch.equal(y[0], m))
        return n

    assert 0 < flipped_count(True) < 12
    assert flipped_count(False) == 0


def test_val_batches_full_size_fixed_order_grouped(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=10, sizes=[(24, 32), (20, 20)])
    (root / "train.txt").write_text("0000\n0001\n")
    (root / "val.txt").write_text("\n".join(f"{i:04d}" for i in range(2, 10)))
    data = load_data(cfg_for(root, image_size=16))
    batches = list(data.val_batches(3))
    shapes = [tuple(y.shape) for _, y in batches]
    assert shapes == [(3, 24, 32), (1, 24, 32), (3, 20, 20), (1, 20, 20)]
    again = list(data.val_batches(3))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(batches, again, strict=True))
    for x, y in batches:
        assert torch.equal(red_code(x), y)  # no augmentation, still aligned
    assert [len(y) for _, y in data.val_batches(1)] == [1] * 8


def test_ignore_label_is_allowed_and_kept(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=4)
    m = np.array(Image.open(root / "masks" / "0001.png"))
    m[:5] = 255
    write_mask(root / "masks" / "0001.png", m)
    data = load_data(cfg_for(root, val_fraction=0.5))
    assert data.num_classes == 3  # the ignore label does not count as a class
    ys = torch.cat([y.flatten() for _, y in data.val_batches(1)]
                   + [y.flatten() for _, y in data.train_batches(1, 0, 0)])
    assert set(ys.unique().tolist()) <= {0, 1, 2, 255}


# --- VOC and Cityscapes -------------------------------------------------------------------------

def test_voc_reads_palette_indices(voc_root: Path) -> None:
    data = load_data(cfg_for(voc_root, image_size=24))
    assert data.describe()["layout"] == "voc"
    assert (data.n_train, data.n_val) == (4, 2)
    assert data.num_classes == 21 and data.class_names[15] == "person"
    for _, y in data.val_batches(4):
        vals = set(y.unique().tolist())
        assert vals <= set(range(21)) | {255} and 255 in vals
    first_val = data.val[0].mask_path  # type: ignore[attr-defined]
    raw = np.array(Image.open(first_val))
    _, y = next(iter(data.val_batches(1)))
    assert np.array_equal(y[0].numpy(), raw) and raw.max() == 255


def test_voc_without_lists_splits_masked_images(voc_root: Path) -> None:
    for f in (voc_root / "ImageSets" / "Segmentation").iterdir():
        f.unlink()
    data = load_data(cfg_for(voc_root, layout="voc", val_fraction=0.5))
    assert data.n_train + data.n_val == 6  # the detection-only image is not used


def test_cityscapes_layout(city_root: Path) -> None:
    data = load_data(cfg_for(city_root, image_size=16))
    d = data.describe()
    assert d["layout"] == "cityscapes" and (d["n_train"], d["n_val"]) == (4, 2)
    assert data.num_classes == 19 and data.class_names[0] == "road"
    (x, y), = data.val_batches(8)
    assert x.shape == (2, 3, 16, 32) and 255 in y.unique().tolist()


def test_cityscapes_label_ids_only_gets_a_hint(city_root: Path) -> None:
    m = next((city_root / "gtFine" / "val").glob("*/*_labelTrainIds.png"))
    m.rename(m.with_name(m.name.replace("labelTrainIds", "labelIds")))
    with pytest.raises(DataError, match="createTrainIdLabelImgs"):
        load_data(cfg_for(city_root))


def test_layout_detection_hints_at_a_nested_data_set(tmp_path: Path) -> None:
    make_voc(tmp_path / "VOCdevkit" / "VOC2012")
    with pytest.raises(DataError, match=r"VOCdevkit: cannot detect layout.*did you mean "
                                        r".*VOC2012\?"):
        load_data(cfg_for(tmp_path / "VOCdevkit"))
    make_folder(tmp_path / "both", n=2)
    make_cityscapes(tmp_path / "both")
    with pytest.raises(DataError, match="several layouts"):
        load_data(cfg_for(tmp_path / "both"))
    assert load_data(cfg_for(tmp_path / "both", layout="folder")).describe()["layout"] == "folder"


def test_explicit_layout_checks_its_folders(folder_root: Path) -> None:
    with pytest.raises(DataError, match="JPEGImages: folder missing"):
        load_data(cfg_for(folder_root, layout="voc"))
    with pytest.raises(DataError, match="leftImg8bit"):
        load_data(cfg_for(folder_root, layout="cityscapes"))


# --- bad data: every error names the file ----------------------------------------------------

def test_missing_mask(folder_root: Path) -> None:
    (folder_root / "masks" / "0004.png").unlink()
    with pytest.raises(DataError, match=r"images/0004\.png: no mask"):
        load_data(cfg_for(folder_root))


def test_size_mismatch(folder_root: Path) -> None:
    write_mask(folder_root / "masks" / "0002.png", np.zeros((24, 30)))
    with pytest.raises(DataError, match=r"images/0002\.png is 32x24 but .*masks/0002\.png "
                                        r"is 30x24"):
        load_data(cfg_for(folder_root))


def test_label_out_of_range(folder_root: Path) -> None:
    m = np.zeros((24, 32))
    m[3, 3] = 7
    write_mask(folder_root / "masks" / "0003.png", m)
    data = load_data(cfg_for(folder_root, num_classes=5))  # headers only: loads
    with pytest.raises(DataError, match=r"masks/0003\.png: label 7 >= num_classes 5 "
                                        r"\(ignore_index 255\)"):
        load_every_batch(data)  # the batch holding the file fails, naming it
    with pytest.raises(DataError, match=r"masks/0003\.png: label 7 >= num_classes 3"):
        load_every_batch(load_data(cfg_for(folder_root, num_classes=3, ignore_index=250)))


def test_unreadable_image_and_mask(folder_root: Path) -> None:
    (folder_root / "images" / "0005.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"images/0005\.png: cannot read image"):
        load_data(cfg_for(folder_root))
    write_image(folder_root / "images" / "0005.png", np.zeros((24, 32, 3)))
    full = (folder_root / "masks" / "0006.png").read_bytes()
    (folder_root / "masks" / "0006.png").write_bytes(full[: len(full) // 2])  # truncated
    data = load_data(cfg_for(folder_root, num_classes=3))  # its header is intact
    with pytest.raises(DataError, match=r"masks/0006\.png: cannot read mask"):
        load_every_batch(data)


def test_rgb_mask_is_rejected(folder_root: Path) -> None:
    write_image(folder_root / "masks" / "0001.png", np.zeros((24, 32, 3)))
    with pytest.raises(DataError, match=r"masks/0001\.png: mask is RGB"):
        load_data(cfg_for(folder_root))


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    with pytest.raises(DataError, match=r"/e/images: no images found"):
        load_data(cfg_for(tmp_path / "e"))
    with pytest.raises(DataError, match=r"/nope: data folder not found"):
        load_data(cfg_for(tmp_path / "nope"))
    (tmp_path / "odd").mkdir()
    with pytest.raises(DataError, match=r"/odd: cannot detect layout"):
        load_data(cfg_for(tmp_path / "odd"))
    make_folder(tmp_path / "half", n=2)
    for f in (tmp_path / "half" / "masks").iterdir():
        f.unlink()
    (tmp_path / "half" / "masks").rmdir()
    with pytest.raises(DataError, match=r"/half/masks: folder missing"):
        load_data(cfg_for(tmp_path / "half", layout="folder"))


def test_bad_split_lists(folder_root: Path) -> None:
    (folder_root / "train.txt").write_text("0000\nghost\n")
    with pytest.raises(DataError, match=r"train\.txt: line 2: 'ghost' has no image"):
        load_data(cfg_for(folder_root))
    (folder_root / "train.txt").write_text("\n")
    with pytest.raises(DataError, match=r"train\.txt: lists no images"):
        load_data(cfg_for(folder_root))


def test_single_image_cannot_be_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "one", n=1)
    with pytest.raises(DataError, match="at least 2 images"):
        load_data(cfg_for(root))


def test_voc_listed_stem_without_mask(voc_root: Path) -> None:
    lst = voc_root / "ImageSets" / "Segmentation" / "val.txt"
    lst.write_text(lst.read_text() + "2008_999999\n")  # has a JPEG but no mask
    with pytest.raises(DataError, match=r"val\.txt: line 3: '2008_999999' has no image in "
                                        "SegmentationClass"):
        load_data(cfg_for(voc_root))


def test_errors_are_one_line(folder_root: Path) -> None:
    (folder_root / "images" / "0005.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError) as e:
        load_data(cfg_for(folder_root))
    assert "\n" not in str(e.value) and "0005.png" in str(e.value)
