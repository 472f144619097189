"""Near-duplicate detection: hash candidates from Hamming indexes, verified on thumbnails.

Why two stages: no 64-bit hash separates "the same pattern with another defect" from "the same
image with other noise" (measured: ``python bench/bench_curation.py residual``). So hashes only
*propose* pairs: the thumbnail SimHash within ``hash_radius`` bits, or imagehash's pHash within
``phash_radius`` bits (:class:`~.index.HammingIndex`, no all-pairs comparison). Each proposal is
*verified* on the two 32 x 32 area-averaged thumbnails, z-scored: their difference must be what
the two images' own noise explains.

- ``rms`` of the difference at most ``noise_ratio`` times the RMS that the measured noise of the
  two images predicts (``noise_sigma`` / pixels averaged, / thumbnail std), or ``rms_floor``,
  whichever is larger, and never more than ``max_rms``;
- its largest deviation at most ``max_local`` robust sigmas.

``python bench/bench_curation.py verify`` measures both on line/space images (64-256 px, noise
sigma 4-25): re-noised copies stay at or below 4.1 sigmas and 1.03 times the predicted RMS;
another bridge on the same pattern reaches 6 or more sigmas; another line roughness 1.3 or more
times the predicted RMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .index import HammingIndex, as_hash_array, popcount64

#: Default SimHash radius (bits of 64) within which a pair is a candidate.
HASH_RADIUS = 10
#: Default pHash radius within which a pair is also a candidate.
PHASH_RADIUS = 8
#: Default largest local deviation (robust sigmas of the difference) of a near-duplicate.
MAX_LOCAL = 5.0
#: Default ratio of the difference RMS to the RMS the two images' noise predicts.
NOISE_RATIO = 1.15
#: Difference RMS (z units) always allowed: resampling and compression of noise-free images.
RMS_FLOOR = 0.1
#: The same floor for a leak: a generator's copy of a test image is rarely that exact.
LEAK_RMS_FLOOR = 0.25
#: Difference RMS (z units) never allowed, whatever the noise: unrelated images are about 1.4.
MAX_RMS = 0.6
#: Noise floor of the robust sigma (z units), so that noise-free copies are not over-sensitive.
SIGMA_FLOOR = 0.02


@dataclass
class NearDupParams:
    hash_radius: int = HASH_RADIUS
    phash_radius: int = PHASH_RADIUS
    max_local: float = MAX_LOCAL
    noise_ratio: float = NOISE_RATIO
    rms_floor: float = RMS_FLOOR
    leak_rms_floor: float = LEAK_RMS_FLOOR
    max_rms: float = MAX_RMS


def zscore_thumbs(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, P) thumbnails (grey levels) -> (z-scored float32 rows, their standard deviations)."""
    t = np.asarray(thumbs, np.float32)
    t = t - t.mean(axis=1, keepdims=True)
    sd = np.maximum(t.std(axis=1), 1e-3)
    return t / sd[:, None], sd


def thumb_stats(za: np.ndarray, zb: np.ndarray, ia: np.ndarray, ib: np.ndarray, batch: int = 8192):
    """(local, rms) difference statistics of the pairs (za[ia[k]], zb[ib[k]])."""
    local = np.empty(len(ia), np.float32)
    rms = np.empty(len(ia), np.float32)
    for s in range(0, len(ia), batch):
        d = za[ia[s:s + batch]] - zb[ib[s:s + batch]]
        d -= np.median(d, axis=1, keepdims=True)
        dev = np.abs(d)
        sigma = np.maximum(1.4826 * np.median(dev, axis=1), SIGMA_FLOOR)
        local[s:s + batch] = dev.max(axis=1) / sigma
        rms[s:s + batch] = np.sqrt((d * d).mean(axis=1))
    return local, rms


def _verify(thumbs_a, noise_a, thumbs_b, noise_b, ia, ib, params: NearDupParams, rms_floor: float):
    za, sda = zscore_thumbs(thumbs_a)
    zb, sdb = (za, sda) if thumbs_b is None else zscore_thumbs(thumbs_b)
    nb = noise_a if noise_b is None else noise_b
    local, rms = thumb_stats(za, zb, ia, ib)
    expected = np.sqrt((np.asarray(noise_a)[ia] / sda[ia]) ** 2 + (np.asarray(nb)[ib] / sdb[ib]) ** 2)
    allowed = np.minimum(np.maximum(params.noise_ratio * expected, rms_floor), params.max_rms)
    ok = (local <= params.max_local) & (rms <= allowed)
    return ok, local, rms


def _union(parts, n: int):
    if not parts:
        e = np.zeros(0, np.int64)
        return e, e
    i = np.concatenate([p[0] for p in parts])
    j = np.concatenate([p[1] for p in parts])
    _, first = np.unique(i * max(n, 1) + j, return_index=True)
    return i[first], j[first]


def near_duplicate_pairs(shashes, phashes, thumbs: np.ndarray, noise, params: NearDupParams = NearDupParams()):
    """Verified near-duplicate pairs within one set.

    Parameters
    ----------
    shashes, phashes : SimHashes and pHashes (hex or ints), one per image
    thumbs : (N, 1024) thumbnails, grey levels
    noise : (N,) expected thumbnail noise sigma per image (:func:`~.analyze.thumb_noise`)

    Returns
    -------
    dict of arrays ``i``, ``j`` (i < j), ``hamming`` (SimHash bits), ``local``, ``rms``; plus
    ``candidates``, the number of pairs the indexes proposed.
    """
    sh, ph = as_hash_array(shashes), as_hash_array(phashes)
    parts = []
    if params.hash_radius >= 0:
        parts.append(HammingIndex(sh, params.hash_radius).pairs()[:2])
    if params.phash_radius >= 0:
        parts.append(HammingIndex(ph, params.phash_radius).pairs()[:2])
    i, j = _union(parts, len(sh))
    ok, local, rms = _verify(thumbs, noise, None, None, i, j, params, params.rms_floor)
    d = popcount64(sh[i] ^ sh[j])
    return {"i": i[ok], "j": j[ok], "hamming": d[ok], "local": local[ok], "rms": rms[ok],
            "candidates": int(len(i))}


def cross_pairs(shashes_q, phashes_q, thumbs_q, noise_q, shashes_ref, phashes_ref, thumbs_ref, noise_ref,
                params: NearDupParams = NearDupParams()):
    """Verified near-duplicates between a query set and a reference set (e.g. a test set).

    Uses ``params.leak_rms_floor``. Returns dict of arrays ``q`` (query index), ``r`` (reference
    index), ``hamming``, ``local``, ``rms``.
    """
    if len(shashes_ref) == 0 or len(shashes_q) == 0:
        e = np.zeros(0, np.int64)
        return {"q": e, "r": e, "hamming": e, "local": e.astype(np.float32), "rms": e.astype(np.float32)}
    sq, sr = as_hash_array(shashes_q), as_hash_array(shashes_ref)
    parts = []
    if params.hash_radius >= 0:
        parts.append(HammingIndex(sr, params.hash_radius).query(sq)[:2])
    if params.phash_radius >= 0:
        parts.append(HammingIndex(as_hash_array(phashes_ref), params.phash_radius).query(as_hash_array(phashes_q))[:2])
    q, r = _union(parts, len(sr))
    ok, local, rms = _verify(thumbs_q, noise_q, thumbs_ref, noise_ref, q, r, params, params.leak_rms_floor)
    d = popcount64(sq[q] ^ sr[r])
    return {"q": q[ok], "r": r[ok], "hamming": d[ok], "local": local[ok], "rms": rms[ok]}
