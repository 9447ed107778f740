"""Node-local cache of decoded images: one uint8 file per data set, memory-mapped.

Decoding a PNG/JPEG costs more than reading its pixels back; with ``[data] cache = "auto"``
(or a folder) every image and mask is decoded once into ``images.u8`` / ``masks.bin`` under
the node's cache folder (`nas_dil.data.check.cache_dir`), val images already resized to
``val_size``. Every trial and DataLoader worker on the node maps the same files read-only, so
the pages live once in the OS page cache, never one copy per worker. The folder's name is a
hash of the source files' paths, sizes and mtimes and of val_size: editing a file makes a new
cache. The first process to need it builds it (with a progress bar) under a lock file; others
wait for it (a lock whose builder process is gone is taken over).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas_dil.data.check import cache_dir, check_labels, mask_array, read_image, read_mask
from nas_dil.data.config import DataConfig
from nas_dil.data.errors import DataError
from nas_dil.data.loader import Item, _resize, val_shape

_VERSION = 1
_WAIT_S = 3600.0  # a builder on this node that has not finished in an hour is presumed dead


def _root(cfg: DataConfig) -> Path:
    return cache_dir() / "decoded" if cfg.cache == "auto" else Path(cfg.cache).expanduser()


def _key(train: Sequence[Item], val: Sequence[Item], val_size: int | None) -> str:
    h = hashlib.sha256(f"v{_VERSION}:{val_size}".encode())
    for split, items in (("t", train), ("v", val)):
        for it in items:
            for p in (it.image_path, it.mask_path):
                st = p.stat()
                # fsencode: a name that is not UTF-8 (`im\xff03.png`) hashes as its bytes
                h.update(f"{split}\0".encode() + os.fsencode(p.resolve())
                         + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


class DecodedCache:
    """Read side: `get(split, i)` -> (image (H,W,3) uint8, mask (H,W)) views of the maps."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        index = json.loads((folder / "index.json").read_text())
        self.mask_dtype = np.dtype(index["mask_dtype"])
        self.entries: dict[str, list[list[int]]] = index["entries"]  # [img_off, mask_off, h, w]
        self.bytes = int(index["bytes"])
        self._maps: tuple[np.memmap, np.memmap] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # workers map the files themselves: a mapping is not pickled, the path is
        state = dict(self.__dict__)
        state["_maps"] = None
        return state

    def _open(self) -> tuple[np.memmap, np.memmap]:
        if self._maps is None:
            self._maps = (np.memmap(self.folder / "images.u8", np.uint8, "r"),
                          np.memmap(self.folder / "masks.bin", self.mask_dtype, "r"))
        return self._maps

    def get(self, split: str, i: int) -> tuple[np.ndarray, np.ndarray]:
        img_off, mask_off, h, w = self.entries[split][i]
        images, masks = self._open()
        return (images[img_off:img_off + h * w * 3].reshape(h, w, 3),
                masks[mask_off:mask_off + h * w].reshape(h, w))

    def describe(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "bytes": self.bytes}


def _build(tmp: Path, train: Sequence[Item], val: Sequence[Item], val_size: int | None,
           num_classes: int, ignore_index: int) -> None:
    from tqdm import tqdm

    # labels are checked before they are stored, so uint8 never wraps a stray value
    wide = num_classes > 255 or not 0 <= ignore_index <= 255
    dtype = np.dtype(np.int32 if wide else np.uint8)
    entries: dict[str, list[list[int]]] = {"t": [], "v": []}
    img_off = mask_off = 0
    bar = tqdm(total=len(train) + len(val), desc="cache decoded images", unit="img",
               file=sys.stderr, dynamic_ncols=True)
    with open(tmp / "images.u8", "wb") as fi, open(tmp / "masks.bin", "wb") as fm:
        for split, items in (("t", train), ("v", val)):
            for it in items:
                im = read_image(it.image_path)
                mask = mask_array(read_mask(it.mask_path), it.mask_path)
                check_labels(mask, num_classes, ignore_index, it.mask_path)
                if (im.size[1], im.size[0]) != mask.shape:
                    raise DataError(f"{it.image_path} is {im.size[0]}x{im.size[1]} but "
                                    f"{it.mask_path} is {mask.shape[1]}x{mask.shape[0]}")
                if split == "v":
                    h, w = val_shape(*mask.shape, val_size)
                    if (h, w) != mask.shape:
                        im, mask = _resize(im, mask, h, w)
                img = np.asarray(im, dtype=np.uint8)
                h, w = mask.shape
                fi.write(np.ascontiguousarray(img).tobytes())
                fm.write(np.ascontiguousarray(mask.astype(dtype)).tobytes())
                entries[split].append([img_off, mask_off, h, w])
                img_off += h * w * 3
                mask_off += h * w
                bar.update(1)
    bar.close()
    (tmp / "index.json").write_text(json.dumps({
        "version": _VERSION, "mask_dtype": dtype.name, "entries": entries,
        "bytes": img_off + mask_off * dtype.itemsize}))


def _stale(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False  # being written right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def open_cache(cfg: DataConfig, train: Sequence[Item], val: Sequence[Item],
               num_classes: int, ignore_index: int) -> DecodedCache:
    """The cache for these files, built now if no process on this node has built it."""
    root = _root(cfg)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cache {root}: cannot create ({e.strerror or e})") from None
    folder = root / _key(train, val, cfg.val_size)
    lock = folder.with_suffix(".lock")
    deadline = time.monotonic() + _WAIT_S
    while not (folder / "index.json").is_file():
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _stale(lock):  # its builder died (same node: the pid is gone)
                lock.unlink(missing_ok=True)
                continue
            if time.monotonic() > deadline:
                raise DataError(f"cache {lock}: another build has held it for an hour; "
                                "remove the lock if no nas-dil runs") from None
            time.sleep(0.5)  # another trial on this node is building it
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        try:
            tmp.mkdir()
            _build(tmp, train, val, cfg.val_size, num_classes, ignore_index)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            lock.unlink(missing_ok=True)
    return DecodedCache(folder)
