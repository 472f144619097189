"""Near-duplicates: a re-noised copy is one, a different bridge on the same pattern is not."""

import numpy as np
import pytest
from curation_synth import lines

from semgen.curation.analyze import analyze_image, dihedral_variants, thumb_from_bytes, thumb_noise
from semgen.curation.dedup import HASH_RADIUS, NearDupParams, cross_pairs, near_duplicate_pairs
from semgen.curation.hashing import hamming, pixel_digest


def _sigs(imgs):
    an = [analyze_image(im) for im in imgs]
    return ([a["hashes"]["shash"] for a in an], [a["hashes"]["phash"] for a in an],
            np.stack([thumb_from_bytes(a["thumb"]) for a in an]), np.array([thumb_noise(a) for a in an]))


def test_bridge_vs_renoised_copy():
    a = lines(size=128, bridge=(40, 30), noise_seed=1)
    a_renoised = lines(size=128, bridge=(40, 30), noise_seed=2)
    b_other_bridge = lines(size=128, bridge=(80, 90), noise_seed=3)
    c_near_bridge = lines(size=128, bridge=(41, 70), noise_seed=4)
    sh, ph, thumbs, noise = _sigs([a, a_renoised, b_other_bridge, c_near_bridge])
    # the hash alone would call the other bridges duplicates too: all within the default radius
    assert max(hamming(sh[0], h) for h in sh[1:]) <= HASH_RADIUS
    params = NearDupParams(hash_radius=24, phash_radius=24)  # let every pair through to the verification
    res = near_duplicate_pairs(sh, ph, thumbs, noise, params)
    assert res["candidates"] == 6
    assert list(zip(res["i"].tolist(), res["j"].tolist())) == [(0, 1)]


@pytest.mark.parametrize("size", [64, 128, 256])
def test_renoised_copies_at_several_noise_levels(size):
    for noise in (4.0, 12.0, 20.0):
        k = size / 64
        imgs = [lines(size, bridge=(20 * k, 15 * k), noise_seed=s, noise=noise) for s in (1, 2)]
        imgs.append(lines(size, bridge=(40 * k, 45 * k), noise_seed=3, noise=noise))  # another bridge
        imgs.append(lines(size, ler_seed=5, bridge=(20 * k, 15 * k), noise_seed=4, noise=noise))  # other roughness
        res = near_duplicate_pairs(*_sigs(imgs))  # default radii and limits
        assert list(zip(res["i"].tolist(), res["j"].tolist())) == [(0, 1)], (size, noise)


def test_unrelated_images_are_not_duplicates():
    rng = np.random.default_rng(0)
    noise_imgs = [rng.integers(0, 256, (64, 64), dtype=np.uint8) for _ in range(4)]
    res = near_duplicate_pairs(*_sigs(noise_imgs), NearDupParams(hash_radius=64, phash_radius=64))
    assert len(res["i"]) == 0  # differ everywhere: the RMS limit stops them


def test_cross_pairs_find_flipped_and_brightened_copies():
    test = [lines(size=96, ler_seed=k, bridge=(20 + 10 * k, 40), noise_seed=10 + k) for k in range(3)]
    flipped = dihedral_variants(lines(size=96, ler_seed=1, bridge=(30, 40), noise_seed=99))[3]
    brighter = np.clip(lines(size=96, ler_seed=2, bridge=(40, 40), noise_seed=98).astype(int) * 1.1 + 5, 0, 255)
    queries = [flipped, brighter.astype(np.uint8), lines(size=96, ler_seed=7, bridge=(50, 50))]
    variants = [v for im in test for v in dihedral_variants(im)]
    res = cross_pairs(*_sigs(queries), *_sigs(variants))
    found = sorted({(int(q), int(r) // 8) for q, r in zip(res["q"], res["r"])})
    assert found == [(0, 1), (1, 2)]


def test_pixel_digest_exact():
    a = lines(size=32)
    assert pixel_digest(a) == pixel_digest(a.copy())
    b = a.copy()
    b[0, 0] ^= 1
    assert pixel_digest(a) != pixel_digest(b)
    assert pixel_digest(a.reshape(16, 64)) != pixel_digest(a)
