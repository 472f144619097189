"""Per-image seeds derived from one master seed, independent of workers and shards."""

from __future__ import annotations

import zlib

import numpy as np


def label_key(label: str) -> int:
    """A stable 32-bit integer for a label (CRC32 of its UTF-8 bytes)."""
    return zlib.crc32(label.encode("utf-8")) & 0xFFFFFFFF


#: Every per-image seed is below this: a signed 64-bit integer, which Arrow (Hugging Face
#: ``datasets``), pandas and JSON readers keep exact (an unsigned one above 2^63 is read as float64).
SEED_LIMIT = 1 << 63


def image_seed(master_seed: int, label: str, index: int) -> int:
    """The seed of image ``index`` of class ``label`` under ``master_seed``, in ``[0, 2^63)``.

    Derived through :class:`numpy.random.SeedSequence` from (master seed, label, index), so an
    image's seed does not depend on which worker or shard makes it. The top bit of the 64-bit
    state is dropped (procedural generator versions before clean/bridge/open 5 and the other
    classes 4 used all 64 bits).

    Examples
    --------
    >>> s = image_seed(0, "bridge", 5)
    >>> 0 <= s < SEED_LIMIT and s == image_seed(0, "bridge", 5)
    True
    """
    ss = np.random.SeedSequence([int(master_seed) & 0xFFFFFFFFFFFFFFFF, label_key(label), int(index)])
    hi, lo = (int(x) for x in ss.generate_state(2, dtype=np.uint32))
    return ((hi << 32) | lo) & (SEED_LIMIT - 1)


def rng_for(seed: int) -> np.random.Generator:
    """A PCG64 generator for a per-image seed."""
    return np.random.Generator(np.random.PCG64(int(seed)))
