"""Shadowing of tall relief in an SE image: which floor pixels the detector cannot see.

An Everhart-Thornley detector sits to one side of the specimen, at a low elevation above it.
Secondary electrons leaving the floor behind a tall object (a particle, the lip of a gouge) on
the side away from the detector are partly blocked on their way to it, so a dark *shadow* falls
on the far side, as long as the object is tall over ``tan(elevation)``. The directional shading
of slopes themselves is :func:`~.edits.emboss`; the edge brightening is the imaging model's.
"""

from __future__ import annotations

import math

import numpy as np


def cast_shadow(height: np.ndarray, pixel_nm: float, light_deg: float, elev_deg: float,
                soft_px: float = 1.5, max_steps: int = 64) -> np.ndarray:
    """Fraction (0..1, float32) of each pixel's view of the detector blocked by taller relief.

    A pixel is in shadow when, looking towards the detector (azimuth ``light_deg``, elevation
    ``elev_deg``), some pixel ``d`` px away stands higher than the line of sight, i.e.
    ``height[x + d] - height[x] > d * pixel_nm * tan(elev)``; the excess, over ``soft_px`` px of
    line-of-sight rise, gives a soft penumbra. Rays are marched on whole-pixel offsets (at most
    ``max_steps`` of them) only as far as the tallest relief can cast, so the result is exact
    integer arithmetic on the grid and the same in every process.

    Parameters
    ----------
    height : ndarray, float, (H, W)
        Topography in nm.
    pixel_nm : float
        Pixel size in nm.
    light_deg : float
        Azimuth of the detector (0 = +x, 90 = +y), degrees.
    elev_deg : float
        Elevation of the detector above the surface, degrees (0 < elev < 90).
    soft_px : float
        Penumbra width in pixels of line-of-sight rise.
    max_steps : int
        Most ray offsets tried (long shadows are sampled more coarsely).

    Returns
    -------
    ndarray, float32, (H, W)

    Examples
    --------
    >>> h = np.zeros((9, 9), np.float32); h[4, 4] = 100.0
    >>> s = cast_shadow(h, 10.0, 0.0, 45.0)    # detector towards +x: shadow on the -x side
    >>> bool(s[4, 3] > 0.5), bool(s[4, 5] > 0)
    (True, False)
    """
    h = np.asarray(height, np.float32)
    H, W = h.shape
    rise = float(pixel_nm) * math.tan(math.radians(float(np.clip(elev_deg, 0.5, 89.5))))
    top = float(h.max() - h.min())
    out = np.zeros(h.shape, np.float32)
    if top <= 0 or rise <= 0:
        return out
    reach = int(min(max(H, W), math.ceil(top / rise)))
    a = math.radians(light_deg)
    lx, ly = math.cos(a), math.sin(a)
    occ = np.full(h.shape, -np.inf, np.float32)
    seen = set()
    for s in np.unique(np.round(np.linspace(1, max(reach, 1), min(max_steps, max(reach, 1)))).astype(int)):
        dx, dy = int(round(s * lx)), int(round(s * ly))
        if (dx, dy) in seen or (dx == 0 and dy == 0) or abs(dx) >= W or abs(dy) >= H:
            continue
        seen.add((dx, dy))
        # occ[y, x] = max(occ, h[y + dy, x + dx] - |d| * rise), only where (y + dy, x + dx) is inside
        ys, yd = slice(max(0, -dy), H - max(0, dy)), slice(max(0, dy), H - max(0, -dy))
        xs, xd = slice(max(0, -dx), W - max(0, dx)), slice(max(0, dx), W - max(0, -dx))
        drop = np.float32(math.hypot(dx, dy) * rise)
        np.maximum(occ[ys, xs], h[yd, xd] - drop, out=occ[ys, xs])
    occ -= h
    np.clip(occ / np.float32(max(soft_px, 1e-3) * rise), 0.0, 1.0, out=out)
    return out
