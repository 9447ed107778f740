"""Feature codecs (nas_dil.train.codec): names, hand-computed encodes, round-trip bounds,
save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nas_dil.errors import UserError
from nas_dil.train.codec import CODEC_FILE, Codec, CodecError, CodecSpec, parse_codec


@pytest.mark.parametrize(("name", "pca", "int8", "bpp_2048"), [
    ("full", None, False, 4096),
    ("int8", None, True, 2048),
    ("pca256", 256, False, 512),
    ("pca256-int8", 256, True, 256),
    ("pca1", 1, False, 2),
    ("pca512-int8", 512, True, 512),
])
def test_names(name: str, pca: int | None, int8: bool, bpp_2048: int) -> None:
    spec = parse_codec(name)
    assert spec == CodecSpec(pca, int8)
    assert spec.key == str(spec) == name
    assert parse_codec(spec.key) == spec
    assert spec.bytes_per_pixel(2048) == bpp_2048
    assert spec.needs_fit is (name != "full")


@pytest.mark.parametrize("bad", ["", "pca", "pca0", "pca07", "pca-int8", "fp16", "PCA256",
                                 " full", "int8-pca256", "pca256-fp16", "pca65537", 256, None])
def test_bad_names(bad: object) -> None:
    with pytest.raises(CodecError) as e:
        parse_codec(bad)
    assert isinstance(e.value, UserError)
    msg = str(e.value)
    assert "\n" not in msg and repr(bad) in msg


def test_int8_hand_computed() -> None:
    # channel 0 spans [0, 2.55]: scale 0.01, q = round(x / 0.01) - 128; channel 1 constant 5
    sample = np.array([[0.0, 5.0], [1.0, 5.0], [2.55, 5.0]], np.float32)
    codec = parse_codec("int8").fit(sample)
    assert codec.lo is not None and codec.scale is not None
    np.testing.assert_allclose(codec.lo, [0.0, 5.0])
    np.testing.assert_allclose(codec.scale, [0.01, 1.0], rtol=1e-6)
    f = np.array([0.0, 1.0, 2.55, -1.0, 3.0, 0.004, 0.006], np.float32)
    x = np.stack([f, np.full_like(f, 5.0)])[None, :, None, :]  # [1, 2, 1, 7]
    q = codec.encode(x)
    assert q.dtype == np.int8 and q.shape == (1, 2, 1, 7)
    # out of range clips to the sample's range; 0.4 and 0.6 of a step round to 0 and 1
    assert q[0, 0, 0].tolist() == [-128, -28, 127, -128, 127, -128, -127]
    assert q[0, 1, 0].tolist() == [-128] * 7
    d = codec.decode(q)
    assert d.dtype == torch.float32 and tuple(d.shape) == (1, 2, 1, 7)
    np.testing.assert_allclose(d[0, 0, 0].numpy(), [0, 1, 2.55, 0, 2.55, 0, 0.01], atol=1e-6)
    np.testing.assert_allclose(d[0, 1, 0].numpy(), [5.0] * 7)


def test_pca_hand_computed() -> None:
    # points on the line (3, 1) + t (1, 1): mean (3, 1), the one component (1, 1) / sqrt 2
    t = np.array([1.0, -1.0, 2.0, -2.0], np.float32)
    sample = np.stack([3 + t, 1 + t], axis=1)
    codec = parse_codec("pca1").fit(sample)
    assert codec.mean is not None and codec.components is not None
    np.testing.assert_allclose(codec.mean, [3.0, 1.0])
    np.testing.assert_allclose(codec.components, [[math.sqrt(0.5), math.sqrt(0.5)]], rtol=1e-6)
    pts = np.array([[4.0, 2.0], [4.0, 0.0], [1.0, -1.0]], np.float32)  # on, across, on the line
    x = pts.T[None, :, None, :]  # [1, 2, 1, 3]
    z = codec.encode(x)
    assert z.dtype == np.float16 and z.shape == (1, 1, 1, 3)
    np.testing.assert_allclose(z[0, 0, 0], [math.sqrt(2), 0.0, -2 * math.sqrt(2)], rtol=1e-3)
    d = codec.decode(z)[0, :, 0].numpy().T
    np.testing.assert_allclose(d, [[4.0, 2.0], [3.0, 1.0], [1.0, -1.0]], atol=2e-3)


def _low_rank(n: int, c: int, rank: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, c))
    return (rng.normal(size=(n, rank)) * [4.0 ** -i for i in range(rank)] @ basis
            + noise * rng.normal(size=(n, c)) + 2.0).astype(np.float32)


@pytest.mark.parametrize(("name", "bound"), [
    ("full", 1e-3),  # float16 rounding
    ("int8", 0.6 / 255),  # half a step of the channel's range (+ fp rounding)
    ("pca4", 1e-3),  # rank 4 data: exact up to the noise and float16
    ("pca4-int8", 0.02),
])
def test_round_trip_bound(name: str, bound: float) -> None:
    c, h, w = 16, 3, 5
    sample = _low_rank(400, c, 4, 1e-5)
    codec = parse_codec(name).fit(sample)
    # pixels of the fit's sample: within its per-channel range (int8 clips outside it)
    f = sample[:2 * h * w].reshape(2, h, w, c).transpose(0, 3, 1, 2)
    a = codec.encode(f)
    assert a.dtype == codec.dtype and a.shape == (2, codec.stored_channels, h, w)
    assert a.nbytes == 2 * h * w * codec.bytes_per_pixel
    d = codec.decode(a).numpy()
    assert d.shape == f.shape
    span = float(np.ptp(sample))
    assert float(np.abs(d - f).max()) <= bound * span


def test_pca_keeps_the_variance_it_can() -> None:
    """Dropping components leaves the dropped variance, no more (the best rank-k fit)."""
    sample = _low_rank(2000, 12, 6, 0.0)
    codec = parse_codec("pca3").fit(sample)
    f = sample.reshape(1, 2000, 1, 12).transpose(0, 3, 1, 2)
    err = float(((codec.decode(codec.encode(f)).numpy() - f) ** 2).sum())
    eig = np.linalg.eigvalsh(np.cov(sample.T.astype(np.float64)))[::-1]
    assert err == pytest.approx(eig[3:].sum() * 1999, rel=1e-2)


def test_fit_is_deterministic_and_capped() -> None:
    sample = _low_rank(60_000, 8, 3, 0.1)
    a, b = (parse_codec("pca2-int8").fit(sample) for _ in range(2))
    for k, v in a.arrays().items():
        np.testing.assert_array_equal(v, b.arrays()[k])


@pytest.mark.parametrize(("name", "sample", "match"), [
    ("int8", np.zeros((10,), np.float32), r"shape \(10,\)"),
    ("int8", np.zeros((0, 4), np.float32), r"shape \(0, 4\)"),
    ("pca2", np.full((3, 4), np.nan, np.float32), "NaN or inf"),
])
def test_bad_fit(name: str, sample: np.ndarray, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        parse_codec(name).fit(sample)


def test_bad_shapes() -> None:
    codec = parse_codec("pca2-int8").fit(_low_rank(50, 6, 2, 0.1))
    with pytest.raises(CodecError, match=r"expected \[B, 6, H, W\] features"):
        codec.encode(np.zeros((1, 5, 2, 2), np.float32))
    with pytest.raises(CodecError, match=r"expected \[B, 2, H, W\] stored"):
        codec.decode(np.zeros((1, 6, 2, 2), np.int8))


@pytest.mark.parametrize("name", ["full", "int8", "pca3", "pca3-int8"])
def test_save_load(tmp_path, name: str) -> None:
    codec = parse_codec(name).fit(_low_rank(100, 8, 3, 0.1))
    meta = codec.save(tmp_path)
    assert meta["codec"] == name and meta["channels"] == 8
    assert (tmp_path / CODEC_FILE).is_file() is (name != "full")
    back = Codec.load(tmp_path, meta)
    assert back.spec == codec.spec and back.channels == 8
    assert back.arrays().keys() == codec.arrays().keys()
    for k, v in codec.arrays().items():
        np.testing.assert_array_equal(back.arrays()[k], v)
    f = _low_rank(4, 8, 3, 0.1).reshape(1, 2, 2, 8).transpose(0, 3, 1, 2)
    assert torch.equal(back.decode(back.encode(f)), codec.decode(codec.encode(f)))


def test_load_refuses_another_file(tmp_path) -> None:
    meta = parse_codec("pca2").fit(_low_rank(100, 8, 3, 0.1)).save(tmp_path)
    parse_codec("pca2").fit(_low_rank(100, 8, 3, 0.1, seed=5)).save(tmp_path)
    with pytest.raises(CodecError, match="not the file the manifest records"):
        Codec.load(tmp_path, meta)
    (tmp_path / CODEC_FILE).unlink()
    with pytest.raises(CodecError, match="No such file"):
        Codec.load(tmp_path, meta)


@pytest.mark.parametrize("name", ["int8", "pca3", "pca3-int8"])
def test_decode_affine(name: str) -> None:
    """decode is A @ stored + b per pixel: what a trial folds into the head's first conv."""
    codec = parse_codec(name).fit(_low_rank(100, 8, 3, 0.1))
    f = _low_rank(12, 8, 3, 0.1).reshape(1, 3, 4, 8).transpose(0, 3, 1, 2)
    stored = codec.encode(f)
    ab = codec.decode_affine()
    assert ab is not None
    a, b = ab
    assert a.shape == (8, codec.stored_channels) and b.shape == (8,)
    by_hand = np.einsum("cs,bshw->bchw", a, stored.astype(np.float32)) + b[:, None, None]
    np.testing.assert_allclose(codec.decode(stored).numpy(), by_hand, rtol=1e-5, atol=1e-5)
    assert parse_codec("full").fit(np.zeros((2, 8), np.float32)).decode_affine() is None


@pytest.mark.parametrize(("name", "dtype"), [("pca8", np.float16), ("pca12-int8", np.int8)])
def test_pca_of_no_fewer_channels_keeps_them_all(name: str, dtype: type) -> None:
    """k >= C: nothing to drop, no projection (a default "pca256-int8" on a 8-channel trunk)."""
    sample = _low_rank(50, 8, 3, 0.1)
    codec = parse_codec(name).fit(sample)
    assert codec.components is None and codec.stored_channels == 8
    assert codec.spec.bytes_per_pixel(8) == 8 * np.dtype(dtype).itemsize
    f = sample[:4].reshape(1, 2, 2, 8).transpose(0, 3, 1, 2)
    a = codec.encode(f)
    assert a.dtype == dtype and a.shape == (1, 8, 2, 2)
    np.testing.assert_allclose(codec.decode(a).numpy(), f, atol=0.01 * float(np.ptp(sample)))
