"""Nuisance overlays that real SEM figures carry, independent of the class: an SEM info bar
with text and a scale bar, a floating scale bar, an arrow or circle marking a spot, and JPEG
compression artefacts.

Each overlay is a ``bool`` parameter whose default is its per-image probability (low: most
images carry none), so what an image got is recorded in its ``params``. Overlays act on the
final 8-bit image only: the scene and its defect mask are untouched.
"""

from __future__ import annotations

import cv2
import numpy as np

from .params import ParamSpace, ParamSpec

OVERLAYS = ParamSpace([
    ParamSpec("overlay_infobar", "bool", 0.12, doc="SEM info bar (text + scale bar) along the bottom"),
    ParamSpec("overlay_scalebar", "bool", 0.08, doc="a floating scale bar with its length"),
    ParamSpec("overlay_marker", "bool", 0.08, doc="an arrow or circle marking the defect (or a spot)"),
    ParamSpec("overlay_jpeg", "bool", 0.2, doc="JPEG compression artefacts"),
    ParamSpec("overlay_jpeg_quality", "int", 60, 25, 90, limits=(5, 100), doc="JPEG quality when applied"),
])

_NICE = np.array([1, 2, 5, 10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000], float)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _length_label(nm: float) -> str:
    if nm >= 1000:
        v = nm / 1000.0
        return f"{v:g} um" if v < 1000 else f"{v / 1000:g} mm"
    return f"{nm:g} nm"


def scale_bar_length(pixel_nm: float, width: int, frac=(0.15, 0.35)) -> tuple[float, int]:
    """A round physical length (nm) whose bar spans about ``frac`` of the width; (nm, px)."""
    target = np.mean(frac) * width * pixel_nm
    nm = float(_NICE[np.argmin(np.abs(np.log(_NICE / max(target, 1e-6))))])
    return nm, max(4, int(round(nm / pixel_nm)))


def _text(img, s, org, scale, color, thick):
    cv2.putText(img, s, org, _FONT, scale, int(color), thick, cv2.LINE_AA)


def info_bar(img: np.ndarray, rng: np.random.Generator, pixel_nm: float) -> np.ndarray:
    """Draw an SEM info bar with acquisition text and a scale bar along the bottom (in place)."""
    h, w = img.shape
    bh = max(8, int(round(h * float(rng.uniform(0.09, 0.16)))))
    dark = rng.random() < 0.75
    bg, fg = (int(rng.integers(0, 40)), 255) if dark else (int(rng.integers(200, 256)), 0)
    img[h - bh:] = bg
    scale = bh / 40.0
    thick = max(1, int(round(bh / 22)))
    fields = [f"HV {rng.choice([1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0]):.1f}kV",
              f"WD {rng.uniform(2, 12):.1f}mm", f"x{int(rng.choice([5, 10, 20, 50, 100, 200]))}k",
              str(rng.choice(["SE", "InLens", "SE2", "BSE", "TLD"]))]
    k = int(rng.integers(2, 5))
    nm, px = scale_bar_length(pixel_nm, w, (0.12, 0.25))
    x1 = w - 3
    x0 = max(w // 2, x1 - px)
    # text on the left (as many fields as fit), scale bar with its label on the right
    while k > 1 and cv2.getTextSize("  ".join(fields[:k]), _FONT, scale, thick)[0][0] > x0 - 6:
        k -= 1
    _text(img, "  ".join(fields[:k]), (2, h - bh // 2 + int(6 * scale)), scale, fg, thick)
    yb = h - int(bh * 0.3)
    cv2.rectangle(img, (x0, yb - max(1, bh // 10)), (x1, yb), int(fg), -1)
    _text(img, _length_label(nm), (x0, yb - max(2, bh // 6)), scale * 0.9, fg, thick)
    return img


def floating_scale_bar(img: np.ndarray, rng: np.random.Generator, pixel_nm: float) -> np.ndarray:
    h, w = img.shape
    nm, px = scale_bar_length(pixel_nm, w)
    px = min(px, w - 8)
    x0 = int(rng.integers(4, max(5, w - px - 4)))
    y = int(h * float(rng.uniform(0.82, 0.95)))
    color = 255 if img[max(0, y - 12):y + 3, x0:x0 + px].mean() < 128 else 0
    t = max(1, h // 90)
    cv2.rectangle(img, (x0, y - t), (x0 + px, y + t), color, -1)
    _text(img, _length_label(nm), (x0, y - 3 * t - 2), max(0.25, h / 400.0), color, max(1, h // 200))
    return img


def marker(img: np.ndarray, rng: np.random.Generator, target: tuple[float, float] | None) -> np.ndarray:
    """An arrow pointing at ``target`` (x, y) or a circle around it (in place)."""
    h, w = img.shape
    if target is None:
        target = (float(rng.uniform(0.3, 0.7) * w), float(rng.uniform(0.3, 0.7) * h))
    tx, ty = int(target[0]), int(target[1])
    color = 255 if rng.random() < 0.7 else 0
    t = max(1, int(round(w / 100)))
    if rng.random() < 0.5:
        r = int(w * float(rng.uniform(0.08, 0.18)))
        cv2.circle(img, (tx, ty), r, color, t, cv2.LINE_AA)
    else:
        a = float(rng.uniform(0, 2 * np.pi))
        L = w * float(rng.uniform(0.15, 0.3))
        gap = w * 0.05
        tail = (int(tx + np.cos(a) * (L + gap)), int(ty + np.sin(a) * (L + gap)))
        tip = (int(tx + np.cos(a) * gap), int(ty + np.sin(a) * gap))
        cv2.arrowedLine(img, tail, tip, color, t, cv2.LINE_AA, tipLength=0.3)
    return img


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img


def apply_overlays(image: np.ndarray, p: dict, rng: np.random.Generator, scene=None) -> np.ndarray:
    """Apply the overlays switched on in ``p`` to a uint8 image; returns a new array.

    A no-op (same array) when ``p`` holds no overlay parameter or all are off. ``scene`` gives the
    pixel size (scale bars) and the defect mask (the marker points at the first instance).
    """
    if not any(p.get(k) for k in ("overlay_infobar", "overlay_scalebar", "overlay_marker", "overlay_jpeg")):
        return image
    img = np.ascontiguousarray(image.copy())
    pixel_nm = float(getattr(scene, "pixel_nm", 5.0) or 5.0)
    # one child generator: overlays never shift the random stream of anything else
    orng = np.random.default_rng(rng.integers(0, 2 ** 63))
    if p.get("overlay_marker"):
        target = None
        if scene is not None and scene.mask is not None and scene.mask.any():
            ys, xs = np.nonzero(scene.mask)
            target = (float(xs.mean()), float(ys.mean()))
        marker(img, orng, target)
    if p.get("overlay_scalebar") and not p.get("overlay_infobar"):
        floating_scale_bar(img, orng, pixel_nm)
    if p.get("overlay_infobar"):
        info_bar(img, orng, pixel_nm)
    if p.get("overlay_jpeg"):
        img = jpeg(img, p.get("overlay_jpeg_quality", 60))
    return img
