"""Hashes for duplicate search: exact pixel digests, imagehash's pHash, and a SimHash of the thumbnail.

Measured on line/space images (``python bench/bench_curation.py residual`` and docs/curation.md):
pHash's 8 x 8 low-frequency block holds little of a fine periodic pattern, so its bits flip with
noise (a re-noised copy is often 8-12 bits away) and it cannot tell two bridges on the same
pattern apart either. Hashing the residual after notching out the pattern's Fourier peaks
(:func:`residual_hash`) did not separate them (10 vs 10-12 bits). :func:`simhash` (random
hyperplanes over the z-scored 32 x 32 thumbnail, Charikar 2002) is a locality-sensitive hash of
exactly the quantity the near-duplicate test compares: copies re-noised at sigma 12 stay within
7 bits, unrelated images are about 32 apart. No hash separates "same pattern, other defect" on
its own; :mod:`.dedup` verifies every candidate pair on the thumbnails.
"""

from __future__ import annotations

import functools
import hashlib

import cv2
import imagehash
import numpy as np
from PIL import Image

from .metrics import Spectrum, _check, _freq_grid, spectrum

#: Bins whose power exceeds this share of the strongest non-DC peak are part of the pattern.
NOTCH_REL = 2e-3
#: ... and this multiple of the median power (the noise floor), so pure noise is never notched.
NOTCH_FLOOR = 30.0


def pixel_digest(img: np.ndarray) -> str:
    """Hex digest (128 bits) of the pixels and shape: equal iff the images are identical."""
    img = np.ascontiguousarray(_check(img))
    h = hashlib.blake2b(digest_size=16)
    h.update(np.array(img.shape, np.int64).tobytes())
    h.update(img.tobytes())
    return h.hexdigest()


def raw_phash(img: np.ndarray) -> int:
    """imagehash's 64-bit pHash of the image, as an unsigned int.

    Images larger than 64 px are first area-averaged to 64 x 64 with OpenCV (imagehash then
    resamples to 32 x 32): 4x cheaper at 256 px than PIL's Lanczos on the full image.
    """
    img = _check(img)
    if max(img.shape) > 64:
        img = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
    bits = imagehash.phash(Image.fromarray(img)).hash.ravel()
    return bits_to_int(bits)


def bits_to_int(bits: np.ndarray) -> int:
    """64 booleans (row-major, first = most significant) -> unsigned int."""
    return int.from_bytes(np.packbits(np.asarray(bits, bool).ravel()).tobytes(), "big")


def dct_hash(a: np.ndarray, size: int = 32, low: int = 8) -> int:
    """pHash of a float image: ``size`` x ``size`` area average, DCT, ``low`` x ``low`` block > median."""
    small = cv2.resize(np.asarray(a, np.float32), (size, size), interpolation=cv2.INTER_AREA)
    d = cv2.dct(small)[:low, :low]
    return bits_to_int(d > np.median(d))


def pattern_mask(spec: Spectrum, rel: float = NOTCH_REL, floor: float = NOTCH_FLOOR) -> np.ndarray:
    """Boolean mask (DFT layout) of the periodic pattern's peaks, dilated by one bin for leakage."""
    p = spec.power
    h, w = p.shape
    _, _, low = _freq_grid(h, w)
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
    """The image (area-downsampled like :func:`~.metrics.spectrum`) minus its periodic pattern.

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


#: Seed of the SimHash hyperplanes (part of the hash definition: changing it changes every hash).
SIMHASH_SEED = 20240611


@functools.lru_cache(maxsize=4)
def _hyperplanes(dim: int, bits: int = 64) -> np.ndarray:
    return np.random.default_rng(SIMHASH_SEED).standard_normal((bits, dim)).astype(np.float32)


def simhash(thumb: np.ndarray) -> int:
    """64-bit SimHash of a thumbnail: the signs of 64 fixed random projections of its mean-removed pixels.

    Two thumbnails at angle ``theta`` (in mean-removed pixel space) differ in each bit with
    probability ``theta / pi``.
    """
    t = np.asarray(thumb, np.float32).ravel()
    t = t - t.mean()
    return bits_to_int(_hyperplanes(t.size) @ t > 0)


def hamming(a: int | str, b: int | str) -> int:
    """Hamming distance of two 64-bit hashes (ints or hex strings)."""
    if isinstance(a, str):
        a = int(a, 16)
    if isinstance(b, str):
        b = int(b, 16)
    return (a ^ b).bit_count()
