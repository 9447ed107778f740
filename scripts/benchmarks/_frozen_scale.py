"""The parts of the frozen benchmark about scale (issue 22): a real-photo VOC-layout folder
built from a photo a package ships, a reduced copy of a feature cache (encoded by a
`nas_dil.train.codec` codec, then decoded), the VOC-aug size estimate, and the peak RSS of a
build and of a cached trial in a fresh process."""

from __future__ import annotations

import json
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

PHOTO = "grace_hopper.jpg"  # matplotlib's sample photograph (600 x 512 px, RGB)
PHOTO_CLASSES = 5  # k-means segments of the photo: the masks' classes
VOC_AUG = {"images": 10_582, "crop": 512, "output_stride": 8, "views": 4,
           "val_images": 1_449, "val_pixels": 500 * 375}  # VOC 2012 aug train, val


def photo_path() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / PHOTO


def _segments(rgb: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Labels [H, W] of k-means (10 rounds) on colour and position: blobby, photo-shaped
    regions (colour alone scatters; position alone ignores the picture)."""
    h, w, _ = rgb.shape
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.concatenate([rgb.reshape(-1, 3), 0.6 * np.stack([yy / h, xx / w], -1).reshape(-1, 2)],
                       axis=1)
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(10):
        lab = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        centres = np.stack([x[lab == j].mean(0) if (lab == j).any() else centres[j]
                            for j in range(k)])
    return lab.reshape(h, w).astype(np.uint8)


def photo_folder(root: Path, n_train: int, n_val: int, side: int, seed: int = 0) -> Path:
    """A VOC-layout folder of ``n_train + n_val`` ``side`` x ``side`` photographs: random
    square crops (a quarter to four fifths of the photo's shorter side, anywhere, flipped
    half the time) of matplotlib's ``grace_hopper.jpg``, resized; each mask the same crop of
    a k-means segmentation of the whole photo (`PHOTO_CLASSES` classes: background, uniform,
    face, hair, …, so a class is the same region in every crop). Same-size val images."""
    from PIL import Image

    img = Image.open(photo_path()).convert("RGB")
    rgb = np.asarray(img, dtype=np.float32) / 255
    lab = Image.fromarray(_segments(rgb, PHOTO_CLASSES, seed))
    rng = np.random.default_rng(seed)
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    stems = []
    short = min(img.size)
    for i in range(n_train + n_val):
        cs = int(rng.integers(short // 4, 4 * short // 5 + 1))
        x0 = int(rng.integers(0, img.size[0] - cs + 1))
        y0 = int(rng.integers(0, img.size[1] - cs + 1))
        box = (x0, y0, x0 + cs, y0 + cs)
        im = img.crop(box).resize((side, side), Image.Resampling.BILINEAR)
        m = lab.crop(box).resize((side, side), Image.Resampling.NEAREST)
        if rng.random() < 0.5:
            im, m = (t.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for t in (im, m))
        stem = f"photo_{i:04d}"
        im.save(root / "JPEGImages" / f"{stem}.jpg", quality=92)
        m.save(root / "SegmentationClass" / f"{stem}.png")
        stems.append(stem)
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("\n".join(stems[:n_train]) + "\n")
    (sets / "val.txt").write_text("\n".join(stems[n_train:]) + "\n")
    return root


def fit_sample(cache: Any, limit: int = 50_000) -> np.ndarray:
    """Feature pixels [N, C] of the first training images of view 0 (at most ``limit``):
    what a build would fit a codec on."""
    a = cache.train[0][0][0]  # view 0's first shard (features of one crop size)
    per = int(np.prod(a.shape[2:]))
    n = max(1, min(cache.n_train, limit // per))
    f = np.asarray(cache.train_rows(0, np.arange(n))[0], dtype=np.float32)
    return f.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def reduced_copy(cache: Any, codec: Any, root: Path, batch: int = 16) -> dict[str, Any]:
    """A copy of ``cache`` under ``root`` (same key, so a trial given ``root`` reads it) whose
    features are ``codec.decode(codec.encode(features))`` written back at float16: the trial
    trains on what the reduced cache decodes to. Returns the stored bytes of the encoded
    features and the encode and decode seconds."""
    from nas_dil.train.features import file_digest

    src, dst = Path(cache.folder), Path(root) / Path(cache.folder).name
    dst.mkdir(parents=True)
    stored, enc_s, dec_s = {"train_x": 0, "val_x": 0}, 0.0, 0.0
    m = json.loads((src / "manifest.json").read_text())
    for rec in m["shards"]:  # each shard's features through the codec and back
        name, k = rec["name"], f"{rec['split']}_x"
        a = np.load(src / f"{name}.x.npy", mmap_mode="r")
        out = np.lib.format.open_memmap(dst / f"{name}.x.npy", mode="w+", dtype=np.float16,
                                        shape=a.shape)
        for s in range(0, len(a), batch):
            f = np.asarray(a[s:s + batch], dtype=np.float32)
            t = time.perf_counter()
            e = codec.encode(f)
            enc_s += time.perf_counter() - t
            stored[k] += int(e.nbytes)
            t = time.perf_counter()
            d = codec.decode(e)
            dec_s += time.perf_counter() - t
            out[s:s + batch] = d.numpy().astype(np.float16)
        out.flush()
        del out
        shutil.copyfile(src / f"{name}.y.npy", dst / f"{name}.y.npy")
        rec["sha256"] = {p: file_digest(dst / f"{name}.{p}.npy") for p in ("x", "y")}
    (dst / "manifest.json").write_text(json.dumps(m, indent=1))
    return {"stored": stored, "encode_s": enc_s, "decode_s": dec_s}


def voc_aug_gib(feature_bytes_per_pixel: float, label_bytes_per_pixel: float) -> dict[str, float]:
    """The VOC-aug cache (`VOC_AUG`) in GiB from bytes per feature pixel and per label pixel
    (the training views at the crop, the val images at their ~500 x 375 px)."""
    v = VOC_AUG
    fpix = (v["crop"] // v["output_stride"]) ** 2
    views = v["images"] * v["views"]
    train = views * (fpix * feature_bytes_per_pixel + v["crop"] ** 2 * label_bytes_per_pixel)
    val = v["val_images"] * (v["val_pixels"] / v["output_stride"] ** 2
                             * feature_bytes_per_pixel + v["val_pixels"] * label_bytes_per_pixel)
    return {"train": train / 2**30, "val": val / 2**30, "total": (train + val) / 2**30}


# -- peak RSS in a fresh process: a build of n images, then a cached trial --------------------

def _rss_child(what: str, n: int, root: str, backbone: str, size: int, codec: str) -> float:
    """Run in a fresh process: build the cache of ``n`` synthetic images ("build") or one
    epoch of a head on it ("trial"); that process's peak RSS in MiB."""
    import torch

    from nas_dil.data import DataConfig, load_data
    from nas_dil.models import ArchConfig
    from nas_dil.train import TrainConfig, TrialConfig, run_trial
    from nas_dil.train.features import frozen_backbone, plan_features

    torch.set_num_threads(1)
    data_cfg = DataConfig(image_size=size, n_train=n, n_val=max(8, n // 10))
    data = load_data(data_cfg)
    arch = ArchConfig(backbone=backbone, target="head", output_stride=8, width=16,
                      num_classes=data.num_classes)
    cfg = TrialConfig(arch, data_cfg, TrainConfig(epochs=1, batch_size=16, threads=1,
                                                  device="cpu", freeze="backbone",
                                                  freeze_views=1, freeze_cache=codec))
    if what == "build":
        plan_features(cfg, 0, root, data=data, backbone=frozen_backbone(arch, 0)).open()
    else:
        run_trial(cfg, "1,2", 0, data=data, feature_cache=root)
    return _peak_mib()


def _peak_mib() -> float:
    """This process's peak RSS in MiB: VmHWM (its address space's high-water mark, new at
    exec; ru_maxrss would carry the forking parent's peak across the spawn's exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS; near enough)
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss(sizes: tuple[int, ...], backbone: str, size: int,
             codec: str = "full") -> list[dict[str, Any]]:
    """Peak RSS (MiB) of a build and of a cached trial, each in a fresh process, for each
    number of training images in ``sizes``, the cache stored by ``codec`` (default "full":
    the largest, where reading it whole would show most)."""
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="nas-dil-rss-") as root:
            row: dict[str, Any] = {"n_train": n}
            for what in ("build", "trial"):
                with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
                    row[f"{what}_mib"] = round(
                        ex.submit(_rss_child, what, n, root, backbone, size, codec).result(), 1)
            row["cache_mib"] = round(sum(p.stat().st_size for p in Path(root).rglob("*.npy"))
                                     / 2**20, 1)
            out.append(row)
    return out
