"""The faster curation analysis (issue 16) gives the same numbers and hashes as the plain code it replaced.

The references below are the implementations before the speed work, kept here verbatim in
substance. The hashes and the integer statistics (percentiles, the noise median) are equal to the
last bit; the compiled loops (metrics version 3) sum the variances exactly in integers and the
GLCM and spectral features in their own fixed order, so those agree to 1e-12 (the analysis cache
version changed with them).
"""

import io
import math
import struct
import zlib

import cv2
import imagehash
import numpy as np
import pytest
from curation_synth import lines
from PIL import Image

from semgen.curation import metrics as M
from semgen.curation.hashing import bits_to_int, raw_phash
from semgen.errors import ImageReadError
from semgen.imageio import _decode_plain_png, encode_png, read_gray


def _images():
    rng = np.random.default_rng(3)
    out = [lines(size, period=float(p), angle=a, noise=n, noise_seed=k, bridge=(20, 30) if k % 2 else None)
           for k, (size, p, a, n) in enumerate([(64, 9.5, 0, 10), (128, 14, 90, 4), (256, 11, 45, 20), (96, 7, 30, 0)])]
    out += [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in [(37, 53), (8, 9), (200, 130), (4, 4), (5, 7)]]
    out += [np.full((40, 40), v, np.uint8) for v in (0, 255)]
    return out


IMAGES = _images()


def ref_noise_sigma(img):
    a = img.astype(np.float32)
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    a = a[:h, :w]
    hh = (a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]) * 0.5
    return float(np.median(np.abs(hh)) / 0.6745)


def ref_sharpness(img):
    return float(cv2.Laplacian(img, cv2.CV_32F, ksize=1).var(dtype=np.float64))


def ref_grey_stats(img):
    hist = np.bincount(img.ravel(), minlength=256).astype(np.float64)
    n = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    mean = float(hist @ levels / n)
    std = float(math.sqrt(max(hist @ (levels - mean) ** 2 / n, 0.0)))
    cdf = np.cumsum(hist) / n
    p = hist[hist > 0] / n
    return {"mean": mean, "std": std, "dynamic_range": float(np.searchsorted(cdf, 0.99) - np.searchsorted(cdf, 0.01)),
            "clipped_frac": float((hist[0] + hist[255]) / n), "entropy": float(-(p * np.log2(p)).sum())}


def ref_dominant_period(spec):
    d = spec.dft
    p = d[..., 0] ** 2 + d[..., 1] ** 2
    h, w = p.shape
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.fftfreq(w).astype(np.float32)[None, :]
    # metrics.near_dc is the numpy statement of the rule the compiled peak search applies bin by bin
    p = np.where(M.near_dc(h, w), np.float32(0), p)
    total = float(p.sum(dtype=np.float64))
    if total <= 0:
        return {"period_px": 0.0, "orientation_deg": 0.0, "periodicity": 0.0}
    ky, kx = divmod(int(np.argmax(p)), w)
    vy, vx = float(fy[ky, 0]), float(fx[0, kx])
    ys = np.array([ky - 1, ky, ky + 1, -ky - 1, -ky, -ky + 1]) % h
    xs = np.array([kx - 1, kx, kx + 1, -kx - 1, -kx, -kx + 1]) % w
    peak = float(p[np.ix_(np.unique(ys[:3]), np.unique(xs[:3]))].sum())
    if (ky, kx) != ((-ky) % h, (-kx) % w):
        peak += float(p[np.ix_(np.unique(ys[3:]), np.unique(xs[3:]))].sum())
    return {"period_px": float(spec.factor / math.hypot(vy, vx)),
            "orientation_deg": float(math.degrees(math.atan2(vy, vx)) % 180.0),
            "periodicity": float(min(peak / total, 1.0))}


def ref_glcm(img, levels=16, offsets=M.GLCM_OFFSETS):
    q = img >> 4
    h, w = q.shape
    i, j = np.indices((levels, levels), dtype=np.float64)
    d2 = (i - j) ** 2
    out = np.zeros(4)
    for dy, dx in offsets:
        if dx >= 0:
            a, b = q[0:h - dy, 0:w - dx], q[dy:h, dx:w]
        else:
            a, b = q[0:h - dy, -dx:w], q[dy:h, 0:w + dx]
        p = np.bincount((a.astype(np.int64) * levels + b).ravel(), minlength=levels * levels)
        p = p.reshape(levels, levels)
        p = (p + p.T).astype(np.float64)
        p /= p.sum()
        mu = (i * p).sum()
        var = ((i - mu) ** 2 * p).sum()
        corr = ((i - mu) * (j - mu) * p).sum() / var if var > 1e-12 else 1.0
        out += ((p * d2).sum(), (p / (1.0 + d2)).sum(), math.sqrt((p * p).sum()), corr)
    out /= len(offsets)
    return dict(zip(("glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation"), map(float, out)))


@pytest.mark.parametrize("k", range(len(IMAGES)))
def test_metrics_equal_the_plain_implementations(k):
    img = IMAGES[k]
    assert M.noise_sigma(img) == ref_noise_sigma(img)
    assert M.sharpness(img) == pytest.approx(ref_sharpness(img), rel=1e-12, abs=1e-12)
    assert M.glcm_features(img) == pytest.approx(ref_glcm(img), rel=1e-12, abs=1e-12)
    grey = ref_grey_stats(img)
    assert M.grey_stats(img) == pytest.approx({k: grey[k] for k in M.grey_stats(img)}, rel=1e-12, abs=1e-12)
    assert M.grey_stats(img)["dynamic_range"] == grey["dynamic_range"]
    assert M.entropy(img) == pytest.approx(grey["entropy"], rel=1e-12, abs=1e-12)
    spec = M.spectrum(img)
    ref = ref_dominant_period(spec)
    got = M.dominant_period(img, spec)
    assert (got["period_px"], got["orientation_deg"]) == (ref["period_px"], ref["orientation_deg"])
    assert got["periodicity"] == pytest.approx(ref["periodicity"], rel=1e-6, abs=1e-9)  # float32 sums before
    m = M.compute_metrics(img)
    # compute_metrics shares one histogram between grey_stats and entropy: the same figures
    assert {k: m[k] for k in ("mean", "std", "dynamic_range", "clipped_frac")} == \
        {k: round(v, 6) for k, v in M.grey_stats(img).items()}
    assert m["entropy"] == round(M.entropy(img), 6)


@pytest.mark.parametrize("k", range(len(IMAGES)))
def test_phash_equals_imagehash(k):
    img = IMAGES[k]
    small = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA) if max(img.shape) > 64 else img
    assert raw_phash(img) == bits_to_int(imagehash.phash(Image.fromarray(small)).hash.ravel())


def _chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


@pytest.mark.parametrize("k", range(len(IMAGES)))
def test_plain_png_decoder_equals_pil(k):
    img = IMAGES[k]
    data = encode_png(img)
    out = _decode_plain_png(data)
    assert out is not None and out.dtype == np.uint8 and np.array_equal(out, img)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), out)
    # unfiltered rows, and the pixels split over two IDAT chunks
    raw = zlib.compress(b"".join(b"\0" + r.tobytes() for r in img))
    h, w = img.shape
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    two = head + _chunk(b"IDAT", raw[:7]) + _chunk(b"IDAT", raw[7:]) + _chunk(b"IEND", b"")
    assert np.array_equal(_decode_plain_png(two), img)


def test_plain_png_decoder_leaves_everything_else_to_pil(tmp_path):
    img = IMAGES[2]
    good = encode_png(img)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")  # PIL's adaptive filters (Sub, Paeth, ...)
    others = {"pil filters": buf.getvalue(), "16-bit": encode_png(img.astype(np.uint16) * 257),
              "extra chunk": good[:33] + _chunk(b"tEXt", b"a\0b") + good[33:], "no IEND": good[:-12],
              "junk after IEND": good + b"x"}
    bad = bytearray(good)
    bad[-13] ^= 1  # the IDAT CRC
    others["bad crc"] = bytes(bad)
    for name, data in others.items():
        assert _decode_plain_png(data) is None, name
        # whatever it is, read_gray's answer comes from PIL, as before
        with Image.open(io.BytesIO(data)) as im:
            want = np.asarray(im.convert("L") if im.mode != "I;16" else im)
        if name != "16-bit":
            assert np.array_equal(read_gray("x.png", data=data), want), name
    for cut in (len(good) // 2, len(good) - 20, 40, 9):  # damaged files: PIL's verdict, as by path
        f = tmp_path / f"cut{cut}.png"
        f.write_bytes(good[:cut])
        try:
            want = ("ok", read_gray(f).tobytes())  # by path: the PIL route
        except ImageReadError as e:
            want = ("error", e.reason)
        try:
            got = ("ok", read_gray(f, data=good[:cut]).tobytes())
        except ImageReadError as e:
            got = ("error", e.reason)
        assert got == want, cut
