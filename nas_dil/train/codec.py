"""Feature codecs: how a frozen backbone's features are stored in the feature cache.

A cache of every backbone channel at float16 does not scale (ResNet-50: 2,048 channels, 4 KiB
per feature pixel; VOC-aug at a 512-px crop, output stride 8 and 4 views is ~700 GB). A codec
stores a reduced representation and decodes it back to the backbone's channels, so the head,
export and evaluation stay unchanged:

- ``"full"``: every channel at float16 (the cache as it was).
- ``"pca<k>"``: a fixed projection onto the top ``k`` principal components of the training
  features, float16 (``k/C`` of the bytes; a backbone of at most ``k`` channels keeps every
  channel, unprojected, so a default of "pca256-int8" serves any backbone).
- ``"int8"``: every channel at int8, affine per channel (half the bytes).
- ``"pca<k>-int8"``: the projection, then int8 (``k/(2C)`` of the bytes).

The parameters are fitted once (`CodecSpec.fit`) on a sample of training feature pixels
(``[N, C]``, a few training images' pixel vectors; at most `MAX_FIT` are used, an evenly spaced
subset, so the fit is deterministic) and stored next to the cache (`Codec.save`: an .npz whose
sha256 goes into the manifest).

- PCA: mean-centred; the components are the eigenvectors of the float64 covariance of the
  sample (``numpy.linalg.eigh``; cheaper than an SVD of the ``[N, C]`` sample for N >> C),
  in order of decreasing variance, each signed so that its largest-magnitude entry is
  positive (eigenvectors are defined up to sign: one fit, one answer). Decoding is
  ``mean + z @ components``: the best rank-k reconstruction in squared error of the sample.
- int8: affine per channel, from the sample's minimum and maximum of that channel
  (``scale = (hi - lo) / 255``, ``q = round((x - lo) / scale) - 128`` clipped to [-128, 127];
  round half to even, numpy's). Affine rather than symmetric because a ReLU trunk's channels
  are >= 0: a symmetric code would waste half its levels. Values outside the sample's range
  are clipped to it (a later image's rare outlier costs its excess, never a wrap-around).
  A constant channel (hi == lo) gets scale 1 and decodes to its value exactly.

Pure numpy, torch for `Codec.decode`'s tensor only (imported there), so a study file parse
can check a codec name (`parse_codec`) without torch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas_dil.errors import UserError

if TYPE_CHECKING:  # torch only for decode's tensor, imported there
    import torch

__all__ = ["CODEC_FILE", "MAX_FIT", "Codec", "CodecError", "CodecSpec", "parse_codec"]

MAX_FIT = 50_000  # feature pixels a fit uses at most (an evenly spaced subset of the sample)
MAX_PCA = 65_536  # the largest k of "pca<k>" (more channels than any backbone has)
CODEC_FILE = "codec.npz"  # the fitted parameters in a cache folder (`Codec.save`)
_NAME = re.compile(r"(?:full|int8|pca(?P<k>[1-9][0-9]*)(?P<int8>-int8)?)")


class CodecError(UserError, ValueError):
    """A codec name that is not one, or a fit or stored codec that cannot work; one line."""


@dataclass(frozen=True)
class CodecSpec:
    """What a codec stores: ``pca`` channels (None: all of them), at int8 or float16."""

    pca: int | None = None  # principal components kept; None: every backbone channel
    int8: bool = False  # int8 per channel (affine) instead of float16

    def __post_init__(self) -> None:
        if self.pca is not None and not (isinstance(self.pca, int) and 1 <= self.pca <= MAX_PCA):
            raise CodecError(f"codec pca={self.pca!r}: an integer in [1, {MAX_PCA}]")

    @property
    def key(self) -> str:
        """The codec's name, as `parse_codec` reads it: what enters the cache's key."""
        if self.pca is None:
            return "int8" if self.int8 else "full"
        return f"pca{self.pca}" + ("-int8" if self.int8 else "")

    def __str__(self) -> str:
        return self.key

    @property
    def dtype(self) -> np.dtype:
        """The stored features' dtype."""
        return np.dtype(np.int8 if self.int8 else np.float16)

    def stored_channels(self, channels: int) -> int:
        """Channels stored per feature pixel for a backbone of ``channels`` channels (a
        "pca<k>" with k >= channels keeps them all, unprojected)."""
        return channels if self.pca is None else min(self.pca, channels)

    def bytes_per_pixel(self, channels: int) -> int:
        """Bytes stored per feature pixel for a backbone of ``channels`` channels (before the
        codec is fitted: what a plan sizes a cache with)."""
        return self.stored_channels(channels) * self.dtype.itemsize

    @property
    def needs_fit(self) -> bool:
        """False for "full": nothing to fit, no sample needed."""
        return self.pca is not None or self.int8

    def fit(self, sample: np.ndarray) -> Codec:
        """The codec fitted on ``sample``: ``[N, C]`` feature pixel vectors (float32)."""
        x = np.asarray(sample)
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise CodecError(f"codec {self.key}: fit needs [N, C] pixel vectors, got shape "
                             f"{x.shape}")
        if not np.isfinite(x).all():
            raise CodecError(f"codec {self.key}: the fit sample has NaN or inf values")
        channels = int(x.shape[1])
        if x.shape[0] > MAX_FIT:  # evenly spaced: deterministic, spread over the images
            x = x[np.linspace(0, x.shape[0] - 1, MAX_FIT).round().astype(np.int64)]
        x = x.astype(np.float32, copy=False)
        mean = components = None
        if self.pca is not None and self.pca < channels:  # else nothing to drop: no projection
            mean64 = x.mean(axis=0, dtype=np.float64)
            xc = x - mean64.astype(np.float32)
            cov = (xc.T.astype(np.float64) @ xc.astype(np.float64)) / max(len(xc) - 1, 1)
            _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
            top = vecs[:, ::-1][:, :self.pca].T  # [k, C], decreasing variance
            sign = np.sign(top[np.arange(self.pca), np.abs(top).argmax(axis=1)])
            components = (top * sign[:, None]).astype(np.float32)
            mean = mean64.astype(np.float32)
            x = (x - mean) @ components.T
        lo = scale = None
        if self.int8:
            lo = x.min(axis=0).astype(np.float32)
            span = x.max(axis=0).astype(np.float32) - lo
            scale = np.where(span > 0, span / np.float32(255), np.float32(1)).astype(np.float32)
        return Codec(self, channels, mean, components, lo, scale)


def parse_codec(value: object, where: str = "freeze_cache") -> CodecSpec:
    """The codec named ``value``: "full", "int8", "pca<k>" or "pca<k>-int8" (k >= 1)."""
    if isinstance(value, CodecSpec):
        return value
    m = _NAME.fullmatch(value) if isinstance(value, str) else None
    if m is None or (m["k"] is not None and int(m["k"]) > MAX_PCA):
        raise CodecError(f"{where}={value!r}: use 'full', 'int8', 'pca<k>' or 'pca<k>-int8' "
                         f"(k in [1, {MAX_PCA}]: channels kept, e.g. 'pca256-int8')")
    k = m["k"]
    return CodecSpec(pca=None if k is None else int(k),
                     int8=value == "int8" or m["int8"] is not None)


class Codec:
    """A fitted codec: `encode` backbone features for the cache, `decode` them back."""

    def __init__(self, spec: CodecSpec, channels: int, mean: np.ndarray | None = None,
                 components: np.ndarray | None = None, lo: np.ndarray | None = None,
                 scale: np.ndarray | None = None) -> None:
        self.spec = spec
        self.channels = channels  # the backbone's channels: what decode gives back
        self.mean, self.components = mean, components  # pca: [C], [k, C]
        self.lo, self.scale = lo, scale  # int8: per stored channel, [k] or [C]
        projects = spec.pca is not None and spec.pca < channels
        if (components is None) == projects or (scale is None) == spec.int8:
            raise CodecError(f"codec {spec.key}: parameters do not match its name")

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def dtype(self) -> np.dtype:
        return self.spec.dtype

    @property
    def stored_channels(self) -> int:
        return self.spec.stored_channels(self.channels)

    @property
    def bytes_per_pixel(self) -> int:
        return self.spec.bytes_per_pixel(self.channels)

    def encode(self, f: np.ndarray) -> np.ndarray:
        """``[B, C, H, W]`` float32 features -> ``[B, stored_channels, H, W]`` of `dtype`."""
        f = np.asarray(f, dtype=np.float32)
        if f.ndim != 4 or f.shape[1] != self.channels:
            raise CodecError(f"codec {self.key}: expected [B, {self.channels}, H, W] features, "
                             f"got shape {f.shape}")
        if self.components is None and self.scale is None:
            return f.astype(np.float16)
        b, c, h, w = f.shape
        # [B*H*W, C], contiguous: one BLAS matmul (a strided 4-D matmul is numpy's slow loop)
        x: np.ndarray = np.ascontiguousarray(np.moveaxis(f, 1, -1)).reshape(-1, c)
        if self.components is not None:
            assert self.mean is not None
            x = (x - self.mean) @ self.components.T
        if self.scale is not None:
            assert self.lo is not None
            q = np.rint((x - self.lo) / self.scale) - 128
            x = np.clip(q, -128, 127)
        out = x.reshape(b, h, w, -1)
        return np.ascontiguousarray(np.moveaxis(out, -1, 1)).astype(self.dtype)

    def decode(self, a: np.ndarray | torch.Tensor,
               device: torch.device | str | None = None) -> torch.Tensor:
        """Stored ``[B, stored_channels, H, W]`` -> float32 ``[B, C, H, W]`` (on ``device``:
        the decode runs there, so a GPU trial moves the small stored array, not C channels)."""
        import torch

        t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
        t = t.to(device) if device is not None else t
        if t.ndim != 4 or t.shape[1] != self.stored_channels:
            raise CodecError(f"codec {self.key}: expected [B, {self.stored_channels}, H, W] "
                             f"stored features, got shape {tuple(t.shape)}")
        x = t.float()
        if self.scale is not None:
            assert self.lo is not None
            lo, scale = (torch.from_numpy(v).to(x.device)[:, None, None]
                         for v in (self.lo, self.scale))
            x = (x + 128) * scale + lo
        if self.components is not None:
            assert self.mean is not None
            comp = torch.from_numpy(self.components).to(x.device)  # [k, C]
            mean = torch.from_numpy(self.mean).to(x.device)[:, None, None]
            x = torch.einsum("bkhw,kc->bchw", x, comp) + mean
        return x.contiguous()

    def decode_affine(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(A [C, stored_channels], b [C])`` with ``decode(a) = A @ a + b`` at every pixel
        (float32), None for "full" (the identity). Decoding is linear, so a trial may fold it
        into the head's first 1x1 convolution (weight W: ``W @ A`` on the stored channels,
        ``W @ b`` added) instead of decoding C channels per pixel; the same function of W,
        so the same gradients."""
        if self.components is None and self.scale is None:
            return None
        if self.scale is not None:
            assert self.lo is not None
            a = np.diag(self.scale)  # [s, s]: x = scale * q + (lo + 128 scale)
            b = self.lo + 128 * self.scale
        else:
            a, b = np.eye(self.stored_channels, dtype=np.float32), np.zeros(
                self.stored_channels, np.float32)
        if self.components is not None:
            assert self.mean is not None
            a, b = self.components.T @ a, self.components.T @ b + self.mean
        return a.astype(np.float32), b.astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted parameters by name (those the codec has)."""
        named = {"mean": self.mean, "components": self.components, "lo": self.lo,
                 "scale": self.scale}
        return {k: v for k, v in named.items() if v is not None}

    def save(self, folder: str | Path) -> dict[str, Any]:
        """Write the parameters to ``folder/codec.npz`` (none for "full"); what the manifest
        records: the name, the backbone's channels, and the file with its sha256."""
        meta: dict[str, Any] = {"codec": self.key, "channels": self.channels}
        if self.spec.needs_fit:
            path = Path(folder) / CODEC_FILE
            with open(path, "wb") as f:
                np.savez(f, allow_pickle=False, **self.arrays())
            meta["file"] = CODEC_FILE
            meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        return meta

    @classmethod
    def load(cls, folder: str | Path, meta: dict[str, Any]) -> Codec:
        """The codec `save` wrote to ``folder`` with ``meta``; `CodecError` when the file is
        missing or not the one recorded (a cache reader then treats the cache as invalid)."""
        spec = parse_codec(meta.get("codec"), "codec")
        channels = meta.get("channels")
        if not isinstance(channels, int) or channels < 1:
            raise CodecError(f"codec {spec.key}: channels={channels!r} in the manifest")
        if not spec.needs_fit:
            return cls(spec, channels)
        path = Path(folder) / str(meta.get("file", CODEC_FILE))
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CodecError(f"codec {spec.key}: {path}: {e.strerror or e}") from None
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise CodecError(f"codec {spec.key}: {path} is not the file the manifest records")
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(spec, channels, arrays.get("mean"), arrays.get("components"),
                   arrays.get("lo"), arrays.get("scale"))
