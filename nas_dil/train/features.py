"""Frozen-backbone features cached on disk: computed once per key, memory-mapped by trials.

With ``[train] freeze = "backbone"`` only the searched head trains, so the backbone's output
for each training image is the same in every trial. This module computes it once per
``FeatureKey`` (data, backbone, weights, output stride, augmentation views) and stores it
under ``root/<digest>/`` as shards (below) with a ``manifest.json``; every trial
memory-maps the shards (never reads them whole: memory stays flat in the data set's size).
A cache is used only when its manifest's key equals the asked key (so a change of data,
weights or output stride never reads stale features) and every shard file's sha256 equals
the manifest's (a truncated or altered file is rebuilt, never read).

Shards (FORMAT 3): each split is cut into blocks of at most `shard_images` images (about 16
per split, 64 at most), ``<name>.x.npy`` (features, as the codec stores them) and
``<name>.y.npy`` (masks: uint8 where every label fits 0-255, VOC's ignore index 255 included,
else int16): ``train-v<view>-<i>`` for the training crops of one view, ``val-<i>`` for val
images.
A build writes them in ``root/.build-<digest>/``, each file under a temporary name
(``….tmp-<host>-<pid>``) renamed when whole, then the shard's record (``<name>.json``); once
every shard is there, the manifest (the records) is written and the folder renamed into
place. A build killed at any point (kill -9) keeps its finished shards: the next builder of
the key removes the dead one's temporary files (`remove_stale`), checks the finished shards'
hashes and builds only the missing ones; the disk check counts their bytes as written.

Sizes: training views are crops of one size (``image_size``). Val images are cached each at
its own size (after ``val_size``), never padded: a val shard holds images of one size (those
of one size together, in order of first appearance, as `FolderData.val_batches` groups them),
and `FeatureCache.val_batches` yields batches of one size, so a frozen trial evaluates every
val image at full resolution as an unfrozen one does (logits up-sampled to its mask).

Where: ``root`` is a node-local folder, by default ``default_root()`` (``NAS_DIL_CACHE`` or
``~/.cache/nas-dil``, then ``features/``; a study's ``feature_cache`` names another).
Outside any study's output folder on purpose: deleting a study keeps the cache for the next
study with the same key. The first process on a node to need a key builds it under a lock
file (``fcntl.flock``, released if that process dies); the others wait, then read it. A
process re-hashes a cache only when its files' sizes or mtimes changed since it last did.
`build_shard` is the one code path that computes a shard (a search's driver builds its
node's copy in a plain loop; Ray tasks build the other nodes' copies, `FeaturePlan.build`).

The weights enter the key by content: ``state_digest`` of the backbone's tensors (so random
weights, "imagenet" and a file all key what was actually computed), or a weights file's sha256.

Augmentation: ``views`` augmented passes over the training set are cached (view v is
``data.train_batches(…, epoch=v, seed=key.seed)``: crops and flips as the trainer makes
them); epoch e of a trial reads view e mod views, shuffled by (seed, epoch). Validation
features are computed once without augmentation. Features are exact only for a frozen
backbone in eval mode (BatchNorm statistics fixed), which is what freezing means.

Over 500 lines on purpose: the cache's whole life (key, manifest, build, stale build
folders, the plan a search makes) stays in one module, so its on-disk format is written down
once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from nas_dil._proc import pid_alive
from nas_dil.data.base import Batch, SegData, check_batch_size, mixed_rng
from nas_dil.data.check import cache_dir
from nas_dil.data.load import load_data
from nas_dil.errors import UserError
from nas_dil.models import build_model
from nas_dil.models.config import ArchConfig
from nas_dil.schedule import Schedule
from nas_dil.train.codec import CODEC_FILE, MAX_FIT, Codec, CodecError, CodecSpec, parse_codec
from nas_dil.train.config import TrialConfig

if TYPE_CHECKING:  # torchvision is an extra: imported when a frozen net is built
    from nas_dil.models.backbones import BackboneSegNet

__all__ = ["CacheError", "CachedFeatures", "FeatureCache", "FeatureKey", "FeaturePlan",
           "PlannedCache", "Shard", "build_elsewhere", "build_shard", "cache_bytes",
           "cache_root", "check_room", "default_root", "estimate_seconds",
           "feature_key", "find", "frozen_backbone", "frozen_net", "kept_bytes",
           "mask_dtype", "open_or_build", "plan_features", "plan_shards", "shard_images",
           "state_digest"]

FORMAT = 3  # bump when the layout changes: old caches then no longer match any key
# (3: masks stored as uint8 where the labels fit)


class CacheError(UserError, RuntimeError):
    """A feature cache that cannot be built (disk space, an unwritable folder); one line."""


def default_root() -> Path:
    """The node-local cache folder: ``$NAS_DIL_CACHE`` or ``~/.cache/nas-dil``, then features/."""
    return cache_dir() / "features"


def state_digest(module: nn.Module) -> str:
    """``"state:<sha256>"`` of a module's state_dict (names, shapes, dtypes, bytes): what the
    features depend on, whether the weights are random, ImageNet's or a file's."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "state:" + h.hexdigest()


def file_digest(path: str | Path) -> str:
    """sha256 of a file (weights files enter the key by content, not by name)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    """Everything the cached features depend on; its digest names the cache folder."""

    data: str  # json of SegData.describe(): source, counts, image size, seed
    backbone: str  # backbone name (or any name of the frozen module)
    weights: str  # "none", "imagenet", the sha256 of the weights file, or state_digest
    output_stride: int
    rates: tuple[int, ...] | None  # backbone block rates, None: the default dilations
    views: int  # augmented views of the training set
    seed: int  # seed of the views' augmentation
    codec: str = "full"  # how the features are stored (`codec.parse_codec`): "full" is
    # every channel at float16, "pca<k>", "int8", "pca<k>-int8" a reduced code
    format: int = FORMAT

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"views={self.views}: need at least one view")
        parse_codec(self.codec, "codec")  # a codec that is not one: CodecError, one line

    @classmethod
    def of(cls, data: SegData, backbone: str, weights: str, output_stride: int,
           rates: tuple[int, ...] | None = None, views: int = 4, seed: int = 0,
           codec: str = "full") -> FeatureKey:
        w = (weights if weights in ("none", "imagenet") or weights.startswith("state:")
             else file_digest(weights))
        desc = data.describe()
        cfg = getattr(data, "cfg", None)  # the augmentation switches (flip) live there
        if cfg is not None:
            desc = {**desc, "config": asdict(cfg)}
        return cls(json.dumps(desc, sort_keys=True, default=str), backbone, w, output_stride,
                   None if rates is None else tuple(rates), views, seed, parse_codec(codec).key)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


# -- the shards: blocks of images, each built, written and kept on its own -------------------

MAX_SHARD_IMAGES = 64  # images per shard at most (what a killed build loses at most)
MIN_SHARD_IMAGES = 8  # ... and at least (a shard's images go through the backbone together)
SHARDS_PER_SPLIT = 16  # a split (one view) is cut into about this many shards


def shard_images(n: int) -> int:
    """Images per shard of a split of ``n`` images: about `SHARDS_PER_SPLIT` shards of 8 to 64
    images (so it follows from the data's counts, which the key holds)."""
    return max(1, min(n, max(MIN_SHARD_IMAGES, min(MAX_SHARD_IMAGES, -(-n // SHARDS_PER_SPLIT)))))


@dataclass(frozen=True)
class Shard:
    """One block of images of a split, stored as ``<name>.x.npy`` (features, fp16) and
    ``<name>.y.npy`` (masks, `mask_dtype`)."""

    split: str  # "train" or "val"
    view: int  # the training view (0 for val)
    index: int  # its place in the split's stream (train: batch `index` of the view's batches)
    n: int  # images
    hw: tuple[int, int]  # the images' (h, w): one size per shard

    @property
    def name(self) -> str:
        return (f"train-v{self.view}-{self.index:05d}" if self.split == "train"
                else f"val-{self.index:05d}")


def _val_sizes(data: SegData) -> list[tuple[int, int]]:
    """(h, w) of each val image as evaluated, from the headers where the data knows them."""
    shapes = getattr(data, "val_shapes", None)
    if callable(shapes):
        return [(int(h), int(w)) for h, w in shapes()]
    _, y = next(data.val_batches(1))  # one size for all (the synthetic data)
    return [(int(y.shape[-2]), int(y.shape[-1]))] * data.n_val


def plan_shards(data: SegData, views: int, train_hw: tuple[int, int]) -> list[Shard]:
    """Every shard of a cache in build order: each view's training crops (all ``train_hw``),
    then the val images, those of one size together in order of first appearance (as
    `FolderData.val_batches` groups them), each at its own size."""
    out = []
    s = shard_images(data.n_train)
    for v in range(views):
        out += [Shard("train", v, i, min(s, data.n_train - i * s), train_hw)
                for i in range(-(-data.n_train // s))]
    groups: dict[tuple[int, int], int] = {}
    for hw in _val_sizes(data):
        groups[hw] = groups.get(hw, 0) + 1
    s = shard_images(data.n_val)
    for hw, n in groups.items():
        out += [Shard("val", 0, 0, min(s, n - i), hw) for i in range(0, n, s)]
    val = [sh for sh in out if sh.split == "val"]
    return [sh for sh in out if sh.split == "train"] + [
        Shard("val", 0, i, sh.n, sh.hw) for i, sh in enumerate(val)]


@dataclass(frozen=True)
class _Probe:
    """What one forward of one training crop tells: channels and the feature grid's step."""

    channels: int
    train_hw: tuple[int, int]  # the crop
    feature_hw: tuple[int, int]  # its features' grid

    def grid(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The feature grid of an image of ``hw`` (exact for the crop; ceil(side / step) for
        other sizes, as a strided conv net gives: the disk estimate)."""
        if hw == self.train_hw:
            return self.feature_hw
        return tuple(-(-side // max(1, round(t / f)))  # type: ignore[return-value]
                     for side, t, f in zip(hw, self.train_hw, self.feature_hw, strict=True))


def _probe(backbone: nn.Module, data: SegData) -> _Probe:
    x, _ = next(data.train_batches(1, 0, 0))
    with torch.no_grad():
        f = backbone(x.to(_device_of(backbone)))
    return _Probe(int(f.shape[1]), (int(x.shape[-2]), int(x.shape[-1])),
                  (int(f.shape[-2]), int(f.shape[-1])))


def _device_of(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def mask_dtype(num_classes: int, ignore_index: int) -> np.dtype:
    """The stored masks' dtype: uint8 when every label (0..num_classes-1 and the ignore index)
    fits it, as VOC's 21 classes and 255 do (half the masks' bytes), else int16."""
    fits = num_classes <= 256 and 0 <= ignore_index <= 255
    return np.dtype(np.uint8 if fits else np.int16)


def _shard_bytes(sh: Shard, probe: _Probe, codec: CodecSpec, mask_bytes: int = 2) -> int:
    gh, gw = probe.grid(sh.hw)  # the codec's bytes per feature pixel, then the masks
    return sh.n * (codec.bytes_per_pixel(probe.channels) * gh * gw
                   + sh.hw[0] * sh.hw[1] * mask_bytes)


def _mask_bytes(data: SegData) -> int:
    return mask_dtype(data.num_classes, data.ignore_index).itemsize


def cache_bytes(backbone: nn.Module, data: SegData, views: int, codec: str = "full") -> int:
    """Size of the cache's shards on disk, stored by ``codec`` (one forward of one crop to
    learn the channels; val images of other sizes estimated from the feature grid's step)."""
    probe = _probe(backbone, data)
    spec = parse_codec(codec)
    mb = _mask_bytes(data)
    return sum(_shard_bytes(sh, probe, spec, mb) for sh in plan_shards(data, views,
                                                                     probe.train_hw))


class FeatureCache:
    """The cached features of one key: every shard memory-mapped (read-only), never read whole."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.views = int(self.manifest["key"]["views"])
        self.shard = int(self.manifest["shard_images"])  # training images per shard
        self.codec = Codec.load(folder, self.manifest["codec"])  # decodes what is stored
        self.last_build: dict[str, int] | None = None  # shards built and kept, when built here
        self.train: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(self.views)]
        self.val: list[tuple[np.ndarray, np.ndarray]] = []
        for rec in self.manifest["shards"]:
            pair = tuple(np.load(folder / f"{rec['name']}.{p}.npy", mmap_mode="r")
                         for p in ("x", "y"))
            (self.train[rec["view"]] if rec["split"] == "train" else self.val).append(
                cast("tuple[np.ndarray, np.ndarray]", pair))
        self.n_train = sum(len(x) for x, _ in self.train[0])

    @property
    def nbytes(self) -> int:
        return sum(int(x.nbytes) + int(y.nbytes)
                   for x, y in (*(p for v in self.train for p in v), *self.val))

    def train_rows(self, view: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``idx`` (sorted) of training view ``view``: (features, masks) as stored."""
        blocks = self.train[view]
        which = idx // self.shard  # the shard of each row
        cuts = np.flatnonzero(np.diff(which)) + 1  # idx is sorted: one run per shard
        xs, ys = [], []
        for run in np.split(idx, cuts):
            if len(run):
                j = int(run[0]) // self.shard
                xs.append(blocks[j][0][run - j * self.shard])
                ys.append(blocks[j][1][run - j * self.shard])
        return _cat(xs), _cat(ys)

    def train_batches(self, batch_size: int, epoch: int, seed: int,
                      device: torch.device | None = None) -> Iterator[Batch]:
        """View ``epoch mod views``, shuffled by (seed, epoch): float32 features (decoded on
        ``device``), int64 masks."""
        check_batch_size(batch_size)
        view = epoch % self.views
        order = mixed_rng(seed, epoch, 13).permutation(self.n_train)
        for start in range(0, self.n_train, batch_size):
            x, y = self.train_rows(view, np.sort(order[start:start + batch_size]))  # sequential
            batch = self._decode(x, device), torch.from_numpy(y.astype(np.int64))
            del x, y  # copied into the batch: the maps' pages can go
            _release(a for pair in self.train[view] for a in pair)
            yield batch

    def _decode(self, x: np.ndarray, device: torch.device | None) -> torch.Tensor:
        # a lone shard's rows are a view of the read-only map: torch wants its own copy
        return self.codec.decode(x if x.flags.writeable else np.array(x), device)

    def val_batches(self, batch_size: int, device: torch.device | None = None
                    ) -> Iterator[Batch]:
        """The val images in order, each at its own size: a batch holds images of one size
        (it ends where the size changes), up to ``batch_size`` of them."""
        check_batch_size(batch_size)
        for x, y in _rebatch(self.val, batch_size):
            batch = self._decode(x, device), torch.from_numpy(y.astype(np.int64))
            del x, y
            _release(a for pair in self.val for a in pair)
            yield batch


def _release(arrays: Iterable[np.ndarray]) -> None:
    """Drop the pages of memory-mapped shards from this process once a batch is copied out of
    them (they stay in the OS's page cache, so the next read is a minor fault): else a trial's
    resident set grows with the cache it has read, up to the whole cache (a full cache's trial
    1.43× from 100 to 1,000 images)."""
    for a in arrays:
        m = getattr(a, "_mmap", None)
        if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                m.madvise(mmap.MADV_DONTNEED)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _rebatch(parts: Iterable[tuple[np.ndarray, np.ndarray]], size: int
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive (x, y) parts cut into batches of ``size`` rows, a batch never holding two
    image sizes."""
    cat = _cat
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    n = 0
    for x, y in parts:
        if xs and (x.shape[1:] != xs[0].shape[1:] or y.shape[1:] != ys[0].shape[1:]):
            yield cat(xs), cat(ys)
            xs, ys, n = [], [], 0
        i = 0
        while i < len(x):
            take = min(size - n, len(x) - i)
            xs.append(x[i:i + take])
            ys.append(y[i:i + take])
            n, i = n + take, i + take
            if n == size:
                yield cat(xs), cat(ys)
                xs, ys, n = [], [], 0
    if xs:
        yield cat(xs), cat(ys)


def estimate_seconds(backbone: nn.Module, data: SegData, views: int, batch_size: int,
                     seed: int = 0) -> float:
    """Seconds a build of ``views`` views would take, from one timed training batch (val
    images of other sizes in proportion to their pixels)."""
    x, _ = next(data.train_batches(batch_size, 0, seed))
    x = x.to(_device_of(backbone))
    with torch.no_grad():
        backbone(x[:1])  # warm-up: first-call allocations are not the steady rate
        t = time.perf_counter()
        backbone(x)
        dt = time.perf_counter() - t
    crop = x.shape[-2] * x.shape[-1]
    val = sum(h * w for h, w in _val_sizes(data)) / crop
    return dt / x.shape[0] * (data.n_train * views + val)


def _records(m: Any) -> list[dict[str, Any]] | None:
    """A manifest's shard records, or None when it is not of their shape."""
    recs = m.get("shards") if isinstance(m, dict) else None
    ok = isinstance(recs, list) and all(
        isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("sha256"), dict)
        and r.get("split") in ("train", "val") and isinstance(r.get("view"), int) for r in recs)
    return recs if ok else None


def _valid(folder: Path, key: FeatureKey) -> bool:
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    # valid JSON of another shape (`null`, no "shards") is as corrupt as a truncated file
    if not isinstance(m, dict) or m.get("key") != json.loads(json.dumps(asdict(key))):
        return False
    recs = _records(m)
    if recs is None or not isinstance(m.get("shard_images"), int):
        return False
    meta = m.get("codec")
    if not isinstance(meta, dict) or meta.get("codec") != key.codec:
        return False
    try:
        Codec.load(folder, meta)  # its parameters' file there, hashing as recorded
    except CodecError:
        return False
    # every image of every view and of val, once (the data's counts are in the key)
    counts = json.loads(key.data)
    want = {**{("train", v): counts.get("n_train") for v in range(key.views)},
            ("val", 0): counts.get("n_val")}
    have: dict[tuple[str, int], int] = {}
    for r in recs:
        have[r["split"], r["view"]] = have.get((r["split"], r["view"]), 0) + int(r.get("n", 0))
    return have == want and all(_intact(folder, r) for r in recs)


def _intact(folder: Path, rec: dict[str, Any]) -> bool:
    """Whether a shard's two files are there with the sha256 its record names."""
    return all((folder / f"{rec['name']}.{p}.npy").is_file()
               and file_digest(folder / f"{rec['name']}.{p}.npy") == rec["sha256"].get(p)
               for p in ("x", "y"))


_OPENED: dict[Path, tuple[Any, FeatureCache]] = {}  # folder -> (file stats, cache) this process


def _stats(folder: Path) -> Any:
    try:
        recs = _records(json.loads((folder / "manifest.json").read_text()))
        names = [f"{r['name']}.{p}.npy" for r in recs or () for p in ("x", "y")]
        if (folder / CODEC_FILE).exists():
            names.append(CODEC_FILE)
        return tuple((st.st_size, st.st_mtime_ns, st.st_ino) for st in (
            (folder / f).stat() for f in ("manifest.json", *names)))
    except (OSError, ValueError):
        return None


def find(root: str | Path, key: FeatureKey) -> FeatureCache | None:
    """The valid cache of ``key`` under ``root``, or None (never a stale or altered one)."""
    folder = Path(root) / key.digest()[:24]
    stats = _stats(folder)
    if stats is None:
        return None
    seen = _OPENED.get(folder)
    if seen is not None and seen[0] == stats:  # hashed by this process, files unchanged
        return seen[1]
    if not _valid(folder, key):
        return None
    cache = FeatureCache(folder)
    _OPENED[folder] = (stats, cache)
    return cache


@contextlib.contextmanager
def _build_lock(root: Path, name: str) -> Iterator[None]:
    """One builder per key on a node: others wait here, then find its cache."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock (builds stay atomic)
        yield
        return
    with open(root / f".{name}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_or_build(root: str | Path, key: FeatureKey, backbone: nn.Module, data: SegData, *,
                  batch_size: int = 16, progress: bool | Callable[[int], Any] = False,
                  ) -> FeatureCache:
    """The cache of ``key`` under ``root``: reused when valid, else built shard by shard in
    ``root/.build-<name>/`` (each shard written under a temporary name, renamed when whole,
    kept: a killed build resumes at its first missing shard), the folder renamed into place
    once every shard and the manifest are written. The backbone runs on its own device.

    ``progress``: True for a tqdm bar, or a callable given the shards done after each one.
    """
    root = Path(root)
    found = find(root, key)
    if found is not None:
        return found
    backbone = backbone.eval()
    probe = _probe(backbone, data)
    plan = plan_shards(data, key.views, probe.train_hw)
    remove_stale(root)  # a killed builder's partial files count as free below
    mb = _mask_bytes(data)
    need = sum(_shard_bytes(sh, probe, parse_codec(key.codec), mb) for sh in plan) - kept_bytes(
        root, key)
    check_room(root, need, key.backbone)  # before anything is written
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"feature cache {root}: cannot create the folder "
                         f"({e.strerror or e})") from None
    folder = root / key.digest()[:24]
    with _build_lock(root, folder.name):
        found = find(root, key)  # built by another process while this one waited
        if found is not None:
            return found
        counts = _build(root, folder, key, backbone, data, batch_size, progress, plan,
                        probe.channels)
    cache = find(root, key)
    if cache is None:  # pragma: no cover - written and hashed just now
        raise CacheError(f"feature cache {folder}: invalid right after it was built")
    cache.last_build = counts
    return cache


_TMP = re.compile(r"\.tmp-[0-9a-f]{24}-(?:(?P<host>.+)-)?(?P<pid>\d+)-\d+")  # FORMAT 1 folders
_PART = re.compile(r".+\.tmp-(?P<host>.+)-(?P<pid>\d+)")  # a shard file being written


def _work(root: Path, key: FeatureKey) -> Path:
    """The build folder of ``key``: its finished shards stay there until the build ends."""
    return Path(root) / f".build-{key.digest()[:24]}"


def kept_bytes(root: str | Path, key: FeatureKey) -> int:
    """Bytes of the finished shards a killed build of ``key`` left (reused by the next)."""
    try:
        return sum(p.stat().st_size for p in _work(Path(root), key).glob("*.npy"))
    except OSError:
        return 0


def remove_stale(root: Path) -> list[Path]:
    """Remove what builders on this host that died (kill -9, a lost node) were writing: a
    shard file under its temporary name (its finished shards stay, for the next builder),
    and a FORMAT 1 build folder. A build in progress, or one from another host sharing
    ``root``, is kept. Returns what went."""
    try:
        entries = list(Path(root).iterdir())
        parts = [p for w in entries if w.name.startswith(".build-") and w.is_dir()
                 for p in w.iterdir()]
    except OSError:  # no root yet: nothing left behind
        return []
    host, gone = socket.gethostname(), []
    for p in entries + parts:
        m = _TMP.fullmatch(p.name) or _PART.fullmatch(p.name)
        # names without a host (before round 3) were made on the node-local default root
        if m and m["host"] in (None, host) and not pid_alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def check_room(root: Path, need: int, what: str) -> None:
    """One line when ``need`` bytes do not fit the disk of ``root`` (or its nearest parent),
    or when that folder cannot be written."""
    where = Path(root).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    if need > 0 and not where.is_dir():
        raise CacheError(f"feature cache for {what}: {where} is a file, not a folder "
                         f"(feature_cache={str(root)!r})")
    if need > 0 and not os.access(where, os.W_OK):
        raise CacheError(f"feature cache for {what}: {where} is not writable (another "
                         "feature_cache folder)")
    free = shutil.disk_usage(where).free
    if need > free:
        raise CacheError(f"feature cache for {what} needs {need / 2**30:.2f} GiB; "
                         f"{root} has {free / 2**30:.2f} GiB free (fewer views, a smaller "
                         "image size, or another cache folder)")


def _save(path: Path, write: Callable[[Path], Any]) -> str:
    """``write`` a file under a temporary name (host and pid: a later builder knows whether
    its writer died), then rename it into place; its sha256."""
    tmp = path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        write(tmp)
        digest = file_digest(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def build_shard(work: Path, shard: Shard, x: torch.Tensor, y: torch.Tensor,
                backbone: nn.Module, batch_size: int, what: str, codec: Codec) -> dict[str, Any]:
    """Compute and write one shard (the backbone's features of ``x``, forwards of
    ``batch_size`` images on the backbone's device, stored by ``codec``; the masks ``y``);
    its record. The record file is written last: a shard is finished once it exists."""
    if tuple(y.shape[-2:]) != shard.hw or len(x) != shard.n:
        raise CacheError(f"feature cache for {what}: shard {shard.name} expected {shard.n} "
                         f"image(s) of {shard.hw}, the data gave {len(x)} of "
                         f"{tuple(y.shape[-2:])} (did the data change during the build?)")
    device = _device_of(backbone)

    def features(tmp: Path) -> None:
        out = None
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                f = codec.encode(backbone(x[s:s + batch_size].to(device)).float().cpu().numpy())
                if f.dtype.kind == "f" and not np.isfinite(f).all():
                    raise CacheError(f"feature cache for {what}: features overflow float16 "
                                     "(the backbone's activations exceed 65504); use other "
                                     "weights")
                if out is None:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=f.dtype,
                                                    shape=(len(x), *f.shape[1:]))
                out[s:s + len(f)] = f
        assert out is not None
        out.flush()
        del out

    def masks(tmp: Path) -> None:
        m = y.cpu().numpy()
        small = m.size == 0 or (int(m.min()) >= 0 and int(m.max()) <= 255)
        with open(tmp, "wb") as fh:  # uint8 where the labels fit (see `mask_dtype`)
            np.save(fh, m.astype(np.uint8 if small else np.int16))

    rec: dict[str, Any] = {"name": shard.name, "split": shard.split, "view": shard.view,
                           "n": shard.n, "hw": list(shard.hw), "sha256": {}}
    rec["sha256"]["x"] = _save(work / f"{shard.name}.x.npy", features)
    rec["sha256"]["y"] = _save(work / f"{shard.name}.y.npy", masks)
    _save(work / f"{shard.name}.json", lambda tmp: tmp.write_text(json.dumps(rec)))
    return rec


def _finished(work: Path, plan: list[Shard]) -> dict[str, dict[str, Any]]:
    """The shards a killed build left whole (record written, files hashing as it says); the
    files of any other shard are removed."""
    done: dict[str, dict[str, Any]] = {}
    for sh in plan:
        try:
            rec = json.loads((work / f"{sh.name}.json").read_text())
        except (OSError, ValueError):
            rec = None
        if (isinstance(rec, dict) and _records({"shards": [rec]}) and rec.get("n") == sh.n
                and rec.get("hw") == list(sh.hw) and _intact(work, rec)):
            done[sh.name] = rec
        else:
            for p in (f"{sh.name}.json", f"{sh.name}.x.npy", f"{sh.name}.y.npy"):
                (work / p).unlink(missing_ok=True)
    return done


def _blocks(data: SegData, plan: list[Shard], seed: int, skip: Collection[str] = ()
            ) -> Iterator[tuple[Shard, Batch]]:
    """Each shard of ``plan`` with its images and masks, in plan order: view v's training
    crops from ``data.train_batches(shard_images, v, seed)`` (crops and flips as the trainer
    makes them), the val images from ``data.val_batches``; a view (or val) whose shards are
    all in ``skip`` is not read at all (the others are read whole: a stream cannot seek)."""
    s_train, s_val = shard_images(data.n_train), shard_images(data.n_val)
    streams: list[tuple[list[Shard], Callable[[], Iterable[Batch]]]] = [
        ([sh for sh in plan if sh.split == "train" and sh.view == v],
         lambda v=v: data.train_batches(s_train, v, seed))  # type: ignore[misc]
        for v in sorted({sh.view for sh in plan if sh.split == "train"})]
    streams.append(([sh for sh in plan if sh.split == "val"], lambda: data.val_batches(s_val)))
    for shards, batches in streams:
        if all(sh.name in skip for sh in shards):  # nothing left to build there: not read
            continue
        pending = iter(shards)
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        cur = next(pending, None)
        for x, y in batches():
            i = 0
            while i < len(x) and cur is not None:
                have = sum(len(a) for a in xs)
                take = min(cur.n - have, len(x) - i)
                xs.append(x[i:i + take])
                ys.append(y[i:i + take])
                i += take
                if have + take == cur.n:
                    yield cur, (torch.cat(xs) if len(xs) > 1 else xs[0],
                                torch.cat(ys) if len(ys) > 1 else ys[0])
                    xs, ys, cur = [], [], next(pending, None)


def _build(root: Path, folder: Path, key: FeatureKey, backbone: nn.Module, data: SegData,
           batch_size: int, progress: bool | Callable[[int], Any], plan: list[Shard],
           channels: int) -> dict[str, int]:
    """Build the missing shards; how many there are, were built here and were kept."""
    work = _work(root, key)
    work.mkdir(exist_ok=True)
    codec = _codec(work, key, backbone, data, plan, batch_size, channels)
    done = _finished(work, plan)  # what a killed builder left whole: kept, not rebuilt
    kept = len(done)
    bar = (progress if callable(progress)
           else _progress(progress, len(plan), len(done), key.backbone))
    for sh, (x, y) in _blocks(data, plan, key.seed, set(done)):
        if sh.name not in done:
            done[sh.name] = build_shard(work, sh, x, y, backbone, batch_size, key.backbone,
                                        codec)
            bar(1)
    missing = [sh.name for sh in plan if sh.name not in done]
    if missing:
        raise CacheError(f"feature cache for {key.backbone}: the data gave fewer images than "
                         f"planned (shards {missing[:3]} missing); did it change?")
    manifest: dict[str, Any] = {
        "key": asdict(key), "digest": key.digest(),
        "shard_images": shard_images(data.n_train), "codec": codec.save(work),
        "shards": [done[sh.name] for sh in plan],
    }
    _save(work / "manifest.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    for name in [sh.name for sh in plan] + ["codec"]:  # the records live on in the manifest
        (work / f"{name}.json").unlink(missing_ok=True)
    if folder.exists():  # an invalid cache of the same key: replaced, never read
        shutil.rmtree(folder)
    _OPENED.pop(folder, None)
    work.rename(folder)
    return {"shards": len(plan), "shards_built": len(plan) - kept, "shards_kept": kept}


def _codec(work: Path, key: FeatureKey, backbone: nn.Module, data: SegData,
           plan: list[Shard], batch_size: int, channels: int) -> Codec:
    """The codec of ``key``, fitted once per build on the first training shard's features
    (evenly spaced pixels of each image, `codec.MAX_FIT` at most) and kept in ``work`` with
    its record (``codec.json``), so a resumed build encodes as the killed one did; when that
    record is missing or altered, the shards left are removed (they may be another fit's)."""
    spec = parse_codec(key.codec)
    if not spec.needs_fit:  # "full": nothing fitted, nothing kept
        return Codec(spec, channels)
    try:
        meta = json.loads((work / "codec.json").read_text())
        if isinstance(meta, dict) and meta.get("codec") == spec.key:
            return Codec.load(work, meta)
    except (OSError, ValueError, CodecError):
        pass
    for p in work.iterdir():  # no codec record: start over
        p.unlink()
    first = next(sh for sh in plan if sh.split == "train")
    _, (x, _) = next(_blocks(data, [first], key.seed))
    device, pixels = _device_of(backbone), []
    per = -(-MAX_FIT // len(x))  # pixels per image
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            f = backbone(x[s:s + batch_size].to(device)).float().cpu().numpy()
            flat = f.transpose(0, 2, 3, 1).reshape(len(f), -1, f.shape[1])  # [B, HW, C]
            pick = np.linspace(0, flat.shape[1] - 1, min(per, flat.shape[1])).round()
            pixels.append(flat[:, pick.astype(np.int64)].reshape(-1, f.shape[1]))
    codec = spec.fit(np.concatenate(pixels))
    meta = codec.save(work)
    _save(work / "codec.json", lambda tmp: tmp.write_text(json.dumps(meta)))
    return codec


def _progress(on: bool, total: int, done: int, what: str) -> Any:
    if not on:
        return lambda n: None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=done, desc=f"caching {what} features", unit="shard")
    return bar.update


# -- the frozen net, and the caches its trials read, planned in one call ----------------------

def frozen_net(schedule: Schedule, arch: ArchConfig, seed: int) -> BackboneSegNet:
    """The net of a frozen-backbone trial, its backbone frozen (no gradients, eval mode).

    Seeded here, just before it is built, so the backbone (built first, before the head) has
    the same weights in every trial of a seed, also with ``weights = "none"``: the cache a
    driver builds ahead (`frozen_backbone`) is the one the trials find.
    """
    torch.manual_seed(seed)
    model = cast("BackboneSegNet", build_model(schedule, arch=arch))
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    return model


def frozen_backbone(arch: ArchConfig, seed: int) -> nn.Module:
    """The frozen backbone every trial of (arch, seed) gets (whatever its head)."""
    return frozen_net(Schedule.coerce([1]), arch, seed).backbone


def feature_key(arch: ArchConfig, data: SegData, backbone: nn.Module, views: int,
                seed: int, codec: str = "full") -> FeatureKey:
    """The key of a frozen backbone's features on ``data``, stored by ``codec``."""
    return FeatureKey.of(data, arch.backbone, state_digest(backbone), arch.output_stride,
                         None, views, seed, codec)


def cache_root(where: str | os.PathLike[str] | bool | None) -> Path:
    """The folder caches live in: ``where``, or `default_root()` for None, "auto" (a study's
    ``feature_cache`` default) or True."""
    if not isinstance(where, str | os.PathLike) or str(where) in ("", "auto"):
        return default_root()
    return Path(where)


class CachedFeatures:
    """A cache presented as the data set it was computed from: the same train/val batch
    methods and counts, its batches the backbone's features (and the masks) on ``device``."""

    def __init__(self, cache: FeatureCache, data: SegData, device: torch.device) -> None:
        self.cache, self.device = cache, device
        self.n_train, self.num_classes, self.ignore_index = (data.n_train, data.num_classes,
                                                             data.ignore_index)

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
        return self._on_device(self.cache.train_batches(batch_size, epoch, seed, self.device))

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        return self._on_device(self.cache.val_batches(batch_size, self.device))

    def _on_device(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        for x, y in batches:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


@dataclass(frozen=True)
class PlannedCache:
    """One cache of a plan: found valid, or to be built from ``backbone``."""

    output_stride: int
    backbone: nn.Module  # the frozen backbone at this output stride
    key: FeatureKey
    found: FeatureCache | None  # the valid cache of ``key``; None: to be built
    nbytes: int  # its size on disk


@dataclass(frozen=True)
class FeaturePlan:
    """The feature caches frozen trials will read (`plan_features`), checked to fit the disk;
    `build` makes those missing (a search, with messages), `open` a trial's one cache."""

    root: Path
    data: SegData  # what the features are computed from
    views: int  # augmented views of the training set
    batch_size: int  # images per backbone forward while building
    caches: tuple[PlannedCache, ...]
    request: dict[str, Any] = field(default_factory=dict)  # what made it (`elsewhere`)

    def elsewhere(self) -> dict[str, Any]:
        """What `build_elsewhere` needs to plan and build the same caches on another node
        (plain data: a Ray task's argument): its node-local folder resolved there."""
        return self.request

    def build(self, say: Callable[[str], Any] | None = None, bar: bool = False,
              duration: Callable[[float], str] = "{:.0f} s".format) -> dict[str, Any]:
        """Every cache, found or built here (``say``: one message per cache before and after
        a build, durations as ``duration`` writes them; ``bar``: a tqdm bar while building);
        what they are, for the summary."""
        note = say or (lambda _m: None)
        info: dict[str, Any] = {"root": str(self.root), "caches": []}
        for c in self.caches:
            what = (f"feature cache: {c.key.backbone} at output stride {c.output_stride}, "
                    f"{self.views} view(s) of {self.data.n_train} + {self.data.n_val} val "
                    f"images, {c.nbytes / 2**20:.0f} MiB"
                    + ("" if c.key.codec == "full" else f" stored as {c.key.codec}"))
            t = time.perf_counter()
            shards: dict[str, int] = {}
            if c.found is not None:
                note(f"{what}: found valid at {c.found.folder}")
                folder, built = c.found.folder, False
            else:
                est = estimate_seconds(c.backbone, self.data, self.views, self.batch_size,
                                       c.key.seed)
                kept = kept_bytes(self.root, c.key)
                note(f"{what}: building at {self.root} (about {duration(est)} here"
                     + (f"; resuming a stopped build, {kept / 2**20:.1f} MiB of its shards "
                        "kept" if kept else "") + ")")
                cache = self._open(c, bar)
                folder, built, shards = cache.folder, True, cache.last_build or {}
                note(f"feature cache built in {duration(time.perf_counter() - t)}"
                     + (f" ({shards['shards_built']} of {shards['shards']} shards built here)"
                        if shards.get("shards_kept") else "") + f": {folder}")
            info["caches"].append({"output_stride": c.output_stride, "folder": str(folder),
                                   "bytes": int(c.nbytes), "built": built,
                                   "seconds": time.perf_counter() - t, **shards})
        return info

    def open(self) -> FeatureCache:
        """The cache of a one-stride plan (a trial's), built first when it was missing."""
        [c] = self.caches
        return self._open(c, False)

    def _open(self, c: PlannedCache, bar: bool) -> FeatureCache:
        return open_or_build(self.root, c.key, c.backbone, self.data,
                             batch_size=self.batch_size, progress=bar)


def _build_device(name: str) -> torch.device:
    """Where a backbone made here builds: the trials' device, a GPU where there is one."""
    if name == "auto" or (name.startswith("cuda") and not torch.cuda.is_available()):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def plan_features(cfg: TrialConfig, seed: int,
                  root: str | os.PathLike[str] | bool | None = None, *,
                  archs: Iterable[ArchConfig] = (), data: SegData | None = None,
                  backbone: nn.Module | None = None) -> FeaturePlan:
    """The feature caches the frozen trials of ``cfg`` from ``seed`` read: ``cfg.arch``'s and
    those of ``archs`` (the same backbone at other output strides), one per output stride,
    each found valid under ``root`` (`cache_root`) or sized for its build. Those to build must
    fit the disk together: else one line (`CacheError`), before anything is written.
    ``data`` (default: ``cfg.data`` loaded here, on the CPU) and ``backbone`` (``cfg.arch``'s
    frozen backbone; default: `frozen_backbone`) may come already made."""
    where = cache_root(root)
    data = load_data(cfg.data) if data is None else data
    views = cfg.train.freeze_views
    by_stride = {a.output_stride: a for a in (*archs, cfg.arch)}  # cfg.arch's wins its own
    caches = []
    for stride, arch in sorted(by_stride.items()):
        bb = (backbone if backbone is not None and arch is cfg.arch
              else frozen_backbone(arch, seed).to(_build_device(cfg.train.device)))
        key = feature_key(arch, data, bb, views, seed, cfg.train.freeze_cache)
        found = find(where, key)
        caches.append(PlannedCache(stride, bb, key, found, found.nbytes if found else
                                   cache_bytes(bb, data, views, key.codec)))
    remove_stale(where)  # a killed builder's partial files count as free below
    # the finished shards of a killed build are reused: only the rest must fit
    check_room(where, sum(c.nbytes - kept_bytes(where, c.key) for c in caches if c.found is None),
               f"{cfg.arch.backbone} (output stride {', '.join(map(str, sorted(by_stride)))})")
    request = {"configs": [TrialConfig(a, cfg.data, cfg.train).to_dict()
                           for _, a in sorted(by_stride.items())],
               "seed": seed, "root": None if root is None or isinstance(root, bool)
               else str(root)}
    return FeaturePlan(where, data, views, cfg.train.batch_size, tuple(caches), request)


def build_elsewhere(request: dict[str, Any]) -> dict[str, Any]:
    """On another node (a Ray task): plan the caches of `FeaturePlan.elsewhere` there (its
    data, its node-local folder, a GPU where it has one) and build those missing, shard by
    shard as on the driver (`build_shard`, under that node's lock); what `build` says."""
    configs = [TrialConfig.from_dict(c) for c in request["configs"]]
    plan = plan_features(configs[0], int(request["seed"]), request["root"],
                         archs=[c.arch for c in configs[1:]])
    return {**plan.build(), "host": socket.gethostname()}
