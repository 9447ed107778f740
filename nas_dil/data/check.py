"""Checks of a data folder: cheap ones from file headers, and the full label scan.

- `header_check(pairs)`: every image and mask opened for its header only (size, mode), no
  pixel decoded: pairing, equal sizes and mask modes fail before any training starts.
- `scan_labels(pairs, ...)`: decodes every mask (and, with ``images=True``, every image) once,
  counts pixels per label value, and caches the verdict in the node's cache folder keyed by
  the files' paths, sizes and mtimes, so a second run (or the next search) reads it back.
- `infer_classes(scan, ...)`: the class count a set of masks implies, refusing values that
  look like noise (a handful of pixels of a value far above every other label).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from nas_dil.data.errors import DataError

__all__ = ["LabelScan", "cache_dir", "header_check", "infer_classes", "read_image", "read_mask",
           "scan_labels"]

MASK_MODES = ("P", "L", "1", "I", "I;16", "I;16B", "I;16L")
# A top label is noise when it covers at most this share of the labelled pixels (or
# NOISE_PIXELS, whichever is more) and sits far above the next label: both twice its value
# (+1) and NOISE_GAP values away. Class ids are dense in every real layout, so a lone far
# value is a painting slip (one pixel of 254), not class 254.
NOISE_SHARE = 1e-4
NOISE_PIXELS = 16
NOISE_GAP = 8
_SCAN_VERSION = 1


class _Pair(Protocol):  # read-only members, so a frozen dataclass (loader.Item) fits
    @property
    def stem(self) -> str: ...
    @property
    def image_path(self) -> Path: ...
    @property
    def mask_path(self) -> Path: ...


def cache_dir() -> Path:
    """Node-local folder for check verdicts and decoded-image caches.

    ``NAS_DIL_CACHE`` if set, else ``$XDG_CACHE_HOME/nas-dil`` or ``~/.cache/nas-dil``.
    """
    env = os.environ.get("NAS_DIL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nas-dil"


# --- reading ------------------------------------------------------------------------------------

_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def read_image(path: Path) -> Image.Image:
    """The decoded RGB image; DataError naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, naming itself
            return im if im.mode == "RGB" else im.convert("RGB")
    except _PIL_ERRORS as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e


def mask_array(im: Image.Image, path: Path) -> np.ndarray:
    """Class indices of a decoded mask (palette PNG: the indices, not the colours)."""
    mode = im.mode
    if mode in ("P", "L", "1"):
        return np.asarray(im, dtype=np.uint8)
    if mode.startswith("I"):
        return np.asarray(im).astype(np.int32)
    raise DataError(f"{path}: mask is {mode}; expected one channel of class indices "
                    "(palette or grayscale PNG)")


def read_mask(path: Path) -> Image.Image:
    """The decoded mask image (mode kept); DataError naming the file if it cannot be read."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in MASK_MODES:
                raise DataError(f"{path}: mask is {im.mode}; expected one channel of class "
                                "indices (palette or grayscale PNG)")
            return im  # decoded: its pixels outlive the closed file
    except DataError:
        raise
    except _PIL_ERRORS as e:
        raise DataError(f"{path}: cannot read mask ({type(e).__name__}: {e})") from e


def _header(path: Path, what: str) -> tuple[tuple[int, int], str]:
    """(w, h) and mode from the file header; no pixel is decoded."""
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except _PIL_ERRORS as e:
        raise DataError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from e


def header_check(pairs: Iterable[_Pair]) -> dict[str, tuple[int, int]]:
    """(h, w) per stem, read from headers; DataError on a size mismatch or a bad mask mode."""
    sizes: dict[str, tuple[int, int]] = {}
    for p in pairs:
        (w, h), _ = _header(p.image_path, "image")
        (mw, mh), mode = _header(p.mask_path, "mask")
        if mode not in MASK_MODES:
            raise DataError(f"{p.mask_path}: mask is {mode}; expected one channel of class "
                            "indices (palette or grayscale PNG)")
        if (w, h) != (mw, mh):
            raise DataError(f"{p.image_path} is {w}x{h} but {p.mask_path} is {mw}x{mh}")
        sizes[p.stem] = (h, w)
    return sizes


def check_labels(mask: np.ndarray, num_classes: int, ignore_index: int, path: Path) -> None:
    """DataError naming the file when a label is neither a class nor ignore_index."""
    # fast path (one pass): the largest value is a class; VOC-like masks with an ignore
    # border take the second pass of comparisons, still no index arrays
    if mask.size == 0 or (mask.max() < num_classes and mask.min() >= 0):
        return
    bad = (mask >= num_classes) & (mask != ignore_index)
    if mask.dtype != np.uint8:
        bad |= (mask < 0) & (mask != ignore_index)
    if not bad.any():
        return
    if bad.any():
        values = np.unique(mask[bad])
        v = int(values[0]) if values[0] < 0 else int(values[-1])
        rel = "< 0" if v < 0 else f">= num_classes {num_classes}"
        raise DataError(f"{path}: label {v} {rel} (ignore_index {ignore_index})")


# --- the full scan ------------------------------------------------------------------------------

@dataclass
class LabelScan:
    """Pixels per label value over a set of masks, and the first mask holding each value."""

    n_masks: int = 0
    pixels: dict[int, int] = field(default_factory=dict)
    first_file: dict[int, str] = field(default_factory=dict)
    images_checked: bool = False  # every image decoded too (readable, sizes as the masks)

    def to_dict(self) -> dict[str, Any]:
        return {"version": _SCAN_VERSION, "n_masks": self.n_masks,
                "pixels": {str(k): v for k, v in sorted(self.pixels.items())},
                "first_file": {str(k): v for k, v in sorted(self.first_file.items())},
                "images_checked": self.images_checked}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelScan:
        return cls(int(d["n_masks"]), {int(k): int(v) for k, v in d["pixels"].items()},
                   {int(k): str(v) for k, v in d["first_file"].items()},
                   bool(d.get("images_checked")))

    def labels(self, ignore_index: int) -> list[int]:
        return sorted(v for v in self.pixels if v != ignore_index)


def _fingerprint(pairs: Sequence[_Pair], images: bool) -> str:
    """Hash of every file's path, size and mtime: any edit changes it."""
    h = hashlib.sha256(f"v{_SCAN_VERSION}:{int(images)}".encode())
    for p in sorted(pairs, key=lambda q: str(q.mask_path)):  # the set, not its order
        for path in ((p.image_path, p.mask_path) if images else (p.mask_path,)):
            try:
                st = path.stat()
            except OSError as e:
                raise DataError(f"{path}: cannot stat ({e.strerror or e})") from None
            # fsencode: a name that is not UTF-8 (`im\xff03.png`) hashes as its bytes
            h.update(os.fsencode(path.resolve()) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _verdict_path(key: str) -> Path:
    return cache_dir() / "checks" / f"{key}.json"


def cached_scan(pairs: Sequence[_Pair], images: bool = False) -> LabelScan | None:
    """A scan of exactly these files done before (a full one serves a masks-only ask too)."""
    for full in ((True,) if images else (False, True)):
        path = _verdict_path(_fingerprint(pairs, full))
        try:
            return LabelScan.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def scan_labels(pairs: Sequence[_Pair], *, images: bool = False, progress: bool = False,
                desc: str = "scan masks", use_cache: bool = True) -> LabelScan:
    """Decode every mask (and image, with ``images``) once; verdict cached by file stats."""
    if use_cache:
        hit = cached_scan(pairs, images)
        if hit is not None:
            return hit
    scan = LabelScan(images_checked=images)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(pairs), desc=desc, unit="file", file=sys.stderr, dynamic_ncols=True)
    try:
        for p in pairs:
            mask = mask_array(read_mask(p.mask_path), p.mask_path)
            if images:
                w, h = read_image(p.image_path).size
                if (h, w) != mask.shape:
                    raise DataError(f"{p.image_path} is {w}x{h} but {p.mask_path} is "
                                    f"{mask.shape[1]}x{mask.shape[0]}")
            values, counts = np.unique(mask, return_counts=True)
            for v, c in zip(values.tolist(), counts.tolist(), strict=True):
                scan.pixels[v] = scan.pixels.get(v, 0) + c
                scan.first_file.setdefault(v, str(p.mask_path))
            scan.n_masks += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if use_cache:
        _save(scan, _fingerprint(pairs, images))
    return scan


def _save(scan: LabelScan, key: str) -> None:
    """Best effort: a read-only cache folder only costs a rescan next time."""
    path = _verdict_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(scan.to_dict()))
        os.replace(tmp, path)
    except OSError:
        pass


def noise_labels(scan: LabelScan, ignore_index: int) -> list[int]:
    """Top label values that look like stray pixels (see NOISE_*), highest first."""
    labels = scan.labels(ignore_index)
    total = sum(scan.pixels[v] for v in labels)
    limit = max(NOISE_PIXELS, NOISE_SHARE * total)
    out = []
    while len(labels) >= 2:
        top, below = labels[-1], labels[-2]
        if scan.pixels[top] <= limit and top >= 2 * (below + 1) and top - below >= NOISE_GAP:
            out.append(top)
            labels.pop()
        else:
            break
    return out


def check_ignore_index(num_classes: int, ignore_index: int, where: Path) -> None:
    """The one verdict `data check` and training give: ``ignore_index`` must not be a class
    (labels 0..300 with ignore_index 255 would train on ignored pixels)."""
    if 0 <= ignore_index < num_classes:
        raise DataError(f"{where}: ignore_index {ignore_index} is a real class "
                        f"(num_classes {num_classes})")


def infer_classes(scan: LabelScan, ignore_index: int, where: Path) -> int:
    """Class count max label + 1; DataError on noise-like labels or fewer than 2 classes."""
    noise = noise_labels(scan, ignore_index)
    if noise:
        v = noise[-1]
        rest = [x for x in scan.labels(ignore_index) if x not in noise]
        raise DataError(
            f"{scan.first_file[v]}: label {v} in {scan.pixels[v]} pixel(s) over all masks, far "
            f"above every other label (max {max(rest)}): looks like noise, which would make "
            f"{v + 1} classes; fix the mask, or set num_classes / list the classes in "
            "classes.txt")
    labels = scan.labels(ignore_index)
    if any(v < 0 for v in labels):
        v = labels[0]
        raise DataError(f"{scan.first_file[v]}: label {v} < 0 (ignore_index {ignore_index})")
    n = (labels[-1] + 1) if labels else 0
    if n < 2:
        raise DataError(f"{where}: masks hold only label 0; need at least 2 classes")
    return n
