"""Real segmentation data from a folder: plain images/+masks/, Pascal VOC or Cityscapes.

Everything is decoded into memory and checked at load time (missing masks, size mismatches,
out-of-range labels, unreadable files), so a bad file fails before any training starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nas_dil.data.base import (
    IMAGENET_MEAN,
    Batch,
    SegData,
    check_batch_size,
    mixed_rng,
    normalise,
)
from nas_dil.data.config import DataConfig
from nas_dil.data.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]
CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]
CITY_IMG_SUFFIX = "_leftImg8bit.png"
CITY_MASK_SUFFIX = "_gtFine_labelTrainIds.png"
# padding colour for crops larger than the image: the mean, i.e. zero after normalisation
_PAD_RGB = np.array([round(255 * m) for m in IMAGENET_MEAN], dtype=np.uint8)


@dataclass(frozen=True)
class Pair:
    stem: str
    image_path: Path
    mask_path: Path


@dataclass(frozen=True)
class Sample:
    stem: str
    image_path: Path
    mask_path: Path
    image: np.ndarray  # (H,W,3) uint8
    mask: np.ndarray  # (H,W) integer class indices


# --- layout detection and file pairing --------------------------------------------------------

_LAYOUT_DIRS = {
    "folder": ("images", "masks"),
    "voc": ("JPEGImages", "SegmentationClass"),
    "cityscapes": ("leftImg8bit", "gtFine"),
}


def _layouts_in(root: Path) -> list[str]:
    return [name for name, need in _LAYOUT_DIRS.items()
            if all((root / d).is_dir() for d in need)]


def detect_layout(root: Path) -> str:
    """The layout whose folders are present in root; DataError if none or several."""
    found = _layouts_in(root)
    if not found:
        # a common slip: pointing at VOCdevkit/ rather than VOCdevkit/VOC2012/
        subs = [p for p in sorted(root.iterdir()) if p.is_dir() and _layouts_in(p)]
        hint = f"; did you mean {subs[0]}?" if subs else ""
        raise DataError(f"{root}: cannot detect layout: expected images/+masks/ (folder), "
                        "JPEGImages/+SegmentationClass/ (voc) or leftImg8bit/+gtFine/ "
                        f"(cityscapes){hint}")
    if len(found) > 1:
        raise DataError(f"{root}: matches several layouts {found}; set layout explicitly")
    return found[0]


def _need_dir(path: Path, layout: str) -> None:
    if not path.is_dir():
        raise DataError(f"{path}: folder missing (layout {layout})")


def _images_by_stem(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if p.stem in out:
                raise DataError(f"{p}: two images share the stem {p.stem!r} ({out[p.stem].name})")
            out[p.stem] = p
    if not out:
        raise DataError(f"{folder}: no images found ({'/'.join(IMAGE_EXTS)})")
    return out


def _read_list(path: Path, known: dict[str, Path], what: str) -> list[str]:
    """Stems listed one a line in `path` (an extension is tolerated); each must be in known."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read split list ({e})") from e
    stems = []
    for n, line in enumerate(lines, 1):
        entry = line.strip().split()[0] if line.strip() else ""
        if not entry:
            continue
        stem = Path(entry).stem if Path(entry).suffix.lower() in IMAGE_EXTS else entry
        if stem not in known:
            raise DataError(f"{path}: line {n}: {stem!r} has no image in {what}")
        stems.append(stem)
    if not stems:
        raise DataError(f"{path}: lists no images")
    return stems


def _seeded_split(stems: list[str], cfg: DataConfig, where: Path) -> tuple[list[str], list[str]]:
    if len(stems) < 2:
        raise DataError(f"{where}: need at least 2 images to hold out a val split, "
                        f"found {len(stems)}")
    order = np.random.default_rng(cfg.seed).permutation(len(stems))
    n_val = min(len(stems) - 1, max(1, round(len(stems) * cfg.val_fraction)))
    val = sorted(stems[i] for i in order[:n_val])
    train = sorted(stems[i] for i in order[n_val:])
    return train, val


def _split(root: Path, train_txt: Path, val_txt: Path, stems: dict[str, Path], what: str,
           cfg: DataConfig) -> tuple[list[str], list[str], str]:
    """Use the split lists when present (one of them: the other gets the rest), else a seeded
    split by val_fraction."""
    if train_txt.is_file() and val_txt.is_file():
        return (_read_list(train_txt, stems, what), _read_list(val_txt, stems, what),
                "lists")
    if train_txt.is_file() or val_txt.is_file():
        given = train_txt if train_txt.is_file() else val_txt
        listed = _read_list(given, stems, what)
        rest = sorted(set(stems) - set(listed))
        if not rest:
            raise DataError(f"{given}: lists every image, nothing is left for the other split")
        return (listed, rest, "lists") if given == train_txt else (rest, listed, "lists")
    train, val = _seeded_split(sorted(stems), cfg, root)
    return train, val, "seeded"


def _folder_pairs(root: Path, cfg: DataConfig) -> tuple[list[Pair], list[Pair], str]:
    for d in ("images", "masks"):
        _need_dir(root / d, "folder")
    images = _images_by_stem(root / "images")
    samples = {}
    for stem, img in images.items():
        mask = root / "masks" / f"{stem}.png"
        if not mask.is_file():
            raise DataError(f"{img}: no mask (expected {mask})")
        samples[stem] = Pair(stem, img, mask)
    train, val, how = _split(root, root / "train.txt", root / "val.txt", images, "images/", cfg)
    return [samples[s] for s in train], [samples[s] for s in val], how


def _voc_pairs(root: Path, cfg: DataConfig) -> tuple[list[Pair], list[Pair], str]:
    for d in ("JPEGImages", "SegmentationClass"):
        _need_dir(root / d, "voc")
    # only images with a class mask take part (JPEGImages also holds detection-only images)
    masks = {p.stem: p for p in sorted((root / "SegmentationClass").glob("*.png"))}
    if not masks:
        raise DataError(f"{root / 'SegmentationClass'}: no masks found (*.png)")
    images = _images_by_stem(root / "JPEGImages")
    sets = root / "ImageSets" / "Segmentation"
    train, val, how = _split(root, sets / "train.txt", sets / "val.txt", masks,
                             "SegmentationClass/", cfg)
    out = []
    for split in (train, val):
        part = []
        for stem in split:
            if stem not in images:
                raise DataError(f"{masks[stem]}: no image {stem}.jpg in {root / 'JPEGImages'}")
            part.append(Pair(stem, images[stem], masks[stem]))
        out.append(part)
    return out[0], out[1], how


def _cityscapes_split(root: Path, split: str) -> list[Pair]:
    img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    _need_dir(img_dir, "cityscapes")
    _need_dir(gt_dir, "cityscapes")
    samples = []
    for img in sorted(img_dir.glob(f"*/*{CITY_IMG_SUFFIX}")):
        stem = img.name[: -len(CITY_IMG_SUFFIX)]
        mask = gt_dir / img.parent.name / f"{stem}{CITY_MASK_SUFFIX}"
        if not mask.is_file():
            hint = ""
            if (mask.parent / f"{stem}_gtFine_labelIds.png").is_file():
                hint = "; only labelIds found: run cityscapesscripts createTrainIdLabelImgs"
            raise DataError(f"{img}: no mask (expected {mask}){hint}")
        samples.append(Pair(stem, img, mask))
    if not samples:
        raise DataError(f"{img_dir}: no images found (<city>/*{CITY_IMG_SUFFIX})")
    return samples


def _cityscapes_pairs(root: Path, cfg: DataConfig) -> tuple[list[Pair], list[Pair], str]:
    return _cityscapes_split(root, "train"), _cityscapes_split(root, "val"), "lists"


# --- decoding and checking ----------------------------------------------------------------------

def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncated files fail here, not mid-training
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e


def _read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L"):
                arr = np.asarray(im, dtype=np.uint8)  # palette PNG: the indices, not the RGB
            elif mode == "1":
                arr = np.asarray(im, dtype=np.uint8)
            elif mode.startswith("I"):
                arr = np.asarray(im).astype(np.int32)
            else:
                raise DataError(f"{path}: mask is {mode}; expected one channel of class "
                                "indices (palette or grayscale PNG)")
            return arr.copy()
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read mask ({type(e).__name__}: {e})") from e


def _load(pairs: list[Pair]) -> list[Sample]:
    out = []
    for p in pairs:
        image, mask = _read_image(p.image_path), _read_mask(p.mask_path)
        (h, w), (mh, mw) = image.shape[:2], mask.shape
        if (h, w) != (mh, mw):
            raise DataError(f"{p.image_path} is {w}x{h} but {p.mask_path} is {mw}x{mh}")
        out.append(Sample(p.stem, p.image_path, p.mask_path, image, mask))
    return out


def _check_labels(samples: list[Sample], num_classes: int, ignore_index: int) -> None:
    for s in samples:
        values = np.unique(s.mask)
        bad = values[((values >= num_classes) | (values < 0)) & (values != ignore_index)]
        if bad.size:
            v = int(bad[0]) if bad[0] < 0 else int(bad[-1])
            rel = "< 0" if v < 0 else f">= num_classes {num_classes}"
            raise DataError(f"{s.mask_path}: label {v} {rel} (ignore_index {ignore_index})")


def _max_label(samples: list[Sample], ignore_index: int) -> int:
    top = -1
    for s in samples:
        values = np.unique(s.mask)
        values = values[values != ignore_index]
        if values.size:
            top = max(top, int(values.max()))
    return top


def _class_names_file(root: Path) -> list[str] | None:
    path = root / "classes.txt"
    if not path.is_file():
        return None
    try:
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class names ({e})") from e
    if len(names) < 2:
        raise DataError(f"{path}: needs at least 2 class names, found {len(names)}")
    return names


# --- the data set -------------------------------------------------------------------------------

class FolderData(SegData):
    """A real data set held in memory as uint8 arrays; batches are built on the fly."""

    def __init__(self, cfg: DataConfig, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.root = Path(cfg.source).expanduser()
        if not self.root.exists():
            raise DataError(f"{self.root}: data folder not found")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: not a folder")
        self.layout = detect_layout(self.root) if cfg.layout == "auto" else cfg.layout
        reader = {"folder": _folder_pairs, "voc": _voc_pairs,
                  "cityscapes": _cityscapes_pairs}[self.layout]
        train, val, self.split_from = reader(self.root, cfg)
        self.train, self.val = _load(train), _load(val)
        everything = self.train + self.val
        self.ignore_index = cfg.ignore_index
        self.num_classes, self.class_names = self._classes(everything)
        if self.num_classes < 2:
            raise DataError(f"{self.root}: masks hold only label 0; need at least 2 classes")
        if 0 <= self.ignore_index < self.num_classes:
            raise DataError(f"{self.root}: ignore_index {self.ignore_index} is a real class "
                            f"(num_classes {self.num_classes})")
        _check_labels(everything, self.num_classes, self.ignore_index)
        self.n_train, self.n_val = len(self.train), len(self.val)

    def _classes(self, samples: list[Sample]) -> tuple[int, list[str]]:
        known = {"voc": VOC_CLASSES, "cityscapes": CITYSCAPES_CLASSES}.get(self.layout)
        names = known if known is not None else _class_names_file(self.root)
        if self.cfg.num_classes is not None:
            n = self.cfg.num_classes
            if names is not None and len(names) != n and self.layout == "folder":
                raise DataError(f"{self.root / 'classes.txt'}: names {len(names)} classes "
                                f"but num_classes is {n}")
        elif names is not None:
            n = len(names)
        else:
            n = _max_label(samples, self.cfg.ignore_index) + 1
        if names is None or len(names) != n:
            names = [f"class_{i}" for i in range(n)]
        return n, list(names)

    # --- batches --------------------------------------------------------------------------
    def _to_device(self, images: np.ndarray, masks: np.ndarray) -> Batch:
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        y = torch.from_numpy(masks).to(self.device).long()
        return normalise(x).contiguous(), y

    def _crop(self, s: Sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random image_size crop; where the image is smaller, pad (mean colour, ignore)."""
        size = self.cfg.image_size
        h, w = s.mask.shape
        # a negative offset places the image inside a larger, padded window
        y0 = int(rng.integers(min(0, h - size), max(0, h - size) + 1))
        x0 = int(rng.integers(min(0, w - size), max(0, w - size) + 1))
        img = np.empty((size, size, 3), np.uint8)
        img[:] = _PAD_RGB
        mask = np.full((size, size), self.ignore_index, np.int64)
        sy, sx = max(y0, 0), max(x0, 0)
        ey, ex = min(y0 + size, h), min(x0 + size, w)
        img[sy - y0:ey - y0, sx - x0:ex - x0] = s.image[sy:ey, sx:ex]
        mask[sy - y0:ey - y0, sx - x0:ex - x0] = s.mask[sy:ey, sx:ex]
        if self.cfg.flip and rng.random() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
        return img, mask

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        rng = mixed_rng(seed, epoch, 11)
        order = rng.permutation(self.n_train)
        for start in range(0, self.n_train, batch_size):
            crops = [self._crop(self.train[i], rng) for i in order[start:start + batch_size]]
            yield self._to_device(np.stack([c[0] for c in crops]),
                                  np.stack([c[1] for c in crops]))

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        # images of equal size go together, in order of first appearance; others alone
        groups: dict[tuple[int, int], list[Sample]] = {}
        for s in self.val:
            groups.setdefault(s.mask.shape, []).append(s)
        for group in groups.values():
            for start in range(0, len(group), batch_size):
                part = group[start:start + batch_size]
                yield self._to_device(np.stack([s.image for s in part]),
                                      np.stack([s.mask for s in part]))

    def describe(self) -> dict:
        return {
            "source": str(self.root), "layout": self.layout, "n_train": self.n_train,
            "n_val": self.n_val, "num_classes": self.num_classes,
            "class_names": list(self.class_names), "ignore_index": self.ignore_index,
            "image_size": self.cfg.image_size, "seed": self.cfg.seed,
            "split": self.split_from, "val_fraction": self.cfg.val_fraction,
        }
