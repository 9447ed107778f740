"""Real segmentation data from a folder: plain images/+masks/, Pascal VOC or Cityscapes.

At load, only what file headers tell is checked, for every file: pairing, equal image/mask
sizes, mask modes. Pixels are decoded lazily, batch by batch, in DataLoader workers
(`nas_dil.data.loader`); a label that is neither a class nor ignore_index fails the batch
that loads it, naming the file. `nas-dil data check DIR` decodes everything up front.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from nas_dil.data.base import Batch, SegData, check_batch_size, mixed_rng, normalise
from nas_dil.data.check import (
    LabelScan,
    cached_scan,
    check_ignore_index,
    header_check,
    infer_classes,
    scan_labels,
)
from nas_dil.data.config import DataConfig
from nas_dil.data.errors import DataError
from nas_dil.data.loader import Augment, Item, Loader, SegDataset, val_shape

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
Pair = Item  # (stem, image_path, mask_path): what a split lists


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
           cfg: DataConfig, eval_only: bool = False) -> tuple[list[str], list[str], str]:
    """Use the split lists when present (one of them: the other gets the rest), else a seeded
    split by val_fraction. ``eval_only``: a val list may name every image (nothing trains)."""
    if train_txt.is_file() and val_txt.is_file():
        return (_read_list(train_txt, stems, what), _read_list(val_txt, stems, what),
                "lists")
    if train_txt.is_file() or val_txt.is_file():
        given = train_txt if train_txt.is_file() else val_txt
        listed = _read_list(given, stems, what)
        rest = sorted(set(stems) - set(listed))
        if not rest and eval_only and given == val_txt:
            return [], listed, "lists"
        if not rest:
            raise DataError(f"{given}: lists every image, nothing is left for the other split")
        return (listed, rest, "lists") if given == train_txt else (rest, listed, "lists")
    train, val = _seeded_split(sorted(stems), cfg, root)
    return train, val, "seeded"


def _folder_pairs(root: Path, cfg: DataConfig, eval_only: bool
                  ) -> tuple[list[Pair], list[Pair], str]:
    for d in ("images", "masks"):
        _need_dir(root / d, "folder")
    images = _images_by_stem(root / "images")
    samples = {}
    for stem, img in images.items():
        mask = root / "masks" / f"{stem}.png"
        if not mask.is_file():
            raise DataError(f"{img}: no mask (expected {mask})")
        samples[stem] = Pair(stem, img, mask)
    train, val, how = _split(root, root / "train.txt", root / "val.txt", images, "images/", cfg,
                             eval_only)
    return [samples[s] for s in train], [samples[s] for s in val], how


def _voc_pairs(root: Path, cfg: DataConfig, eval_only: bool
               ) -> tuple[list[Pair], list[Pair], str]:
    for d in ("JPEGImages", "SegmentationClass"):
        _need_dir(root / d, "voc")
    # only images with a class mask take part (JPEGImages also holds detection-only images)
    masks = {p.stem: p for p in sorted((root / "SegmentationClass").glob("*.png"))}
    if not masks:
        raise DataError(f"{root / 'SegmentationClass'}: no masks found (*.png)")
    images = _images_by_stem(root / "JPEGImages")
    sets = root / "ImageSets" / "Segmentation"
    train, val, how = _split(root, sets / "train.txt", sets / "val.txt", masks,
                             "SegmentationClass/", cfg, eval_only)
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


def _cityscapes_pairs(root: Path, cfg: DataConfig, eval_only: bool
                      ) -> tuple[list[Pair], list[Pair], str]:
    if eval_only and not (root / "leftImg8bit" / "train").is_dir():
        return [], _cityscapes_split(root, "val"), "lists"  # a val-only copy is enough
    return _cityscapes_split(root, "train"), _cityscapes_split(root, "val"), "lists"



def class_names_file(root: Path) -> list[str] | None:
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


def layout_classes(layout: str) -> list[str] | None:
    """The class names a layout defines (None: the folder layout, which has no default)."""
    return {"voc": VOC_CLASSES, "cityscapes": CITYSCAPES_CLASSES}.get(layout)


def fewer_classes_note(scan: LabelScan, layout: str, ignore_index: int) -> str | None:
    """A note when a VOC/Cityscapes copy's masks hold fewer classes than the layout's."""
    names = layout_classes(layout)
    labels = scan.labels(ignore_index)
    if names is None or not labels or len(labels) >= len(names):
        return None
    missing = [names[i] for i in range(len(names)) if i not in set(labels)]
    return (f"masks hold {len(labels)} of the {len(names)} {layout} classes (labels "
            f"{labels[0]}..{labels[-1]}; absent: {', '.join(missing[:6])}"
            f"{' …' if len(missing) > 6 else ''}); set num_classes if that is meant")


# --- the data set -------------------------------------------------------------------------------

SPLITS = ("train", "val", "all")  # train: both splits; val / all: evaluation only


def locate(cfg: DataConfig, split: str = "train"
           ) -> tuple[Path, str, list[Pair], list[Pair], str]:
    """(root, layout, train pairs, val pairs, where the split came from); nothing decoded."""
    if split not in SPLITS:
        raise DataError(f"split {split!r}: expected one of {SPLITS}")
    root = Path(cfg.source).expanduser()
    if not root.exists():
        raise DataError(f"{root}: data folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    layout = detect_layout(root) if cfg.layout == "auto" else cfg.layout
    reader = {"folder": _folder_pairs, "voc": _voc_pairs,
              "cityscapes": _cityscapes_pairs}[layout]
    train, val, split_from = reader(root, cfg, split != "train")
    if split == "all":
        train, val = [], sorted(train + val, key=lambda p: p.stem)
    if not val:
        raise DataError(f"{root}: the {split} split holds no images")
    return root, layout, train, val, split_from


class FolderData(SegData):
    """A real data set decoded lazily, batch by batch, through `nas_dil.data.loader`.

    ``split``: "train" (the train and val splits, for training), "val" (the val split only;
    a val list may name every image) or "all" (every image as val), the last two for
    `nas-dil eval`.
    """

    loads_lazily = True

    def __init__(self, cfg: DataConfig, device: str | torch.device = "cpu",
                 split: str = "train") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.root, self.layout, train, val, self.split_from = locate(cfg, split)
        everything = train + val
        self.sizes = header_check(everything)  # (h, w) per stem, from headers only
        self.ignore_index = cfg.ignore_index
        self.notes: list[str] = []
        self.num_classes, self.class_names, self.classes_from = self._classes(everything)
        check_ignore_index(self.num_classes, self.ignore_index, self.root)
        if cfg.val_subset is not None and cfg.val_subset < len(val):
            pick = np.random.default_rng([cfg.seed, 17]).choice(len(val), cfg.val_subset,
                                                                replace=False)
            val = [val[i] for i in sorted(pick)]
        self.train, self.val = train, val
        self.n_train, self.n_val = len(train), len(val)
        aug = Augment(cfg.crop_hw, cfg.flip, (cfg.scale_min, cfg.scale_max), cfg.val_size)
        self.cache_info: dict[str, object] | None = None
        cache = None
        if cfg.cache:
            from nas_dil.data.cache import open_cache

            cache = open_cache(cfg, self.train, self.val, self.num_classes, self.ignore_index)
            self.cache_info = cache.describe()
        self.dataset = SegDataset(train, val, aug, self.num_classes, self.ignore_index, cache)
        self.workers = cfg.workers if cfg.workers is not None else 0
        self.pin_memory = False
        self.max_batch_pixels: int | None = None
        self._loader: dict[str, Loader] = {}

    def _classes(self, pairs: list[Pair]) -> tuple[int, list[str], str]:
        known = layout_classes(self.layout)
        names = known if known is not None else class_names_file(self.root)
        source = f"{self.layout} layout" if known is not None else "classes.txt"
        if self.cfg.num_classes is not None:
            n = self.cfg.num_classes
            source = "num_classes"
            if names is not None and len(names) != n and self.layout == "folder":
                raise DataError(f"{self.root / 'classes.txt'}: names {len(names)} classes "
                                f"but num_classes is {n}")
        elif names is not None:
            n = len(names)
        else:
            # no class list: the masks say how many (one scan, cached by file sizes/mtimes)
            scan = scan_labels(pairs)
            n = infer_classes(scan, self.ignore_index, self.root)
            source = f"masks (labels 0..{n - 1}; no classes.txt or num_classes)"
        if known is not None:
            scan_hit = cached_scan(pairs)  # only if `nas-dil data check` has scanned them
            note = fewer_classes_note(scan_hit, self.layout, self.ignore_index) if scan_hit \
                else None
            if note:
                self.notes.append(note)
        if names is None or len(names) != n:
            names = [f"class_{i}" for i in range(n)]
        return n, list(names), source

    def label_counts(self) -> np.ndarray:
        """Pixels per class over the training masks at full size, from one scan of them
        (cached by the files' stats, like `nas-dil data check`'s)."""
        pixels = scan_labels(self.train).pixels
        return np.array([pixels.get(c, 0) for c in range(self.num_classes)], dtype=np.int64)

    # --- loading --------------------------------------------------------------------------
    def configure(self, workers: int | None = None, pin_memory: bool | None = None,
                  max_batch_pixels: int | None = None) -> None:
        """Worker processes (the trial's CPUs), pinned memory (CUDA) and the val pixel cap."""
        if workers is not None and self.cfg.workers is None and workers != self.workers:
            self.close()
            self.workers = workers
        if pin_memory is not None and pin_memory != self.pin_memory:
            self.close()
            self.pin_memory = pin_memory
        if max_batch_pixels is not None:
            self.max_batch_pixels = max_batch_pixels

    def _run(self, which: str, batches: list[list[tuple]]) -> Iterator[Batch]:
        # one loader per split: an evaluation inside a training epoch must not reset the
        # training iterator
        if which not in self._loader:
            self._loader[which] = Loader(self.dataset, self.workers, self.pin_memory)
        for images, masks in self._loader[which].run(batches):
            yield self._to_device(images, masks)

    def _to_device(self, images: torch.Tensor, masks: torch.Tensor) -> Batch:
        nb = self.pin_memory and self.device.type == "cuda"
        x = images.to(self.device, non_blocking=nb).permute(0, 3, 1, 2).float().div_(255)
        y = masks.to(self.device, non_blocking=nb).long()
        return normalise(x).contiguous(), y

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        if not self.n_train:
            return
        order = mixed_rng(seed, epoch, 11).permutation(self.n_train).tolist()
        keys = [("t", i, seed, epoch) for i in order]
        yield from self._run("t", [keys[s:s + batch_size]
                                   for s in range(0, len(keys), batch_size)])

    def val_shapes(self) -> list[tuple[int, int]]:
        """(h, w) of each val image as evaluated (after val_size)."""
        return [val_shape(*self.sizes[p.stem], self.cfg.val_size) for p in self.val]

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        """Equal sizes batched, in order of first appearance; at most max_batch_pixels a
        batch (one image at least)."""
        check_batch_size(batch_size)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, hw in enumerate(self.val_shapes()):
            groups.setdefault(hw, []).append(i)
        batches = []
        for (h, w), idx in groups.items():
            n = batch_size
            if self.max_batch_pixels:
                n = max(1, min(n, self.max_batch_pixels // (h * w)))
            batches += [[("v", i) for i in idx[s:s + n]] for s in range(0, len(idx), n)]
        yield from self._run("v", batches)

    def close(self) -> None:
        for loader in self._loader.values():
            loader.close()
        self._loader.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the workers go with the process
            pass

    def describe(self) -> dict:
        return {
            "source": str(self.root), "layout": self.layout, "n_train": self.n_train,
            "n_val": self.n_val, "num_classes": self.num_classes,
            "class_names": list(self.class_names), "classes_from": self.classes_from,
            "ignore_index": self.ignore_index, "image_size": self.cfg.image_size,
            "seed": self.cfg.seed, "split": self.split_from,
            "val_fraction": self.cfg.val_fraction, "val_subset": self.cfg.val_subset,
            "val_size": self.cfg.val_size, "notes": list(self.notes),
            "cache": self.cache_info,
        }
