"""Pads and brick / staggered patterns seen from the top.

Styles: ``brick`` (rectangles in rows shifted by half a pitch), ``pills`` (rounded bars in a
staggered array), ``squares`` (square islands on a grid, some missing, sizes varying), ``pads``
(a few large probe/bond pads with the lines that leave them).
"""

from __future__ import annotations

import numpy as np

from ..params import ParamSpec
from ..scene import METAL, LINE, Scene
from .shapes import FeatureSet, Shape, lattice
from .topdown import raised_scene

LAYOUT = "pads"
_W = {"layout": (LAYOUT,)}
STYLES = ("brick", "pills", "squares", "pads")

PARAMS = [
    ParamSpec("pad_style", "choice", "brick", choices=STYLES, weights=(0.3, 0.3, 0.25, 0.15),
              doc="brick rows, staggered pills, square islands or large pads with leads", when=_W),
    ParamSpec("pad_pitch_nm", "float", 300.0, 150.0, 700.0, unit="nm", doc="pattern pitch along rows", when=_W),
    ParamSpec("pad_fill", "float", 0.7, 0.5, 0.85, doc="feature length / pitch along rows", when=_W),
    ParamSpec("pad_aspect", "float", 0.5, 0.3, 0.8, doc="feature height / length", when=_W),
    ParamSpec("pad_row_gap", "float", 0.35, 0.2, 0.6, doc="gap between rows / feature height", when=_W),
    ParamSpec("pad_corner", "float", 0.15, 0.02, 0.4, doc="corner radius / feature height (pills: 0.5)", when=_W),
    ParamSpec("pad_angle_deg", "float", 0.0, -5.0, 5.0, unit="deg", doc="pattern rotation", when=_W),
    ParamSpec("pad_dropout", "float", 0.15, 0.0, 0.35, doc="fraction of missing islands (squares style)", when=_W),
    ParamSpec("pad_film_nm", "float", 80.0, 40.0, 200.0, unit="nm", doc="feature height", when=_W),
]


def pad_features(p: dict, rng: np.random.Generator, shape: tuple[int, int], pixel_nm: float) -> FeatureSet:
    """The nominal features of the pads layout (shapes tagged with their grid index)."""
    style = p["pad_style"]
    h, w = shape
    pitch = p["pad_pitch_nm"] / pixel_nm
    ang = np.deg2rad(p["pad_angle_deg"])
    fs = FeatureSet(shape)
    if style == "pads":
        # a few big pads with narrow leads: bond-pad / test-structure regions
        n = int(rng.integers(2, 4))
        side = float(rng.uniform(0.2, 0.4)) * min(h, w)
        lead = max(2.0, side * float(rng.uniform(0.08, 0.2)))
        cells = rng.permutation(4)[:n]  # one pad per quadrant, so pads and leads stay apart
        for k, q in enumerate(cells):
            cx = float((0.25 + 0.5 * (q % 2) + rng.uniform(-0.05, 0.05)) * w)
            cy = float((0.25 + 0.5 * (q // 2) + rng.uniform(-0.05, 0.05)) * h)
            hx, hy = side / 2 * float(rng.uniform(0.7, 1.0)), side / 2 * float(rng.uniform(0.7, 1.0))
            fs.shapes.append(Shape("rect", (cx, cy, hx, hy, side * p["pad_corner"] * 0.3, ang), tag=("pad", k)))
            # the lead leaves towards the nearer vertical or horizontal border of its quadrant
            if rng.random() < 0.5:
                ex, ey = (cx + 2 * w, cy) if q % 2 else (cx - 2 * w, cy)
            else:
                ex, ey = (cx, cy + 2 * h) if q // 2 else (cx, cy - 2 * h)
            fs.shapes.append(Shape("capsule", (cx, cy, ex, ey, lead / 2), tag=("lead", k)))
        return fs
    length = p["pad_fill"] * pitch
    hgt = p["pad_aspect"] * length
    if style == "squares":
        hgt = length
    if style == "pills":
        hgt = min(hgt, 0.45 * length)
    py = hgt * (1.0 + p["pad_row_gap"])
    stagger = 0.0 if style == "squares" else 0.5
    cx, cy, ii, jj = lattice(shape, pitch, py, stagger, ang, (float(rng.uniform(0, pitch)), float(rng.uniform(0, py))))
    rc = 0.5 * hgt if style == "pills" else p["pad_corner"] * hgt
    for k in range(len(cx)):
        s = 1.0
        if style == "squares":
            if rng.random() < p["pad_dropout"]:
                continue
            s = float(rng.uniform(0.75, 1.1))
        fs.shapes.append(Shape("rect", (float(cx[k]), float(cy[k]), s * length / 2, s * hgt / 2, s * rc, float(ang)),
                               tag=(int(ii[k]), int(jj[k]))))
    return fs


def render(fs: FeatureSet, p: dict, rng: np.random.Generator, pixel_nm: float, meta: dict | None = None,
           cov: np.ndarray | None = None) -> Scene:
    cov = fs.coverage() if cov is None else cov
    top = METAL if p["pad_style"] == "pads" else LINE
    m = {"layout": LAYOUT, "style": p["pad_style"], "pitch_nm": p["pad_pitch_nm"], **(meta or {})}
    return raised_scene(cov, p["pad_film_nm"], pixel_nm, rng, top=top, meta=m)
