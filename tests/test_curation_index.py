"""Multi-index hashing returns exactly the brute-force pairs, without comparing all pairs."""

import numpy as np
import pytest

from semgen.curation.index import HammingIndex, brute_force_pairs, choose_chunks


def planted(n=3000, pairs=300, max_flips=12, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    for k in range(0, 2 * pairs, 2):
        bits = rng.choice(64, rng.integers(0, max_flips + 1), replace=False)
        h[k + 1] = h[k] ^ np.uint64(sum(1 << int(b) for b in bits))
    return h


@pytest.mark.parametrize("radius", [0, 1, 4, 8, 12])
def test_pairs_equal_brute_force(radius):
    h = planted()
    idx = HammingIndex(h, radius)
    got = idx.pairs()
    want = brute_force_pairs(h, radius)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert len(got[0]) >= 1


@pytest.mark.parametrize("chunks", [3, 4, 7])
def test_forced_chunk_counts(chunks):
    h = planted(n=800, pairs=100, seed=1)
    got = HammingIndex(h, 6, chunks=chunks).pairs()
    want = brute_force_pairs(h, 6)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_query_against_other_set():
    h = planted(n=1000, pairs=0, seed=2)
    rng = np.random.default_rng(3)
    q = h[:50].copy() ^ np.uint64(1 << 5) ^ np.uint64(1 << 40)  # 2 bits from their originals
    q = np.concatenate([q, rng.integers(0, 2**64, 20, dtype=np.uint64)])
    qi, it, d = HammingIndex(h, 3).query(q)
    hits = set(zip(qi.tolist(), it.tolist()))
    assert {(k, k) for k in range(50)} <= hits
    assert all(x == 2 for x in d[qi < 50][it[qi < 50] == qi[qi < 50]])
    assert HammingIndex(h, 3).query([]) [0].size == 0


def test_hex_input_empty_and_cost_model():
    assert HammingIndex(["00000000000000ff", "00000000000000fe"], 1).pairs()[0].tolist() == [0]
    assert len(HammingIndex([], 4).pairs()[0]) == 0
    # more hashes -> wider chunks (buckets of about one hash)
    assert choose_chunks(10_000, 8) >= choose_chunks(1_000_000, 8)
    with pytest.raises(ValueError):
        HammingIndex([1, 2], 65)
    with pytest.raises(ValueError):
        HammingIndex([1, 2], 4, chunks=1)  # a 64-bit table
