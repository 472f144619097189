"""Canny edges: the one implementation (OpenCV's), used by curation's ``edge_density`` and by
refinement's edge agreement.

Examples
--------
>>> import numpy as np
>>> img = np.zeros((32, 32), np.uint8)
>>> img[:, 16:] = 200
>>> e = canny(img)
>>> e.dtype, bool(e[:, 15:17].any()), bool(e[:, :10].any())
(dtype('bool'), True, False)
"""

from __future__ import annotations

import cv2
import numpy as np


def canny(img: np.ndarray, sigma: float = 1.0, low: float = 30, high: float = 90, *,
          quantiles: bool = False, l2: bool = False) -> np.ndarray:
    """Canny edge map of an 8-bit gray image, after a Gaussian blur.

    Parameters
    ----------
    img : ndarray, uint8 (H, W)
    sigma : float
        Gaussian blur, pixels (0: none).
    low, high : float
        Hysteresis thresholds on the Sobel gradient magnitude (3 x 3) of the blurred image, or,
        with ``quantiles``, the quantiles of that magnitude over the image that set them (e.g.
        0.75, 0.90), so the edge density does not depend on the contrast.
    l2 : bool
        Magnitude ``sqrt(dx^2 + dy^2)`` (scikit-image's) instead of ``|dx| + |dy|`` (OpenCV's default).

    Returns
    -------
    ndarray, bool (H, W)
        Exactly ``cv2.Canny(blurred, low, high) > 0`` for absolute thresholds.
    """
    img = np.ascontiguousarray(img, dtype=np.uint8)
    blur = cv2.GaussianBlur(img, (0, 0), float(sigma)) if sigma > 0 else img
    dx = cv2.Sobel(blur, cv2.CV_16S, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    dy = cv2.Sobel(blur, cv2.CV_16S, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    if quantiles:
        gx, gy = dx.astype(np.float64), dy.astype(np.float64)
        mag = np.hypot(gx, gy) if l2 else np.abs(gx) + np.abs(gy)
        low, high = (_at_or_above(float(v), l2) for v in np.quantile(mag, [low, high]))
    return cv2.Canny(dx, dy, float(low), float(high), L2gradient=l2) > 0


def _at_or_above(q: float, l2: bool) -> float:
    """The OpenCV threshold that keeps magnitudes ``>= q``.

    OpenCV keeps ``m > floor(t)`` (``t`` squared first with ``L2gradient``), on integer ``m``
    (``|dx| + |dy|``, or ``dx^2 + dy^2``). A quantile threshold must keep the pixels *at* the
    quantile: on a simple image the 0.9 quantile is often the largest magnitude itself, and a strict
    ``>`` then finds no edge at all.
    """
    if l2:
        return float(np.sqrt(max(np.ceil(q * q) - 0.5, 0.0)))
    return max(float(np.ceil(q)) - 0.5, 0.0)
