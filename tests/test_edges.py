"""One Canny (semgen.edges), behind curation's edge_density and refinement's edge agreement."""

from __future__ import annotations

import cv2
import numpy as np

from semgen.curation.metrics import edge_density
from semgen.edges import canny
from semgen.generators.diffusion.agreement import edge_map, mask_agreement


def _img(seed, shape=(64, 80)):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, shape, dtype=np.uint8), (0, 0), float(rng.uniform(0.7, 3)))
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def test_absolute_thresholds_are_opencvs_canny_exactly():
    for seed in range(20):
        img = _img(seed)
        for sigma, lo, hi in ((1.0, 30, 90), (0, 50, 150), (2.0, 10, 40)):
            blur = cv2.GaussianBlur(img, (0, 0), sigma) if sigma else img
            assert np.array_equal(canny(img, sigma, lo, hi), cv2.Canny(blur, lo, hi) > 0)
    # curation's metric is that map's density, so cached analyses keep their values
    img = _img(99, (256, 256))
    small = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    assert edge_density(img) == np.count_nonzero(cv2.Canny(cv2.GaussianBlur(small, (0, 0), 1.0), 30, 90)) / 128 ** 2


def test_quantile_thresholds_do_not_depend_on_contrast():
    img = _img(3)
    low_contrast = (img // 4 + 96).astype(np.uint8)
    a, b = canny(img, 2.0, 0.75, 0.9, quantiles=True, l2=True), canny(low_contrast, 2.0, 0.75, 0.9, quantiles=True, l2=True)
    assert 0.03 < a.mean() < 0.3 and abs(a.mean() - b.mean()) < 0.02
    assert np.count_nonzero(a & b) / np.count_nonzero(a | b) > 0.6
    assert np.array_equal(edge_map(img), a)
    assert mask_agreement(img, img)["edge_iou"] == 1.0
