"""Per-image seeds derived from one master seed, independent of workers and shards."""

from __future__ import annotations

import zlib

import numpy as np


def label_key(label: str) -> int:
    """A stable 32-bit integer for a label (CRC32 of its UTF-8 bytes)."""
    return zlib.crc32(label.encode("utf-8")) & 0xFFFFFFFF


def image_seed(master_seed: int, label: str, index: int) -> int:
    """The seed of image ``index`` of class ``label`` under ``master_seed``.

    Derived through :class:`numpy.random.SeedSequence` from (master seed, label, index), so an
    image's seed does not depend on which worker or shard makes it.
    """
    ss = np.random.SeedSequence([int(master_seed) & 0xFFFFFFFFFFFFFFFF, label_key(label), int(index)])
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1 << 32, 1], dtype=np.uint64))


def rng_for(seed: int) -> np.random.Generator:
    """A PCG64 generator for a per-image seed."""
    return np.random.Generator(np.random.PCG64(int(seed)))
