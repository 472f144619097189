"""Pictures the app shows: mask overlays, bounding boxes, thumbnails, saliency heat maps.

Pure functions from arrays to arrays (uint8 RGB out), so every page draws the same way and the
pictures can be tested without a browser.

Examples
--------
>>> import numpy as np
>>> img = np.full((8, 8), 100, np.uint8)
>>> mask = np.zeros((8, 8), np.uint16); mask[2:4, 2:5] = 1
>>> rgb = overlay(img, mask, [[2, 2, 5, 4]])
>>> rgb.shape, rgb.dtype
((8, 8, 3), dtype('uint8'))
"""

from __future__ import annotations

import cv2
import numpy as np

#: Instance colours (RGB), cycled: distinct on a gray SEM image and for common colour blindness.
PALETTE = np.array([(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                    (213, 94, 0), (204, 121, 167)], np.uint8)
#: The box colour: one colour for every box, so boxes read apart from the filled masks.
BOX_RGB = (255, 40, 40)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A 2-D uint8 gray image as ``uint8 (H, W, 3)`` (an RGB input is returned as a copy).

    Parameters
    ----------
    image : ndarray, uint8, shape (H, W) or (H, W, 3)
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"to_rgb wants uint8, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 3:
        return a.copy()
    if a.ndim != 2:
        raise ValueError(f"to_rgb wants a 2-D gray image, got shape {a.shape}")
    return np.repeat(a[:, :, None], 3, axis=2)


def overlay(image: np.ndarray, mask: np.ndarray | None = None, bboxes=None, *, alpha: float = 0.45) -> np.ndarray:
    """The image with each mask instance tinted in its own colour and the boxes drawn on top.

    Parameters
    ----------
    image : ndarray, uint8, shape (H, W)
    mask : ndarray of int, shape (H, W), optional
        Instance mask: 0 background, k > 0 instance k (the dataset dir's mask convention). A mask
        of another size is resized (nearest) onto the image.
    bboxes : list of [x0, y0, x1, y1], optional
        Pixel boxes, ``x1``/``y1`` exclusive (as the records store them).
    alpha : float
        Opacity of the tint.

    Returns
    -------
    ndarray, uint8, shape (H, W, 3)
    """
    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    if mask is not None:
        m = np.asarray(mask)
        if m.ndim == 3:  # an RGB(A) mask file: any non-zero channel is "defect"
            m = m.max(axis=2)
        if m.shape != (h, w):
            m = cv2.resize(m.astype(np.int32).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        m = m.astype(np.int64)
        on = m > 0
        if on.any():
            colours = PALETTE[(m[on] - 1) % len(PALETTE)].astype(np.float32)
            rgb[on] = np.clip((1 - alpha) * rgb[on].astype(np.float32) + alpha * colours + 0.5, 0, 255).astype(np.uint8)
    for box in bboxes or ():
        x0, y0, x1, y1 = (int(round(float(v))) for v in box[:4])
        x0, y0 = max(0, min(w - 1, x0)), max(0, min(h - 1, y0))
        x1, y1 = max(0, min(w - 1, x1 - 1)), max(0, min(h - 1, y1 - 1))
        cv2.rectangle(rgb, (x0, y0), (x1, y1), BOX_RGB, max(1, round(min(h, w) / 256)))
    return rgb


def enlarge(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """The image scaled up by a whole factor (nearest neighbour) until its short side is at least
    ``min_side``: a 40-pixel image stays legible on a page, and its pixels stay pixels.

    >>> enlarge(np.zeros((40, 30), np.uint8), 256).shape
    (360, 270)
    """
    a = np.asarray(image)
    k = max(1, -(-int(min_side) // max(1, min(a.shape[:2]))))
    return a if k == 1 else np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """A ``side`` x ``side`` copy of a gray image: the whole image, scaled to fit, centred on black.

    Area averaging when shrinking keeps the SEM noise from aliasing into stripes.
    """
    a = np.asarray(image)
    h, w = a.shape[:2]
    s = side / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(a, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    out = np.zeros((side, side) + a.shape[2:], np.uint8)
    y, x = (side - nh) // 2, (side - nw) // 2
    out[y:y + nh, x:x + nw] = small
    return out


def placeholder(side: int, text: str) -> np.ndarray:
    """A gray ``side`` x ``side`` RGB tile crossed out, with a short word: an image that did not load."""
    t = np.full((side, side, 3), 60, np.uint8)
    cv2.line(t, (0, 0), (side - 1, side - 1), (150, 60, 60), 2)
    cv2.line(t, (0, side - 1), (side - 1, 0), (150, 60, 60), 2)
    scale = max(0.3, side / 260)
    for i, word in enumerate(str(text).replace("_", " ").split()[:3]):
        cv2.putText(t, word, (4, 14 + i * int(16 * scale * 2.2)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return t


def heatmap(image: np.ndarray, saliency: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """The gray image under a saliency map in the 'turbo' colour map (blue low, red high).

    Parameters
    ----------
    image : ndarray, uint8, shape (H, W)
    saliency : ndarray of float, any 2-D shape
        Resized (bilinear) to the image; scaled to [0, 1] by its own maximum (a map of zeros stays
        blue).
    """
    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    s = np.asarray(saliency, np.float32)
    if s.shape != (h, w):
        s = cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR)
    s = np.clip(s, 0, None)
    top = float(s.max())
    s = s / top if top > 0 else s
    colour = cv2.applyColorMap(np.round(s * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[:, :, ::-1]
    return np.clip((1 - alpha) * rgb + alpha * colour.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
