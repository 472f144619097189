"""Texture and quality metrics of one 8-bit grayscale image (pure functions on uint8 arrays).

Every function takes a 2-D ``uint8`` array (values 0-255) and returns a Python ``float``.
:func:`compute_metrics` returns all of them as a dict, in the fixed order :data:`METRIC_NAMES`.
They are written to be cheap (about 1 ms of CPU for a 256 x 256 image): the pixel statistics are
compiled one-pass loops (:mod:`.pixelstats`), exact in integers where the statistic is one; OpenCV
does the filters, the resampling and the DFT.
"""

from __future__ import annotations

import functools
import math

from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from ..edges import canny

if TYPE_CHECKING:
    from .pixelstats import ImageStats

#: Bumped whenever a metric's definition changes: cached values of another version are ignored.
#: 3: variances from exact integer sums, GLCM features and the spectral peak summed in float64 in
#: a fixed order (the same figures to about 1e-12; the pixels near DC by integer frequency).
METRICS_VERSION = 3

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


def _exact_var(n: int, s: int, s2: int) -> float:
    """Population variance of ``n`` integers from their sum and sum of squares, correctly rounded."""
    return (n * s2 - s * s) / (n * n)  # Python integers: exact until the one division


def _check(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {getattr(img, 'dtype', type(img))} "
                         f"{getattr(img, 'shape', '')}")
    if img.shape[0] < 4 or img.shape[1] < 4:
        raise ValueError(f"image too small for texture metrics: {img.shape}")
    return np.ascontiguousarray(img)


def _glcm_shift(levels: int) -> int:
    shift = 8 - int(math.log2(levels)) if levels >= 1 else -1
    if not 0 <= shift <= 8 or 1 << (8 - shift) != levels:
        raise ValueError(f"levels must be a power of two from 1 to 256, got {levels}")
    return shift


def _stats(img: np.ndarray, levels: int = GLCM_LEVELS) -> ImageStats:
    # every integer statistic in one compiled call: each metric below reads its part. Imported
    # here, not at the top: loading compiled code first makes numba import its registries (and
    # SciPy's linalg), about 0.9 s, which a process that only reads metric names (curate's
    # main process, whose workers measure) should not pay.
    from .pixelstats import image_stats

    return image_stats(_check(img), _glcm_shift(levels))


def _grey_var(st: ImageStats) -> float:
    return _exact_var(st.pixels, st.grey_sum, st.grey_sumsq)


def _grey(st: ImageStats) -> dict[str, float]:
    n = st.pixels
    return {"mean": st.grey_sum / n, "std": math.sqrt(_grey_var(st)),
            "dynamic_range": float(st.p99 - st.p1), "clipped_frac": st.clipped / n}


def grey_stats(img: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, p1-p99 dynamic range and clipped fraction, from one histogram."""
    return _grey(_stats(img))


def entropy(img: np.ndarray) -> float:
    """Shannon entropy of the 256-bin grey-level histogram, in bits (0 to 8)."""
    return _stats(img).entropy


def _sharpness(st: ImageStats) -> float:
    return _exact_var(st.pixels, st.lap_sum, st.lap_sumsq)


def sharpness(img: np.ndarray) -> float:
    """Variance of the 3 x 3 Laplacian (grey levels squared)."""
    return _sharpness(_stats(img))


def _noise_sigma(st: ImageStats) -> float:
    # The median from a histogram of the integers |2 HH| instead of np.median's partition of
    # floats; the same number: np.median of the float32 band is the mean of its two middle
    # values, exact in float32 (quarter grey levels), and so is this.
    cum = np.cumsum(st.hh_hist)
    n = int(cum[-1])
    lo = int(np.searchsorted(cum, (n - 1) // 2 + 1))
    hi = int(np.searchsorted(cum, n // 2 + 1))
    return float(np.float32((lo + hi) * 0.25) / 0.6745)


def noise_sigma(img: np.ndarray) -> float:
    """Robust noise standard deviation: median(|HH|) / 0.6745 of the finest Haar diagonal band.

    The HH band of an orthonormal Haar transform holds almost no signal for smooth or edge-like
    content, so its median absolute value estimates white noise (Donoho & Johnstone 1994).
    """
    return _noise_sigma(_stats(img))


def _glcm(st: ImageStats) -> dict[str, float]:
    return dict(zip(("glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation"), st.glcm.tolist()))


def glcm_features(img: np.ndarray, levels: int = GLCM_LEVELS) -> dict[str, float]:
    """Contrast, homogeneity, energy and correlation of the symmetric normalised GLCM.

    The image is quantised to ``levels`` grey levels (a power of two up to 256); one
    co-occurrence matrix per offset of :data:`GLCM_OFFSETS`, symmetrised, normalised, features
    averaged over offsets (as ``skimage.feature.graycoprops`` gives with ``symmetric=True,
    normed=True``).
    """
    return _glcm(_stats(img, levels))


def _reduction(shape: tuple[int, int], max_size: int) -> int:
    """The integer factor that brings the longer side to at most ``max_size``, leaving the shorter
    one at least 4 pixels (a long thin strip is reduced less rather than to nothing)."""
    f = max(1, -(-max(shape) // max_size))
    return max(1, min(f, min(shape) // 4))


def edge_density(img: np.ndarray, max_size: int = 128) -> float:
    """Fraction of pixels that Canny (thresholds 30/90 after a sigma-1 blur) marks as edges.

    Images larger than ``max_size`` are area-averaged by an integer factor first, which keeps
    the value comparable between a 128 px real image and a 256 px synthetic one (and is 4x cheaper).
    """
    img = _check(img)
    f = _reduction(img.shape, max_size)
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
    factor: int          #: downsampling factor (1 = full resolution)

    @property
    def power(self) -> np.ndarray:
        """float32 power spectrum ``re^2 + im^2``, DC at [0, 0]."""
        return self.dft[..., 0] ** 2 + self.dft[..., 1] ** 2


def spectrum(img: np.ndarray, max_size: int = SPECTRUM_MAX_SIZE) -> Spectrum:
    """DFT of the mean-removed image, area-downsampled by an integer factor to at most ``max_size``."""
    img = _check(img)
    h, w = img.shape
    f = _reduction(img.shape, max_size)
    a = img.astype(np.float32)
    if f > 1:
        a = cv2.resize(a, (w // f, h // f), interpolation=cv2.INTER_AREA)
    a -= a.mean()
    return Spectrum(a, cv2.dft(a, flags=cv2.DFT_COMPLEX_OUTPUT), f)


@functools.lru_cache(maxsize=16)
def _freqs(n: int) -> tuple[float, ...]:
    return tuple(np.fft.fftfreq(n).astype(np.float32).tolist())


def near_dc(h: int, w: int) -> np.ndarray:
    """Bool mask (DFT layout, DC at [0, 0]) of the bins within 2 of DC, circularly: slow shading,
    which :func:`dominant_period` leaves out."""
    fy = np.fft.fftfreq(h, 1 / h).round()[:, None]
    fx = np.fft.fftfreq(w, 1 / w).round()[None, :]
    return fy ** 2 + fx ** 2 <= 4


def dominant_period(img: np.ndarray, spec: Spectrum | None = None) -> dict[str, float]:
    """Period (pixels), wave-vector orientation (degrees, [0, 180)) and periodicity of the strongest peak.

    Frequencies within 2 bins of DC (shading) are ignored. ``periodicity`` is the share of the
    non-DC power in the peak and its 3 x 3 neighbourhood (and its mirror): near 1 for clean
    line/space patterns, near 0 for noise. ``spec`` may pass a precomputed :func:`spectrum`.
    """
    if spec is None:
        spec = spectrum(img)
    d = spec.dft
    h, w = d.shape[:2]
    # the power re^2 + im^2 of every bin, those within 2 bins of DC as zero (slow shading, not texture)
    # and the peak: its 3x3 neighbours and its conjugate twin's, with wrap-around
    from .pixelstats import spectral_peak

    total, ky, kx, peak = spectral_peak(d)
    if total <= 0:
        return {"period_px": 0.0, "orientation_deg": 0.0, "periodicity": 0.0}
    vy, vx = _freqs(h)[ky], _freqs(w)[kx]
    ang = math.degrees(math.atan2(vy, vx)) % 180.0
    return {"period_px": float(spec.factor / math.hypot(vy, vx)), "orientation_deg": float(ang),
            "periodicity": float(min(peak / total, 1.0))}


def snr_db(img: np.ndarray, sigma_noise: float | None = None) -> float:
    """20 log10(signal std / noise std), with signal variance = total variance - noise variance.

    Clipped to [-20, 60] dB so that noise-free synthetic images do not report infinity.
    """
    st = _stats(img)
    return _snr(_grey_var(st), _noise_sigma(st) if sigma_noise is None else sigma_noise)


def _snr(var: float, sn: float) -> float:
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
    st = _stats(img)
    out = _grey(st)
    out["sharpness"] = _sharpness(st)
    out["noise_sigma"] = _noise_sigma(st)
    out["entropy"] = st.entropy
    out.update(_glcm(st))
    out["edge_density"] = edge_density(img)
    out.update(dominant_period(img, spec))
    out["snr_db"] = _snr(_grey_var(st), out["noise_sigma"])
    return {k: round(float(out[k]), 6) for k in METRIC_NAMES}
