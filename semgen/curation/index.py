"""Multi-index hashing: all pairs of 64-bit hashes within a Hamming radius, without comparing all pairs.

The 64 bits are cut into ``m`` chunks. If two hashes differ in at most ``r`` bits, then by the
pigeonhole principle at least one chunk differs in at most ``r // m`` bits (Norouzi et al., "Fast
search in Hamming space with multi-index hashing", CVPR 2012). Each chunk gets a direct-address
table (a counting sort: ``starts[value]`` .. ``starts[value + 1]`` in ``order``); a query probes,
in every chunk, every value within ``r // m`` bit flips of its own, and each candidate is checked
on the full 64 bits. ``m`` is chosen from a cost model so that buckets hold about one hash.
Everything is vectorised over the whole set of queries, one flip pattern at a time.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

#: Largest chunk width (bits): its table has 2**bits + 1 entries.
MAX_CHUNK_BITS = 24


def _chunk_widths(m: int) -> list[int]:
    base, extra = divmod(64, m)
    return [base + (1 if k < extra else 0) for k in range(m)]


def _n_probes(bits: int, s: int) -> int:
    return sum(math.comb(bits, k) for k in range(min(s, bits) + 1))


def choose_chunks(n: int, radius: int) -> int:
    """The number of chunks minimising probes + candidates per query (a simple cost model)."""
    best, best_cost = None, math.inf
    for m in range(1, 17):
        widths = _chunk_widths(m)
        if max(widths) > MAX_CHUNK_BITS:
            continue
        s = radius // m
        cost = 0.0
        for b in widths:
            probes = _n_probes(b, s)
            cost += probes * (1.0 + n / 2.0 ** b)
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def _flips(bits: int, s: int) -> list[int]:
    """All masks of ``bits`` bits with at most ``s`` ones."""
    out = [0]
    for k in range(1, min(s, bits) + 1):
        for combo in itertools.combinations(range(bits), k):
            out.append(sum(1 << b for b in combo))
    return out


_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], np.int16)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 (numpy >= 2 has it built in; a byte table otherwise)."""
    x = np.asarray(x, np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int16)
    return _BYTE_POP[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1).astype(np.int16)


def as_hash_array(hashes) -> np.ndarray:
    """Hex strings, ints or an array -> uint64 array."""
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64:
        return hashes
    out = np.empty(len(hashes), np.uint64)
    for k, h in enumerate(hashes):
        out[k] = int(h, 16) if isinstance(h, str) else int(h)
    return out


class HammingIndex:
    """Index of 64-bit hashes for radius-``radius`` Hamming search.

    Parameters
    ----------
    hashes : sequence of int / hex str, or uint64 array
    radius : int
        The largest Hamming distance that counts as a match (0-64).
    chunks : int, optional
        Number of chunks; chosen by :func:`choose_chunks` if omitted.
    """

    def __init__(self, hashes, radius: int, chunks: int | None = None):
        if not 0 <= radius <= 64:
            raise ValueError("radius must be in 0..64")
        self.hashes = as_hash_array(hashes)
        self.radius = int(radius)
        n = len(self.hashes)
        self.m = chunks or choose_chunks(max(n, 1), self.radius)
        self.widths = _chunk_widths(self.m)
        if max(self.widths) > MAX_CHUNK_BITS:
            raise ValueError(f"{self.m} chunks of 64 bits are wider than {MAX_CHUNK_BITS} bits; use more chunks")
        self.sub_radius = self.radius // self.m
        self.tables = []
        shift = 64
        for b in self.widths:
            shift -= b
            vals = ((self.hashes >> np.uint64(shift)) & np.uint64((1 << b) - 1)).astype(np.int64)
            counts = np.bincount(vals, minlength=1 << b)
            starts = np.zeros((1 << b) + 1, np.int64)
            np.cumsum(counts, out=starts[1:])
            order = np.argsort(vals, kind="stable").astype(np.int64)
            self.tables.append((shift, b, starts, order))

    def __len__(self) -> int:
        return len(self.hashes)

    def _candidates(self, queries: np.ndarray, *, self_join: bool):
        """Yield (query index, indexed item, distance) arrays for each chunk and flip pattern."""
        qn = np.arange(len(queries), dtype=np.int64)
        for shift, b, starts, order in self.tables:
            qv = ((queries >> np.uint64(shift)) & np.uint64((1 << b) - 1)).astype(np.int64)
            for flip in _flips(b, self.sub_radius):
                key = qv ^ flip
                lo = starts[key]
                cnt = starts[key + 1] - lo
                nz = np.flatnonzero(cnt)  # most probes of a sparse table hit empty buckets
                if nz.size == 0:
                    continue
                lo, cnt = lo[nz], cnt[nz]
                total = int(cnt.sum())
                qi = np.repeat(qn[nz], cnt)
                # position within each query's bucket: a ragged arange
                offs = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                items = order[np.repeat(lo, cnt) + offs]
                if self_join:
                    keep = qi < items
                    qi, items = qi[keep], items[keep]
                d = popcount64(queries[qi] ^ self.hashes[items])
                ok = d <= self.radius
                if ok.any():
                    yield qi[ok], items[ok], d[ok]

    @staticmethod
    def _unique(parts, n_items: int):
        if not parts:
            e = np.zeros(0, np.int64)
            return e, e, np.zeros(0, np.int16)
        qi = np.concatenate([p[0] for p in parts])
        it = np.concatenate([p[1] for p in parts])
        d = np.concatenate([p[2] for p in parts])
        key = qi * max(n_items, 1) + it
        _, first = np.unique(key, return_index=True)  # sorted by (query, item): deterministic
        return qi[first], it[first], d[first]

    def pairs(self):
        """All pairs ``(i, j, distance)`` with ``i < j`` within the radius, sorted by (i, j)."""
        return self._unique(list(self._candidates(self.hashes, self_join=True)), len(self))

    def query(self, hashes):
        """All ``(query index, item index, distance)`` within the radius, sorted by query then item."""
        q = as_hash_array(hashes)
        return self._unique(list(self._candidates(q, self_join=False)), len(self))


def brute_force_pairs(hashes, radius: int):
    """The all-pairs reference (O(n^2)); for tests and the benchmark's check only."""
    h = as_hash_array(hashes)
    ii, jj = np.triu_indices(len(h), 1)
    d = popcount64(h[ii] ^ h[jj])
    ok = d <= radius
    return ii[ok].astype(np.int64), jj[ok].astype(np.int64), d[ok]
