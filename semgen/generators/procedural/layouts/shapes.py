"""Anti-aliased geometric primitives in pixel coordinates, shared by the layouts and defect classes.

A shape is rendered as *coverage*: a float32 map in [0, 1] (1 inside, 0 outside, a one-pixel soft
edge), from a signed distance evaluated only in a small window around the shape (one compiled
pass, :mod:`.raster`), so that rendering costs what the shape covers and not the whole image. Layouts build lists of shapes
(:class:`FeatureSet`), defect classes edit those lists (remove, move, resize, join), and the
result is turned into height and material maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .. import portable
from . import raster

#: supersampling factor for polylines (cracks, scratches): third-of-a-pixel width resolution
_SS = 3


def _box(shape, cx, cy, reach_x, reach_y=None):
    """``(y0, y1, x0, x1)``: the pixels of an (H, W) image within reach of (cx, cy), or None."""
    h, w = shape
    reach_y = reach_x if reach_y is None else reach_y
    x0 = max(0, math.floor(cx - reach_x - 2))
    x1 = min(w, math.ceil(cx + reach_x + 3))
    y0 = max(0, math.floor(cy - reach_y - 2))
    y1 = min(h, math.ceil(cy + reach_y + 3))
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


_NO_HARMONICS = np.zeros(0, np.float64)
_NO_HARMONICS.flags.writeable = False


def _harmonic_terms(harmonics) -> tuple[np.ndarray, np.ndarray, float, float]:
    """What :func:`.raster.splat_ellipse` takes for radial harmonics ``[(k, a, phi), ...]``:
    ``a cos phi`` and ``a sin phi`` summed by integer order ``k`` (read-only float64 arrays), and
    the least and largest radius factor ``max(0.2, 1 - sum |a|)``, ``1 + sum |a|``."""
    if not harmonics:
        return _NO_HARMONICS, _NO_HARMONICS, 1.0, 1.0
    kmax = max(int(k) for k, _, _ in harmonics)
    hc, hs = np.zeros(kmax + 1), np.zeros(kmax + 1)
    total = 0.0
    for k, a, ph in harmonics:
        if int(k) != k or k < 0:
            raise ValueError(f"radial harmonic orders are integers >= 0, got {k}")
        hc[int(k)] += a * math.cos(ph)
        hs[int(k)] += a * math.sin(ph)
        total += abs(a)
    hc.flags.writeable = hs.flags.writeable = False
    return hc, hs, max(0.2, 1.0 - total), 1.0 + total


@dataclass
class Shape:
    """One primitive: ``kind`` in {"ellipse", "rect", "capsule"}, geometry in pixels.

    ellipse: (cx, cy, rx, ry, angle, harmonics); rect: (cx, cy, hx, hy, rc, angle);
    capsule: (ax, ay, bx, by, r). ``tag`` names the feature (e.g. grid index) for the defects.
    """

    kind: str
    geom: tuple
    tag: tuple = ()
    harmonics: list = field(default_factory=list)

    def reach(self) -> float:
        g = self.geom
        if self.kind == "ellipse":
            amp = 1.0 + sum(abs(a) for _, a, _ in self.harmonics)
            return max(g[2], g[3]) * amp
        if self.kind == "rect":
            return float(np.hypot(g[2], g[3]))
        return float(np.hypot(g[2] - g[0], g[3] - g[1]) / 2 + g[4])

    def extents(self) -> tuple[float, float]:
        """Half sizes of the axis-aligned box around the shape (pixels)."""
        g = self.geom
        if self.kind == "capsule":
            return abs(g[2] - g[0]) / 2 + g[4], abs(g[3] - g[1]) / 2 + g[4]
        ang = g[4] if self.kind == "ellipse" else g[5]
        c, s = abs(math.cos(ang)), abs(math.sin(ang))
        amp = 1.0 + sum(abs(a) for _, a, _ in self.harmonics) if self.kind == "ellipse" else 1.0
        return (c * g[2] + s * g[3]) * amp, (s * g[2] + c * g[3]) * amp

    def center(self) -> tuple[float, float]:
        g = self.geom
        if self.kind == "capsule":
            return (g[0] + g[2]) / 2, (g[1] + g[3]) / 2
        return g[0], g[1]

    def splat(self, cov: np.ndarray, soft: float = 0.7, value: float = 1.0) -> None:
        """Union this shape into ``cov`` (float32, C order; in place, max), ``value`` times its
        coverage: one compiled pass over the shape's window (:mod:`.raster`)."""
        if cov.dtype != np.float32 or cov.ndim != 2 or not cov.flags.c_contiguous:
            raise ValueError(f"splat draws into a C-ordered 2-D float32 array, got {cov.dtype} {cov.shape}")
        cx, cy = self.center()
        box = _box(cov.shape, cx, cy, *self.extents())
        if box is None:
            return
        g, soft, value = self.geom, float(soft), np.float32(value)
        if self.kind == "capsule":
            raster.splat_capsule(cov, *box, *map(float, g[:5]), soft, value)
            return
        ang = float(g[4] if self.kind == "ellipse" else g[5])
        c, s = (math.cos(ang), math.sin(ang)) if ang else (1.0, 0.0)
        if self.kind == "ellipse":
            hc, hs, smin, smax = _harmonic_terms(self.harmonics)
            raster.splat_ellipse(cov, *box, float(g[0]), float(g[1]), c, s, max(float(g[2]), 1e-3),
                                 max(float(g[3]), 1e-3), hc, hs, smin, smax, soft, value)
        else:
            hx, hy = float(g[2]), float(g[3])
            raster.splat_round_rect(cov, *box, float(g[0]), float(g[1]), c, s, hx, hy, min(float(g[4]), hx, hy),
                                    soft, value)

    def bbox(self, shape) -> list[int]:
        cx, cy = self.center()
        r = self.reach()
        h, w = shape
        return [int(max(0, np.floor(cx - r))), int(max(0, np.floor(cy - r))),
                int(min(w, np.ceil(cx + r))), int(min(h, np.ceil(cy + r)))]


@dataclass
class FeatureSet:
    """A list of shapes on an (H, W) pixel grid, with the lattice they came from."""

    shape: tuple[int, int]
    shapes: list[Shape] = field(default_factory=list)

    def coverage(self, soft: float = 0.7) -> np.ndarray:
        cov = np.zeros(self.shape, np.float32)
        for s in self.shapes:
            s.splat(cov, soft)
        return cov

    def by_tag(self, tag) -> int:
        for i, s in enumerate(self.shapes):
            if s.tag == tag:
                return i
        return -1


def lattice(shape, pitch_x, pitch_y, stagger=0.0, angle=0.0, origin=(0.0, 0.0), margin=1.5):
    """Centres of a (possibly staggered, rotated) lattice covering an (H, W) image, in pixels.

    Row ``j`` is shifted by ``stagger * pitch_x * (j mod 2)`` (0.5 gives a hexagonal / brick
    arrangement). Returns (cx, cy, i, j) arrays.
    """
    h, w = shape
    diag = np.hypot(h, w)
    ni = int(np.ceil(diag / pitch_x)) + 3
    nj = int(np.ceil(diag / pitch_y)) + 3
    j, i = np.mgrid[-nj:nj + 1, -ni:ni + 1]
    x = (i + stagger * (j % 2)) * pitch_x + origin[0]
    y = j * pitch_y + origin[1]
    c, s = np.cos(angle), np.sin(angle)
    cx = w / 2 + c * x - s * y
    cy = h / 2 + s * x + c * y
    m = margin * max(pitch_x, pitch_y)
    keep = (cx > -m) & (cx < w + m) & (cy > -m) & (cy < h + m)
    return cx[keep], cy[keep], i[keep], j[keep]


def polylines_coverage(shape, paths) -> np.ndarray:
    """Coverage of several polylines with per-vertex widths (pixels), drawn supersampled.

    ``paths`` is a list of ``(pts, widths)``: ``pts`` (N, 2) as (x, y), ``widths`` (N,).
    Segments are thick lines with round joins, so the width can taper along a path (cracks,
    scratches). Drawn once on one canvas at ``_SS`` x the resolution, then area-averaged.
    """
    h, w = shape
    segs = []
    for pts, widths in paths:
        p = np.round(np.asarray(pts, np.float64) * _SS).astype(np.int64)
        wd = np.asarray(widths, np.float64) * _SS
        # every segment's thickness in one pass (np.rint rounds half to even, as round() does); the
        # loop then only passes Python ints to OpenCV: per-segment NumPy scalars cost more than the lines
        thick = np.maximum(np.rint((wd[:-1] + wd[1:]) / 2), 1).astype(np.int64)
        if len(thick):
            segs.append((p, thick))
    out = np.zeros((h, w), np.float32)
    if not segs:
        return out
    # Draw only on the box of the canvas that the lines can reach (a mark's own, not the frame's):
    # its corner on the _SS grid, so the area averages are those of the whole canvas. A box side
    # inside the canvas is never touched, a side on the canvas's edge clips as the canvas did, and
    # OpenCV's integer rasterisation is the same under an integer shift.
    big = _SS * np.array([w, h])
    lo = np.min([p.min(axis=0) for p, _ in segs], axis=0)
    hi = np.max([p.max(axis=0) for p, _ in segs], axis=0)
    reach = int(max(int(t.max()) for _, t in segs)) + 3
    x0, y0 = (np.maximum((lo - reach) // _SS, 0) * _SS).tolist()
    x1, y1 = (np.minimum(-((-(hi + reach + 1)) // _SS) * _SS, big)).tolist()
    if x0 >= x1 or y0 >= y1:  # out of the frame: nothing drawn
        return out
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for p, thick in segs:
        q = (p - np.array([x0, y0])).tolist()
        for k, t in enumerate(thick.tolist()):
            a, b = q[k], q[k + 1]
            cv2.line(canvas, (a[0], a[1]), (b[0], b[1]), 255, t, lineType=cv2.LINE_8)
    small = cv2.resize(canvas, ((x1 - x0) // _SS, (y1 - y0) // _SS), interpolation=cv2.INTER_AREA)
    out[y0 // _SS:y1 // _SS, x0 // _SS:x1 // _SS] = small.astype(np.float32) / 255.0
    return out


def polyline_coverage(shape, pts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Coverage of one polyline with per-vertex widths (see :func:`polylines_coverage`)."""
    return polylines_coverage(shape, [(pts, widths)])


def random_path(rng: np.random.Generator, start, heading, length, step=2.0, wander=0.15,
                persistence=0.85, curvature=0.0) -> np.ndarray:
    """A correlated random walk of about ``length`` pixels: (N, 2) points as (x, y).

    The heading changes by a smoothed random turn (``wander`` radians per step, AR(1) with
    ``persistence``) plus a constant ``curvature`` (radians per step), which gives the meandering of
    cracks and the gentle arcs of scratches.
    """
    n = max(2, int(np.ceil(length / step)) + 1)
    turns = rng.normal(0.0, wander, n)
    # AR(1) smoothing of the turn rate, as a causal convolution with its (truncated) impulse response
    k = int(min(n, max(1, np.ceil(np.log(1e-6) / np.log(max(persistence, 1e-6))))))
    kernel = (1.0 - persistence) * persistence ** np.arange(k)
    turns = np.convolve(turns, kernel)[:n]
    head = heading + np.cumsum(turns + curvature)
    steps = np.stack([np.cos(head), np.sin(head)], 1) * step
    pts = np.vstack([np.asarray(start, np.float64)[None], np.asarray(start, np.float64) + np.cumsum(steps, 0)])
    return pts[:n]


def smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise (float32), correlation ``sigma`` pixels.

    For wide correlations the field is drawn on a grid ``f`` times coarser (``f ~ sigma / 1.5``),
    filtered there and interpolated up: the same smooth field for a fraction of the cost.
    """
    h, w = int(shape[0]), int(shape[1])
    f = int(min(8, sigma // 1.5)) if sigma >= 3.0 and min(h, w) >= 32 else 1
    if f > 1:
        n = rng.standard_normal((h // f + 3, w // f + 3), dtype=np.float32)
        n = portable.upsample(portable.gaussian_blur(n, float(sigma) / f, border=portable.REFLECT), f)[f:f + h, f:f + w]
    else:
        n = rng.standard_normal((h, w), dtype=np.float32)
        if sigma > 0:
            n = portable.gaussian_blur(n, float(sigma), border=portable.REFLECT)
    sd = float(n.std())
    return np.ascontiguousarray(n / sd if sd > 0 else n)


def bbox_of(mask: np.ndarray) -> list[int] | None:
    """[x0, y0, x1, y1] (exclusive max) of the non-zero pixels, or None."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
