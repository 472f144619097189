"""2-D logic-like layouts seen from the top: Manhattan wires on a routing grid, serpentines
(meanders) and line-end arrays (tip-to-tip gaps).
"""

from __future__ import annotations

import numpy as np

from ..params import ParamSpec
from ..scene import Scene
from .shapes import FeatureSet, Shape
from .topdown import raised_scene

LAYOUT = "logic"
_W = {"layout": (LAYOUT,)}
STYLES = ("random", "serpentine", "line_ends")

PARAMS = [
    ParamSpec("logic_style", "choice", "random", choices=STYLES, weights=(0.5, 0.2, 0.3),
              doc="random Manhattan routing, serpentine (meander) or line ends", when=_W),
    ParamSpec("logic_pitch_nm", "float", 120.0, 60.0, 300.0, unit="nm", doc="routing track pitch", when=_W),
    ParamSpec("logic_width_frac", "float", 0.5, 0.35, 0.65, doc="wire width / pitch", when=_W),
    ParamSpec("logic_density", "float", 0.6, 0.4, 0.85, doc="fraction of each track occupied", when=_W),
    ParamSpec("logic_vertical", "bool", 0.5, doc="tracks run vertically", when=_W),
    ParamSpec("logic_corner", "float", 0.3, 0.05, 0.5, doc="corner rounding / wire width", when=_W),
    ParamSpec("logic_film_nm", "float", 70.0, 40.0, 150.0, unit="nm", doc="wire height", when=_W),
]


def _wire(x0, y0, x1, y1, rc, tag):
    """An axis-aligned wire from (x0, y0) to (x1, y1) corners as a rounded rectangle."""
    return Shape("rect", ((x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2, rc, 0.0), tag=tag)


def logic_features(p: dict, rng: np.random.Generator, shape: tuple[int, int], pixel_nm: float) -> FeatureSet:
    """Wires of the chosen style, built with tracks along x, then transposed if vertical.

    Shapes are tagged ("track", t, k) for segment k of track t, ("jog", t, k) for the
    perpendicular connections between tracks.
    """
    h, w = shape
    vertical = bool(p["logic_vertical"])
    H, W = (w, h) if vertical else (h, w)  # build in (rows=tracks) frame
    pitch = p["logic_pitch_nm"] / pixel_nm
    wid = max(1.5, p["logic_width_frac"] * pitch)
    rc = p["logic_corner"] * wid
    y0 = float(rng.uniform(0, pitch))
    ntr = int(np.ceil(H / pitch)) + 1
    shapes: list[Shape] = []
    style = p["logic_style"]
    ends: list[tuple[int, float, float]] = []
    for t in range(-1, ntr):
        yc = y0 + t * pitch
        if style == "serpentine":
            continue
        if style == "line_ends":
            seg_len = float(rng.uniform(2.0, 6.0)) * pitch
            gap = float(rng.uniform(0.4, 1.0)) * wid * 1.5
            x = -float(rng.uniform(0, seg_len))
            k = 0
            while x < W:
                shapes.append(_wire(x, yc - wid / 2, x + seg_len, yc + wid / 2, wid / 2 * 0.9, ("track", t, k)))
                x += seg_len + gap
                k += 1
            continue
        x = -float(rng.uniform(0, 3 * pitch))
        k = 0
        while x < W:
            length = float(rng.exponential(4 * pitch)) + pitch
            gap = float(rng.exponential(pitch * 2 * (1 - p["logic_density"]) / max(p["logic_density"], 0.1))) + wid
            shapes.append(_wire(x, yc - wid / 2, x + length, yc + wid / 2, rc, ("track", t, k)))
            ends.append((t, x, x + length))
            x += length + gap
            k += 1
    if style == "random":
        # perpendicular jogs joining a segment to the track below
        for j, (t, a, b) in enumerate(ends):
            if rng.random() < 0.25 and b - a > 2 * wid:
                xj = float(rng.uniform(a + wid, b - wid))
                yc = y0 + t * pitch
                shapes.append(_wire(xj - wid / 2, yc, xj + wid / 2, yc + pitch, rc, ("jog", t, j)))
    if style == "serpentine":
        x_left, x_right = float(rng.uniform(-0.3, 0.15)) * W, float(rng.uniform(0.85, 1.3)) * W
        pitch2 = 2 * pitch if rng.random() < 0.5 else pitch
        wid2 = p["logic_width_frac"] * pitch2 / 2 if pitch2 > pitch else wid
        ntr2 = int(np.ceil(H / pitch2)) + 1
        for t in range(-1, ntr2):
            yc = y0 + t * pitch2
            shapes.append(_wire(x_left, yc - wid2 / 2, x_right, yc + wid2 / 2, min(rc, wid2 / 2), ("track", t, 0)))
            xe = x_right if t % 2 == 0 else x_left
            shapes.append(_wire(xe - wid2 / 2, yc - wid2 / 2, xe + wid2 / 2, yc + pitch2 + wid2 / 2,
                                min(rc, wid2 / 2), ("jog", t, 0)))
    if vertical:
        for s in shapes:
            g = s.geom
            s.geom = (g[1], g[0], g[3], g[2], g[4], g[5])
    fs = FeatureSet(shape)
    fs.shapes = shapes
    return fs


def render(fs: FeatureSet, p: dict, rng: np.random.Generator, pixel_nm: float, meta: dict | None = None,
           cov: np.ndarray | None = None) -> Scene:
    cov = fs.coverage() if cov is None else cov
    m = {"layout": LAYOUT, "style": p["logic_style"], "pitch_nm": p["logic_pitch_nm"],
         "orientation": "vertical" if p["logic_vertical"] else "horizontal", **(meta or {})}
    return raised_scene(cov, p["logic_film_nm"], pixel_nm, rng, meta=m)
