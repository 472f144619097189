"""Tilted views: a top-down scene seen from a tilted stage, showing the sidewalls that face the
detector, with mild perspective.

The projection is exact for a height field seen along parallel rays tilted by ``tilt_deg`` in the
y-z plane: a surface point (x, y, h) lands on screen row ``v = y cos(t) - (h / pixel) sin(t)``.
Walking a column from the viewer (large y) away, the first surface point at or above a ray is what
the ray sees, which is the largest y whose suffix-minimum screen row is <= v: one sorted search per
column, no per-pixel loop. Screen rows between a point and the next one further down are the
front-facing sidewall below that point.
"""

from __future__ import annotations

import math

import numpy as np

from .. import portable
from ..params import ParamSpec
from ..scene import Scene

LAYOUT = "tilted"
_W = {"layout": (LAYOUT,)}

PARAMS = [
    ParamSpec("tilt_deg", "float", 45.0, 25.0, 60.0, unit="deg", doc="stage tilt of the tilted view", when=_W),
    ParamSpec("tilt_perspective", "float", 0.1, 0.0, 0.3, doc="relative widening from far to near rows", when=_W),
    ParamSpec("tilt_wall_frac", "float", 0.5, 0.2, 0.9, doc="projected sidewall height / pattern pitch "
              "(sets the feature height of the tilted view)", when=_W),
    ParamSpec("tilt_base", "choice", "logic", choices=("logic", "pads", "contacts"), weights=(0.5, 0.3, 0.2),
              doc="top-down layout that the tilted view shows", when=_W),
]


def source_rows(out_h: int, tilt_deg: float, max_height_nm: float, pixel_nm: float) -> int:
    """Rows of top-down scene needed to fill ``out_h`` screen rows at this tilt."""
    t = math.radians(tilt_deg)
    return int(math.ceil((out_h + max_height_nm * math.sin(t) / pixel_nm) / math.cos(t))) + 2


def tilt_scene(src: Scene, out_h: int, tilt_deg: float, perspective: float = 0.0, wall_gain: float = 0.04) -> Scene:
    """Project a top-down ``src`` scene (rows = depth into the picture) into a tilted view.

    Parameters
    ----------
    src : Scene
        Top-down scene of shape (H0, W) with H0 >= :func:`source_rows`.
    out_h : int
        Screen rows.
    tilt_deg : float
        Stage tilt in degrees (0 = top-down).
    perspective : float
        Near rows are ``1 + perspective`` times wider than far ones (horizontal remap).
    wall_gain : float
        Extra SE yield on front-facing sidewalls (they face the detector).

    Returns
    -------
    Scene
        ``view="tilted"``; ``height`` is the screen-space surface height (walls descend along
        the screen), material, mask and SE offset are those of the visible points.
    """
    h0, w = src.shape
    t = math.radians(tilt_deg)
    c, s = math.cos(t), math.sin(t)
    y = np.arange(h0, dtype=np.float32)[:, None]
    vs = y * np.float32(c) - src.height * np.float32(s / src.pixel_nm)  # (H0, W) screen row of each point
    # shift so the view starts where every column is defined
    vs -= float(vs[0].max()) if float(vs[0].max()) > 0 else 0.0
    m = np.minimum.accumulate(vs[::-1], axis=0)[::-1]  # suffix minimum, nondecreasing along y
    # visible row at screen row v (pixel centre v + 0.5) = #{y : m(y) <= v + 0.5} - 1; count it with
    # one histogram of each point's first screen row and a cumulative sum down each column
    first = np.clip(np.ceil(m - np.float32(0.5)), 0, out_h).astype(np.int32)
    first += np.arange(w, dtype=np.int32)[None, :] * np.int32(out_h + 1)
    hist = np.bincount(first.ravel(), minlength=w * (out_h + 1)).reshape(w, out_h + 1)
    vis = np.clip(np.cumsum(hist, axis=1)[:, :out_h] - 1, 0, h0 - 1).T  # (out_h, W) source row
    v = np.arange(out_h, dtype=np.float32)[:, None] + np.float32(0.5)
    xs = np.broadcast_to(np.arange(w)[None, :], vis.shape)
    gap = v - vs[vis, xs]  # screen rows below the visible point's own row
    wall = gap > 1.0
    h_vis = src.height[vis, xs]
    h_next = src.height[np.minimum(vis + 1, h0 - 1), xs]
    # on a wall the surface descends pixel_nm / sin(t) per screen row, down to the next point
    height = np.where(wall, np.maximum(h_vis - (gap - 0.5) * src.pixel_nm / max(s, 1e-3), h_next), h_vis)
    material = src.material[vis, xs]
    mask = src.mask[vis, xs]
    se = np.zeros(vis.shape, np.float32) if src.se_offset is None else src.se_offset[vis, xs]
    se = se + np.where(wall, wall_gain, 0.0).astype(np.float32)
    if perspective > 0:
        rows = np.linspace(1.0 / (1.0 + perspective), 1.0, out_h, dtype=np.float32)[:, None]
        xc = (w - 1) / 2.0
        mapx = (xc + (np.arange(w, dtype=np.float32)[None, :] - xc) * rows).astype(np.float32)
        mapy = np.broadcast_to(np.arange(out_h, dtype=np.float32)[:, None], (out_h, w)).astype(np.float32)

        def warp(a, linear):
            return portable.remap(a, mapx, mapy, linear, portable.REPLICATE)

        height = warp(height.astype(np.float32), True)
        se = warp(se, True)
        material = warp(material, False)
        mask = warp(mask, False)
    meta = dict(src.meta)
    meta.update({"tilt_deg": float(tilt_deg), "source_view": src.view})
    return Scene(height=height.astype(np.float32), material=material, pixel_nm=src.pixel_nm, mask=mask,
                 view="tilted", meta=meta, se_offset=se.astype(np.float32))
