"""Realism distances (KID, paired KID, precision / recall) on synthetic feature sets (bench/realism.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from realism import kid, normalize_features, paired_kid, precision_recall  # noqa: E402


def _gauss(n, d=16, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(0, 1, (n, d)) + shift


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    ref = _gauss(200, seed=1)
    same, _ = kid(_gauss(200, seed=2), ref, subsets=20, subset_size=100)
    near, _ = kid(_gauss(200, shift=0.3, seed=3), ref, subsets=20, subset_size=100)
    far, _ = kid(_gauss(200, shift=1.0, seed=4), ref, subsets=20, subset_size=100)
    assert abs(same) < near < far


def test_paired_kid_sees_a_change_toward_the_reference():
    ref = _gauss(150, seed=1)
    a = _gauss(150, shift=0.6, seed=2)
    closer = paired_kid(a, a - 0.4, ref, boot=200)  # every image moved most of the way to the reference
    assert closer["diff"] < 0 and closer["diff_ci95"][1] < 0 and closer["p_b_not_closer"] == 0.0
    assert closer["kid_b"] < closer["kid_a"]
    same = paired_kid(a, a.copy(), ref, boot=50)
    assert same["diff"] == 0.0 and same["diff_ci95"] == [0.0, 0.0]
    noisy = paired_kid(a, a + np.random.default_rng(5).normal(0, 0.05, a.shape), ref, boot=200)
    assert noisy["diff_ci95"][0] < 0 < noisy["diff_ci95"][1]  # a change that moves nothing: interval spans 0


def test_normalize_features():
    f = _gauss(10, d=9, shift=3.0)
    assert normalize_features(f, "raw") is not None and np.allclose(normalize_features(f, "raw"), f)
    assert np.allclose(np.linalg.norm(normalize_features(f, "l2"), axis=1), 3.0)
    with pytest.raises(ValueError):
        normalize_features(f, "zscore")


def test_precision_recall_bounds():
    ref = _gauss(100, seed=1)
    p, r = precision_recall(ref, _gauss(100, seed=2))
    assert p > 0.6 and r > 0.6  # k = 3 in 16-d: ~0.7 for two samples of one distribution
    p, r = precision_recall(ref, _gauss(100, shift=10.0, seed=3))
    assert p == 0.0 and r == 0.0
