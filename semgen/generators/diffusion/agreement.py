"""How much of an input's geometry survives refinement: edge and segmentation agreement, in and
outside the defect mask.

All functions take uint8 (H, W) images of the same shape and a mask (H, W) (0 = background).
"""

from __future__ import annotations

import cv2
import numpy as np

from ...edges import canny

#: Pixels the defect mask is grown by before measuring "inside": edges of a defect sit on its border.
MASK_GROW_PX = 3


def edge_map(img: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Canny edges (bool) with quantile thresholds, so the edge density does not depend on contrast."""
    return canny(img, sigma, 0.75, 0.90, quantiles=True, l2=True)


def _iou(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float | None:
    a, b = a & region, b & region
    union = np.count_nonzero(a | b)
    if union == 0:
        return None
    return float(np.count_nonzero(a & b) / union)


def _grow(m: np.ndarray, px: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(m.astype(np.uint8), k) > 0


def mask_agreement(before: np.ndarray, after: np.ndarray, mask: np.ndarray | None = None, *,
                   tolerance_px: int = 1) -> dict:
    """Agreement between an input image and its refined output.

    Returns
    -------
    dict
        ``edge_iou``: IoU of the edge maps (each grown by ``tolerance_px``) over the whole image;
        ``edge_iou_in`` / ``edge_iou_out``: the same inside / outside the defect mask (grown by
        :data:`MASK_GROW_PX`); ``seg_iou_in``: IoU of the Otsu-thresholded bright phase inside the
        mask; ``corr_in``: Pearson correlation of the pixel values inside the mask. ``*_in`` are
        None without a (non-empty) mask.
    """
    if before.shape != after.shape:
        raise ValueError(f"shapes differ: {before.shape} vs {after.shape}")
    ea, eb = _grow(edge_map(before), tolerance_px), _grow(edge_map(after), tolerance_px)
    everywhere = np.ones(before.shape, bool)
    out = {"edge_iou": _iou(ea, eb, everywhere)}
    region = _grow(mask > 0, MASK_GROW_PX) if mask is not None and np.any(mask) else None
    if region is None:
        out.update(edge_iou_in=None, edge_iou_out=out["edge_iou"], seg_iou_in=None, corr_in=None)
    else:
        out["edge_iou_in"] = _iou(ea, eb, region)
        out["edge_iou_out"] = _iou(ea, eb, ~region)
        ta, _ = cv2.threshold(before, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        tb, _ = cv2.threshold(after, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        out["seg_iou_in"] = _iou(before > ta, after > tb, region)
        va, vb = before[region].astype(np.float64), after[region].astype(np.float64)
        out["corr_in"] = float(np.corrcoef(va, vb)[0, 1]) if va.std() > 0 and vb.std() > 0 else None
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def summarize_agreement(rows: list[dict]) -> dict:
    """Mean (and count) of each agreement metric over the images where it is defined."""
    keys = ("edge_iou", "edge_iou_in", "edge_iou_out", "seg_iou_in", "corr_in")
    s = {}
    for k in keys:
        v = [r[k] for r in rows if r.get(k) is not None]
        s[k] = round(float(np.mean(v)), 4) if v else None
        s[f"{k}_n"] = len(v)
    return s
