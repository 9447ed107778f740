"""Builders for tiny on-disk data sets in each layout (a few 16-40 px PNGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, arr: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path, format=fmt)


def write_mask(path: Path, mask: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(mask.astype(np.uint8), mode="L")
    if palette:
        im = im.convert("P")
        # VOC-like palette: index i is drawn in a colour unrelated to i
        pal = np.zeros((256, 3), np.uint8)
        pal[:, 0] = (np.arange(256) * 37) % 256
        pal[:, 1] = (np.arange(256) * 91 + 13) % 256
        pal[:, 2] = (np.arange(256) * 53 + 101) % 256
        im.putpalette(pal.flatten().tolist())
    im.save(path)


def coded_pair(rng: np.random.Generator, h: int, w: int, num_classes: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """A mask and an image whose red channel encodes the label (so alignment is checkable)."""
    mask = rng.integers(0, num_classes, (h, w)).astype(np.uint8)
    img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    img[..., 0] = mask * 40
    return img, mask


def make_folder(root: Path, n: int = 6, sizes: list[tuple[int, int]] | None = None,
                num_classes: int = 3, seed: int = 0) -> Path:
    """images/NNNN.png + masks/NNNN.png; sizes is a list of (h, w), cycled."""
    rng = np.random.default_rng(seed)
    sizes = sizes or [(24, 32)]
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        img, mask = coded_pair(rng, h, w, num_classes)
        mask[0, 0] = num_classes - 1  # every mask holds the top label: max+1 is stable
        img[0, 0, 0] = mask[0, 0] * 40
        write_image(root / "images" / f"{i:04d}.png", img)
        write_mask(root / "masks" / f"{i:04d}.png", mask)
    return root


def make_voc(root: Path, train: int = 4, val: int = 2) -> Path:
    rng = np.random.default_rng(1)
    stems = [f"2007_{i:06d}" for i in range(train + val)]
    for i, stem in enumerate(stems):
        h, w = (30, 40) if i % 2 else (32, 36)
        img, mask = coded_pair(rng, h, w, 21)
        mask[:, 0] = 255  # VOC marks object borders 255 (ignore)
        write_image(root / "JPEGImages" / f"{stem}.jpg", img, "JPEG")
        write_mask(root / "SegmentationClass" / f"{stem}.png", mask, palette=True)
    # a detection-only image without a mask must not take part
    write_image(root / "JPEGImages" / "2008_999999.jpg", np.zeros((20, 20, 3)), "JPEG")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(stems[:train]) + "\n")
    (sets / "val.txt").write_text("\n".join(stems[train:]) + "\n")
    return root


def make_cityscapes(root: Path) -> Path:
    rng = np.random.default_rng(2)
    for split, cities in (("train", ["aachen", "bonn"]), ("val", ["frankfurt"])):
        for city in cities:
            for j in range(2):
                stem = f"{city}_{j:06d}_000019"
                img, mask = coded_pair(rng, 16, 32, 19)
                mask[-1] = 255
                write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", img)
                write_mask(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png",
                           mask)
    return root
