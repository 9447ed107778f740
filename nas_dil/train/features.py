"""Frozen-backbone features cached on disk: computed once per key, memory-mapped by trials.

With ``[train] freeze = "backbone"`` only the searched head trains, so the backbone's output
for each training image is the same in every trial. This module computes it once per
``FeatureKey`` (data, backbone, weights, output stride, augmentation views) and stores it
as float16 ``.npy`` files under ``root/<digest>/`` with a ``manifest.json``; every trial
memory-maps the files. A cache is used only when its manifest's key equals the asked key
(so a change of data, weights or output stride never reads stale features) and every file's
sha256 equals the manifest's (a truncated or altered file is rebuilt, never read).

Where: ``root`` is a node-local folder, by default ``default_root()`` (``NAS_DIL_CACHE`` or
``~/.cache/nas-dil``, then ``features/``; a study's ``feature_cache`` names another).
Outside any study's output folder on purpose: deleting a study keeps the cache for the next
study with the same key. The first process on a node to need a key builds it under a lock
file (``fcntl.flock``, released if that process dies); the others wait, then read it. A
process re-hashes a cache only when its files' sizes or mtimes changed since it last did.

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
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
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
from nas_dil.train.config import TrialConfig

if TYPE_CHECKING:  # torchvision is an extra: imported when a frozen net is built
    from nas_dil.models.backbones import BackboneSegNet

__all__ = ["CacheError", "CachedFeatures", "FeatureCache", "FeatureKey", "FeaturePlan",
           "PlannedCache", "cache_bytes", "cache_root", "check_room", "default_root",
           "estimate_seconds", "feature_key", "find", "frozen_backbone", "frozen_net",
           "open_or_build", "plan_features", "state_digest"]

FORMAT = 1  # bump when the layout changes: old caches then no longer match any key
FILES = ("train_x", "train_y", "val_x", "val_y")


class CacheError(UserError, RuntimeError):
    """A feature cache that cannot be built (disk space, unequal image sizes); one line."""


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
    dtype: str = "float16"
    format: int = FORMAT

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"views={self.views}: need at least one view")

    @classmethod
    def of(cls, data: SegData, backbone: str, weights: str, output_stride: int,
           rates: tuple[int, ...] | None = None, views: int = 4, seed: int = 0) -> FeatureKey:
        w = (weights if weights in ("none", "imagenet") or weights.startswith("state:")
             else file_digest(weights))
        desc = data.describe()
        cfg = getattr(data, "cfg", None)  # the augmentation switches (flip) live there
        if cfg is not None:
            desc = {**desc, "config": asdict(cfg)}
        return cls(json.dumps(desc, sort_keys=True, default=str), backbone, w, output_stride,
                   None if rates is None else tuple(rates), views, seed)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def _shapes(backbone: nn.Module, data: SegData, views: int) -> dict[str, tuple[int, ...]]:
    x, y = next(data.train_batches(1, 0, 0))
    with torch.no_grad():
        f = backbone(x)
    vx, vy = next(data.val_batches(1))
    with torch.no_grad():
        vf = backbone(vx)
    n = data.n_train * views
    return {"train_x": (n, *f.shape[1:]), "train_y": (n, *y.shape[1:]),
            "val_x": (data.n_val, *vf.shape[1:]), "val_y": (data.n_val, *vy.shape[1:])}


def _dtypes() -> dict[str, np.dtype]:
    return {"train_x": np.dtype(np.float16), "val_x": np.dtype(np.float16),
            "train_y": np.dtype(np.int16), "val_y": np.dtype(np.int16)}


def cache_bytes(backbone: nn.Module, data: SegData, views: int) -> int:
    """Size of the cache on disk (one forward of one image per split to learn the shapes)."""
    shapes = _shapes(backbone, data, views)
    return sum(int(np.prod(s)) * _dtypes()[k].itemsize for k, s in shapes.items())


class FeatureCache:
    """The cached features of one key, memory-mapped (read-only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.views = int(self.manifest["key"]["views"])
        self.arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in FILES}
        self.n_train = self.arrays["train_x"].shape[0] // self.views

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())

    def train_batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
        """View ``epoch mod views``, shuffled by (seed, epoch): float32 features, int64 masks."""
        check_batch_size(batch_size)
        base = (epoch % self.views) * self.n_train
        order = mixed_rng(seed, epoch, 13).permutation(self.n_train) + base
        for start in range(0, self.n_train, batch_size):
            idx = np.sort(order[start:start + batch_size])  # sorted: sequential reads
            yield (torch.from_numpy(self.arrays["train_x"][idx].astype(np.float32)),
                   torch.from_numpy(self.arrays["train_y"][idx].astype(np.int64)))

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        n = self.arrays["val_x"].shape[0]
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            yield (torch.from_numpy(self.arrays["val_x"][sl].astype(np.float32)),
                   torch.from_numpy(self.arrays["val_y"][sl].astype(np.int64)))


def estimate_seconds(backbone: nn.Module, data: SegData, views: int, batch_size: int,
                     seed: int = 0) -> float:
    """Seconds a build of ``views`` views would take, from one timed training batch."""
    x, _ = next(data.train_batches(batch_size, 0, seed))
    with torch.no_grad():
        backbone(x[:1])  # warm-up: first-call allocations are not the steady rate
        t = time.perf_counter()
        backbone(x)
        dt = time.perf_counter() - t
    return dt / x.shape[0] * (data.n_train * views + data.n_val)


def _valid(folder: Path, key: FeatureKey) -> bool:
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    # valid JSON of another shape (`null`, no "sha256") is as corrupt as a truncated file
    if not isinstance(m, dict) or m.get("key") != json.loads(json.dumps(asdict(key))):
        return False
    sha = m.get("sha256")
    return isinstance(sha, dict) and all(
        (folder / f"{k}.npy").is_file() and file_digest(folder / f"{k}.npy") == sha.get(k)
        for k in FILES)


def _batches(backbone: nn.Module, it: Iterator[Batch]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    with torch.no_grad():
        for x, y in it:
            yield backbone(x).to(torch.float16).cpu().numpy(), y.to(torch.int16).cpu().numpy()


_OPENED: dict[Path, tuple[Any, FeatureCache]] = {}  # folder -> (file stats, cache) this process


def _stats(folder: Path) -> Any:
    try:
        return tuple((st.st_size, st.st_mtime_ns, st.st_ino) for st in (
            (folder / f).stat() for f in ("manifest.json", *(f"{k}.npy" for k in FILES))))
    except OSError:
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
    """The cache of ``key`` under ``root``: reused when valid, else built (atomically: in a
    temporary folder renamed into place once every file and the manifest are written; the
    temporary folder of a builder that died is removed by the next one, `remove_stale`).

    ``progress``: True for a tqdm bar, or a callable given the images done after each batch.
    """
    root = Path(root)
    found = find(root, key)
    if found is not None:
        return found
    backbone = backbone.eval()
    shapes = _shapes(backbone, data, key.views)
    remove_stale(root)  # a killed builder's space counts as free below
    check_room(root, sum(int(np.prod(s)) * _dtypes()[k].itemsize for k, s in shapes.items()),
               key.backbone)  # before anything is written
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
        _build(root, folder, key, backbone, data, batch_size, progress, shapes)
    cache = find(root, key)
    if cache is None:  # pragma: no cover - written and hashed just now
        raise CacheError(f"feature cache {folder}: invalid right after it was built")
    return cache


_TMP = re.compile(r"\.tmp-[0-9a-f]{24}-(?:(?P<host>.+)-)?(?P<pid>\d+)-\d+")


def _tmp_name(folder: Path) -> str:
    """The build folder of one builder: host and pid tell a later builder whether it died."""
    return f".tmp-{folder.name}-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"


def remove_stale(root: Path) -> list[Path]:
    """Remove the build folders of builders on this host that died (kill -9, a lost node);
    a build in progress, or one from another host sharing ``root``, is kept. Returns them."""
    try:
        entries = list(Path(root).iterdir())
    except OSError:  # no root yet: nothing left behind
        return []
    host, gone = socket.gethostname(), []
    for p in entries:
        m = _TMP.fullmatch(p.name)
        # names without a host (before round 3) were made on the node-local default root
        if m and m["host"] in (None, host) and not pid_alive(int(m["pid"])) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


def check_room(root: Path, need: int, what: str) -> None:
    """One line when ``need`` bytes do not fit the disk of ``root`` (or its nearest parent)."""
    where = Path(root).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        raise CacheError(f"feature cache for {what} needs {need / 2**30:.2f} GiB; "
                         f"{root} has {free / 2**30:.2f} GiB free (fewer views, a smaller "
                         "image size, or another cache folder)")


def _build(root: Path, folder: Path, key: FeatureKey, backbone: nn.Module, data: SegData,
           batch_size: int, progress: bool | Callable[[int], Any],
           shapes: dict[str, tuple[int, ...]]) -> None:
    tmp = root / _tmp_name(folder)
    tmp.mkdir()
    try:
        arrays = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=_dtypes()[k],
                                               shape=s) for k, s in shapes.items()}
        bar = (progress if callable(progress)
               else _progress(progress, data.n_train * key.views + data.n_val, key.backbone))
        i = 0
        for v in range(key.views):
            for f, y in _batches(backbone, data.train_batches(batch_size, v, key.seed)):
                arrays["train_x"][i:i + len(f)] = f
                arrays["train_y"][i:i + len(f)] = y
                i += len(f)
                bar(len(f))
        i = 0
        for f, y in _batches(backbone, data.val_batches(batch_size)):
            if f.shape[1:] != shapes["val_x"][1:]:
                raise CacheError(f"validation images of unequal sizes ({y.shape[1:]} vs "
                                 f"{shapes['val_y'][1:]}): the feature cache needs one size")
            arrays["val_x"][i:i + len(f)] = f
            arrays["val_y"][i:i + len(f)] = y
            i += len(f)
            bar(len(f))
        for a in arrays.values():
            a.flush()
        del arrays
        if not all(np.isfinite(np.load(tmp / f"{k}.npy", mmap_mode="r")).all()
                   for k in ("train_x", "val_x")):
            raise CacheError(f"feature cache for {key.backbone}: features overflow float16 "
                             "(the backbone's activations exceed 65504); use other weights")
        manifest: dict[str, Any] = {
            "key": asdict(key), "digest": key.digest(), "shapes": shapes,
            "sha256": {k: file_digest(tmp / f"{k}.npy") for k in FILES},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if folder.exists():  # an invalid cache of the same key: replaced, never read
            shutil.rmtree(folder)
        _OPENED.pop(folder, None)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _progress(on: bool, total: int, what: str) -> Any:
    if not on:
        return lambda n: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"caching {what} features", unit="img")
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
                seed: int) -> FeatureKey:
    """The key of a frozen backbone's features on ``data``."""
    return FeatureKey.of(data, arch.backbone, state_digest(backbone), arch.output_stride,
                         None, views, seed)


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
        return self._on_device(self.cache.train_batches(batch_size, epoch, seed))

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        return self._on_device(self.cache.val_batches(batch_size))

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
                    f"images, {c.nbytes / 2**20:.0f} MiB")
            t = time.perf_counter()
            if c.found is not None:
                note(f"{what}: found valid at {c.found.folder}")
                folder, built = c.found.folder, False
            else:
                est = estimate_seconds(c.backbone, self.data, self.views, self.batch_size,
                                       c.key.seed)
                note(f"{what}: building at {self.root} (about {duration(est)} here)")
                folder, built = self._open(c, bar).folder, True
                note(f"feature cache built in {duration(time.perf_counter() - t)}: {folder}")
            info["caches"].append({"output_stride": c.output_stride, "folder": str(folder),
                                   "bytes": int(c.nbytes), "built": built,
                                   "seconds": time.perf_counter() - t})
        return info

    def open(self) -> FeatureCache:
        """The cache of a one-stride plan (a trial's), built first when it was missing."""
        [c] = self.caches
        return self._open(c, False)

    def _open(self, c: PlannedCache, bar: bool) -> FeatureCache:
        return open_or_build(self.root, c.key, c.backbone, self.data,
                             batch_size=self.batch_size, progress=bar)


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
              else frozen_backbone(arch, seed))
        key = feature_key(arch, data, bb, views, seed)
        found = find(where, key)
        caches.append(PlannedCache(stride, bb, key, found,
                                   found.nbytes if found else cache_bytes(bb, data, views)))
    remove_stale(where)  # a killed builder's space counts as free below
    check_room(where, sum(c.nbytes for c in caches if c.found is None),
               f"{cfg.arch.backbone} (output stride {', '.join(map(str, sorted(by_stride)))})")
    return FeaturePlan(where, data, views, cfg.train.batch_size, tuple(caches))
