"""Texture and quality metrics of one 8-bit grayscale image (pure functions on uint8 arrays).

Every function takes a 2-D ``uint8`` array (values 0-255) and returns a Python ``float``.
:func:`compute_metrics` returns all of them as a dict, in the fixed order :data:`METRIC_NAMES`.
They are written to be cheap (about 2 ms of CPU for a 256 x 256 image): vectorised numpy / OpenCV,
GLCMs by one ``bincount`` per offset on a 16-level image instead of scikit-image's generic path.
"""

from __future__ import annotations

import functools
import math

from typing import NamedTuple

import cv2
import numpy as np

from ..edges import canny

#: Bumped whenever a metric's definition changes: cached values of another version are ignored.
METRICS_VERSION = 2

#: Grey levels of the quantised image the GLCM features are computed on.
GLCM_LEVELS = 16
#: Pixel offsets (dy, dx) of the GLCM: distance 1 at 0, 45, 90 and 135 degrees, averaged.
GLCM_OFFSETS = ((0, 1), (1, 1), (1, 0), (1, -1))

METRIC_NAMES: tuple[str, ...] = (
    "mean", "std", "dynamic_range", "clipped_frac", "sharpness", "noise_sigma", "entropy",
    "glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation", "edge_density",
    "period_px", "orientation_deg", "periodicity", "snr_db",
)

#: One-line meaning of each metric (used by the report and the docs).
METRIC_DOCS: dict[str, str] = {
    "mean": "mean grey level (0-255)",
    "std": "grey-level standard deviation (spread)",
    "dynamic_range": "99th minus 1st grey-level percentile",
    "clipped_frac": "fraction of pixels at 0 or 255",
    "sharpness": "variance of the 3x3 Laplacian (higher = sharper, but noise raises it too)",
    "noise_sigma": "noise standard deviation, MAD of the finest Haar diagonal wavelet band",
    "entropy": "Shannon entropy of the grey-level histogram, bits",
    "glcm_contrast": "GLCM contrast, 16 levels, distance 1, 4 directions averaged",
    "glcm_homogeneity": "GLCM homogeneity (inverse difference moment)",
    "glcm_energy": "GLCM energy (sqrt of the angular second moment)",
    "glcm_correlation": "GLCM correlation",
    "edge_density": "fraction of Canny edge pixels after a sigma-1 Gaussian blur (at most 128 px)",
    "period_px": "period of the strongest Fourier peak, pixels",
    "orientation_deg": "direction of that peak's wave vector, degrees in [0, 180); 0 = vertical lines",
    "periodicity": "share of the non-DC spectral power in the strongest peak and its 3x3 neighbours",
    "snr_db": "signal-to-noise ratio, 20 log10(signal std / noise_sigma), dB",
}


@functools.lru_cache(maxsize=8)
def _glcm_grid(levels: int):
    return np.indices((levels, levels), dtype=np.float64)


def _hist(img: np.ndarray) -> np.ndarray:
    return cv2.calcHist([img], [0], None, [256], [0, 256]).ravel().astype(np.float64)


def _check(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {getattr(img, 'dtype', type(img))} "
                         f"{getattr(img, 'shape', '')}")
    if img.shape[0] < 4 or img.shape[1] < 4:
        raise ValueError(f"image too small for texture metrics: {img.shape}")
    return img


def _hist_stats(hist: np.ndarray) -> dict[str, float]:
    # grey_stats and entropy from one histogram: compute_metrics makes it once for both
    n = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    mean = float(hist @ levels / n)
    std = float(math.sqrt(max(hist @ (levels - mean) ** 2 / n, 0.0)))
    cdf = np.cumsum(hist) / n
    p1 = int(np.searchsorted(cdf, 0.01))
    p99 = int(np.searchsorted(cdf, 0.99))
    return {"mean": mean, "std": std, "dynamic_range": float(p99 - p1),
            "clipped_frac": float((hist[0] + hist[255]) / n)}


def _hist_entropy(hist: np.ndarray) -> float:
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def grey_stats(img: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, p1-p99 dynamic range and clipped fraction, from one histogram."""
    return _hist_stats(_hist(_check(img)))


def entropy(img: np.ndarray) -> float:
    """Shannon entropy of the 256-bin grey-level histogram, in bits (0 to 8)."""
    return _hist_entropy(_hist(_check(img)))


def sharpness(img: np.ndarray) -> float:
    """Variance of the 3 x 3 Laplacian (grey levels squared)."""
    # int16 holds the Laplacian of uint8 exactly (|value| <= 1020): the same numbers as float32,
    # so the same variance, from half the memory
    lap = cv2.Laplacian(_check(img), cv2.CV_16S, ksize=1)
    return float(lap.var(dtype=np.float64))


#: The HH band's values are (a - b - c + d) / 2 with a..d in 0-255: |2 HH| is an integer up to 510.
_HH2_MAX = 510


def noise_sigma(img: np.ndarray) -> float:
    """Robust noise standard deviation: median(|HH|) / 0.6745 of the finest Haar diagonal band.

    The HH band of an orthonormal Haar transform holds almost no signal for smooth or edge-like
    content, so its median absolute value estimates white noise (Donoho & Johnstone 1994).
    """
    a = _check(img).astype(np.int16)
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    hh2 = np.abs(a[0:h:2, 0:w:2] - a[0:h:2, 1:w:2] - a[1:h:2, 0:w:2] + a[1:h:2, 1:w:2])
    # The median from a histogram of the integers |2 HH| instead of np.median's partition of
    # floats (3x cheaper); the same number: np.median of the float32 band is the mean of its two
    # middle values, exact in float32 (quarter grey levels), and so is this.
    cum = np.cumsum(np.bincount(hh2.ravel(), minlength=_HH2_MAX + 1))
    n = hh2.size
    lo = int(np.searchsorted(cum, (n - 1) // 2 + 1))
    hi = int(np.searchsorted(cum, n // 2 + 1))
    return float(np.float32((lo + hi) * 0.25) / 0.6745)


def glcm_features(img: np.ndarray, levels: int = GLCM_LEVELS,
                  offsets=GLCM_OFFSETS) -> dict[str, float]:
    """Contrast, homogeneity, energy and correlation of the symmetric normalised GLCM.

    The image is quantised to ``levels`` grey levels; one co-occurrence matrix per offset
    (a ``bincount`` of ``a * levels + b``), symmetrised, normalised, features averaged over
    offsets (as ``skimage.feature.graycoprops`` would give with ``symmetric=True, normed=True``).
    """
    img = _check(img)
    if levels > 16:
        raise ValueError("glcm_features supports at most 16 levels (pair codes are one byte)")
    shift = 8 - int(math.log2(levels))
    if 1 << (8 - shift) != levels:
        raise ValueError("levels must be a power of two")
    q = img >> shift
    hi = q << (8 - shift)  # the first pixel's level in the high bits of a pair code
    h, w = q.shape
    ps = []
    for dy, dx in offsets:
        if dx >= 0:
            a, b = hi[0:h - dy, 0:w - dx], q[dy:h, dx:w]
        else:
            a, b = hi[0:h - dy, -dx:w], q[dy:h, 0:w + dx]
        code = cv2.bitwise_or(a, b)  # one byte per pair, made from the two views in one pass
        ps.append(cv2.calcHist([code], [0], None, [levels * levels], [0, levels * levels]).reshape(levels, levels))
    p = np.stack(ps)
    p = (p + p.transpose(0, 2, 1)).astype(np.float64)
    # every offset's features at once; each sum runs over one offset's levels x levels values in
    # the same order as a per-offset loop would, so the figures are the same to the last bit
    p = p.reshape(len(ps), -1)
    p /= p.sum(axis=1, keepdims=True)
    i, j = (g.ravel() for g in _glcm_grid(levels))
    d2 = (i - j) ** 2
    mu = (i * p).sum(axis=1, keepdims=True)
    var = ((i - mu) ** 2 * p).sum(axis=1)
    cov = ((i - mu) * (j - mu) * p).sum(axis=1)
    feats = ((p * d2).sum(axis=1), (p / (1.0 + d2)).sum(axis=1), np.sqrt((p * p).sum(axis=1)),
             [c / v if v > 1e-12 else 1.0 for c, v in zip(cov.tolist(), var.tolist())])
    out = np.zeros(4)
    for row in zip(*feats):  # summed offset by offset, in order, as before
        out += row
    out /= len(offsets)
    return {"glcm_contrast": float(out[0]), "glcm_homogeneity": float(out[1]),
            "glcm_energy": float(out[2]), "glcm_correlation": float(out[3])}


def edge_density(img: np.ndarray, max_size: int = 128) -> float:
    """Fraction of pixels that Canny (thresholds 30/90 after a sigma-1 blur) marks as edges.

    Images larger than ``max_size`` are area-averaged by an integer factor first, which keeps
    the value comparable between a 128 px real image and a 256 px synthetic one (and is 4x cheaper).
    """
    img = _check(img)
    f = max(1, -(-max(img.shape) // max_size))
    if f > 1:
        img = cv2.resize(img, (img.shape[1] // f, img.shape[0] // f), interpolation=cv2.INTER_AREA)
    edges = canny(img, sigma=1.0, low=30, high=90)
    return float(np.count_nonzero(edges) / edges.size)


#: Images larger than this are area-averaged by an integer factor before the Fourier analysis
#: (4x cheaper at 256 px; periods below 2 * factor pixels would alias, far finer than SEM patterns).
SPECTRUM_MAX_SIZE = 128


class Spectrum(NamedTuple):
    """The Fourier view of an image (:func:`spectrum`), which :func:`dominant_period` reads."""

    small: np.ndarray    #: float32 image, area-downsampled by ``factor``, mean removed
    dft: np.ndarray      #: complex DFT of ``small``, OpenCV 2-channel layout, DC at [0, 0]
    power: np.ndarray    #: float32 power spectrum, DC at [0, 0]
    factor: int          #: downsampling factor (1 = full resolution)


def spectrum(img: np.ndarray, max_size: int = SPECTRUM_MAX_SIZE) -> Spectrum:
    """DFT of the mean-removed image, area-downsampled by an integer factor to at most ``max_size``."""
    img = _check(img)
    h, w = img.shape
    f = max(1, -(-max(h, w) // max_size))
    a = img.astype(np.float32)
    if f > 1:
        a = cv2.resize(a, (w // f, h // f), interpolation=cv2.INTER_AREA)
    a -= a.mean()
    d = cv2.dft(a, flags=cv2.DFT_COMPLEX_OUTPUT)
    power = d[..., 0] ** 2 + d[..., 1] ** 2
    return Spectrum(a, d, power, f)


@functools.lru_cache(maxsize=16)
def _freq_grid(h: int, w: int):
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.fftfreq(w).astype(np.float32)[None, :]
    low = (fy * h) ** 2 + (fx * w) ** 2 <= 4.0  # DC and its neighbours: slow shading, not texture
    return fy, fx, low


def dominant_period(img: np.ndarray, spec: Spectrum | None = None) -> dict[str, float]:
    """Period (pixels), wave-vector orientation (degrees, [0, 180)) and periodicity of the strongest peak.

    Frequencies within 2 bins of DC (shading) are ignored. ``periodicity`` is the share of the
    non-DC power in the peak and its 3 x 3 neighbourhood (and its mirror): near 1 for clean
    line/space patterns, near 0 for noise. ``spec`` may pass a precomputed :func:`spectrum`.
    """
    if spec is None:
        spec = spectrum(img)
    p = spec.power
    h, w = p.shape
    fy, fx, low = _freq_grid(h, w)
    p = np.where(low, np.float32(0), p)
    total = float(p.sum(dtype=np.float64))
    if total <= 0:
        return {"period_px": 0.0, "orientation_deg": 0.0, "periodicity": 0.0}
    k = int(np.argmax(p))
    ky, kx = divmod(k, w)
    vy, vx = float(fy[ky, 0]), float(fx[0, kx])
    # the peak, its 3x3 neighbours and its conjugate twin's, with wrap-around
    ys = np.array([ky - 1, ky, ky + 1, -ky - 1, -ky, -ky + 1]) % h
    xs = np.array([kx - 1, kx, kx + 1, -kx - 1, -kx, -kx + 1]) % w
    peak = float(p[np.ix_(np.unique(ys[:3]), np.unique(xs[:3]))].sum())
    if (ky, kx) != ((-ky) % h, (-kx) % w):
        peak += float(p[np.ix_(np.unique(ys[3:]), np.unique(xs[3:]))].sum())
    ang = math.degrees(math.atan2(vy, vx)) % 180.0
    return {"period_px": float(spec.factor / math.hypot(vy, vx)), "orientation_deg": float(ang),
            "periodicity": float(min(peak / total, 1.0))}


def snr_db(img: np.ndarray, sigma_noise: float | None = None) -> float:
    """20 log10(signal std / noise std), with signal variance = total variance - noise variance.

    Clipped to [-20, 60] dB so that noise-free synthetic images do not report infinity.
    """
    img = _check(img)
    sn = noise_sigma(img) if sigma_noise is None else sigma_noise
    var = float(img.var(dtype=np.float64))
    sig = math.sqrt(max(var - sn * sn, 0.0))
    if sig <= 0:
        return -20.0
    if sn <= 1e-6:
        return 60.0
    return float(min(max(20.0 * math.log10(sig / sn), -20.0), 60.0))


def compute_metrics(img: np.ndarray, spec: Spectrum | None = None) -> dict[str, float]:
    """All metrics of :data:`METRIC_NAMES` for one 2-D uint8 image, as plain floats.

    Parameters
    ----------
    img : ndarray, shape (H, W), dtype uint8
    spec : Spectrum, optional
        The image's :func:`spectrum`, if already computed.
    """
    img = _check(img)
    hist = _hist(img)
    out = _hist_stats(hist)
    out["sharpness"] = sharpness(img)
    out["noise_sigma"] = noise_sigma(img)
    out["entropy"] = _hist_entropy(hist)
    out.update(glcm_features(img))
    out["edge_density"] = edge_density(img)
    out.update(dominant_period(img, spec))
    out["snr_db"] = snr_db(img, out["noise_sigma"])
    return {k: round(float(out[k]), 6) for k in METRIC_NAMES}
