"""The residual pHash that curation tried and dropped, kept for ``bench_curation.py residual``.

Hashing an image after notching its periodic pattern's Fourier peaks out did not tell two bridges
on the same line/space pattern apart (10 vs 10-12 bits; docs/curation.md), so curation verifies
hash candidates on thumbnails instead (:mod:`semgen.curation.dedup`). This is the measured
alternative, not library code.
"""

from __future__ import annotations

import cv2
import numpy as np

from semgen.curation.hashing import bits_to_int
from semgen.curation.metrics import Spectrum, near_dc, spectrum

#: Bins whose power exceeds this share of the strongest non-DC peak are part of the pattern.
NOTCH_REL = 2e-3
#: ... and this multiple of the median power (the noise floor), so pure noise is never notched.
NOTCH_FLOOR = 30.0


def dct_hash(a: np.ndarray, size: int = 32, low: int = 8) -> int:
    """pHash of a float image: ``size`` x ``size`` area average, DCT, ``low`` x ``low`` block > median."""
    small = cv2.resize(np.asarray(a, np.float32), (size, size), interpolation=cv2.INTER_AREA)
    d = cv2.dct(small)[:low, :low]
    return bits_to_int(d > np.median(d))


def pattern_mask(spec: Spectrum, rel: float = NOTCH_REL, floor: float = NOTCH_FLOOR) -> np.ndarray:
    """Boolean mask (DFT layout) of the periodic pattern's peaks, dilated by one bin for leakage."""
    p = spec.power
    h, w = p.shape
    low = near_dc(h, w)
    ac = np.where(low, np.float32(0), p)
    top = float(ac.max())
    if top <= 0:
        return np.zeros_like(low)
    thresh = max(rel * top, floor * float(np.median(ac)))
    mask = (ac > thresh).astype(np.uint8)
    if not mask.any():
        return mask.astype(bool)
    # dilate with wrap-around (the DFT is periodic): roll instead of cv2.dilate's border
    m = mask.astype(bool)
    m = m | np.roll(m, 1, 0) | np.roll(m, -1, 0)
    m = m | np.roll(m, 1, 1) | np.roll(m, -1, 1)
    return m & ~low


def periodic_residual(img: np.ndarray, spec: Spectrum | None = None) -> np.ndarray:
    """The image (area-downsampled like :func:`semgen.curation.metrics.spectrum`) minus its periodic pattern.

    Returns a float32 array; DC and the lowest frequencies (shading) are kept.
    """
    if spec is None:
        spec = spectrum(img)
    keep = ~pattern_mask(spec)
    d = spec.dft * keep[..., None].astype(np.float32)
    return cv2.idft(d, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)


def residual_hash(img: np.ndarray, spec: Spectrum | None = None) -> int:
    """64-bit pHash of :func:`periodic_residual`: separates defects on a shared pattern."""
    return dct_hash(periodic_residual(img, spec))
