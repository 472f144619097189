"""Hashes for duplicate search: exact pixel digests, imagehash's pHash, and a SimHash of the thumbnail.

Measured on line/space images (``python bench/bench_curation.py residual`` and docs/curation.md):
pHash's 8 x 8 low-frequency block holds little of a fine periodic pattern, so its bits flip with
noise (a re-noised copy is often 8-12 bits away) and it cannot tell two bridges on the same
pattern apart either. Hashing the residual after notching out the pattern's Fourier peaks
(``bench/residual_hash.py``) did not separate them (10 vs 10-12 bits). :func:`simhash` (random
hyperplanes over the z-scored 32 x 32 thumbnail, Charikar 2002) is a locality-sensitive hash of
exactly the quantity the near-duplicate test compares: copies re-noised at sigma 12 stay within
7 bits, unrelated images are about 32 apart. No hash separates "same pattern, other defect" on
its own; :mod:`.dedup` verifies every candidate pair on the thumbnails.
"""

from __future__ import annotations

import functools
import hashlib

import cv2
import numpy as np
import scipy.fftpack
from PIL import Image

from .metrics import _check

def pixel_digest(img: np.ndarray) -> str:
    """Hex digest (128 bits) of the pixels and shape: equal iff the images are identical."""
    img = _check(img)  # C-contiguous already
    h = hashlib.blake2b(digest_size=16)
    h.update(np.array(img.shape, np.int64).tobytes())
    h.update(img.tobytes())
    return h.hexdigest()


def raw_phash(img: np.ndarray) -> int:
    """imagehash's 64-bit pHash of the image, as an unsigned int.

    Images larger than 64 px are first area-averaged to 64 x 64 with OpenCV (then resampled to
    32 x 32 as imagehash does): 4x cheaper at 256 px than PIL's Lanczos on the full image.
    The steps of ``imagehash.phash`` are done here directly (same PIL resampling, same scipy DCT,
    so the same bits; tests compare the two), without its image copy and hash object, which cost
    as much as the hash itself.

    Examples
    --------
    >>> f"{raw_phash(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))):016x}"
    '8000000000000000'
    """
    img = _check(img)
    if max(img.shape) > 64:
        img = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
    small = np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.LANCZOS))
    low = scipy.fftpack.dct(scipy.fftpack.dct(small, axis=0), axis=1)[:8, :8]
    return bits_to_int(low > np.median(low))


def bits_to_int(bits: np.ndarray) -> int:
    """64 booleans (row-major, first = most significant) -> unsigned int."""
    return int.from_bytes(np.packbits(np.asarray(bits, bool).ravel()).tobytes(), "big")


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
