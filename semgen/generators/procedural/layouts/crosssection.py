"""Cross-section layer stacks: silicon, dielectrics with etch-stop caps, metal lines (end-on or
along their length) with liners, tapered vias and contact plugs, passivation.

:func:`plan` draws the geometry (a :class:`XPlan` of layers, lines and vias in pixels) so that a
defect class can edit a via or a line before :func:`paint` turns the plan into a scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..params import ParamSpec
from ..scene import DIELECTRIC, LINER, METAL, SILICON, VOID, Scene
from .shapes import smooth_noise

LAYOUT = "crosssection"
_W = {"layout": (LAYOUT,)}
STYLES = ("interconnect", "plugs")

#: small polishing relief (nm) per material: the edge effect then outlines the interfaces
RELIEF = {DIELECTRIC: 0.0, METAL: 4.0, LINER: 6.0, SILICON: -2.0, VOID: -40.0}

PARAMS = [
    ParamSpec("xs_style", "choice", "interconnect", choices=STYLES, weights=(0.55, 0.45),
              doc="multi-level interconnect stack, or tall contact plugs under a line", when=_W),
    ParamSpec("xs_levels", "int", 2, 1, 3, doc="metal levels (interconnect style)", when=_W),
    ParamSpec("xs_pitch_frac", "float", 0.3, 0.15, 0.5, doc="line / plug pitch / image width", when=_W),
    ParamSpec("xs_fill", "float", 0.5, 0.3, 0.65, doc="line or plug width / pitch", when=_W),
    ParamSpec("xs_taper", "float", 0.7, 0.4, 0.95, doc="via bottom width / top width", when=_W),
    ParamSpec("xs_liner_px", "float", 1.2, 0.0, 2.5, unit="px", doc="liner thickness", when=_W),
    ParamSpec("xs_layer_contrast", "float", 0.06, 0.02, 0.12, doc="SE spread between dielectric layers", when=_W),
    ParamSpec("xs_top", "choice", "dielectric", choices=("dielectric", "air"), weights=(0.6, 0.4),
              doc="what lies above the passivation", when=_W),
]


@dataclass
class XPlan:
    """Geometry of a cross-section, in pixels (y down, image top = wafer top)."""

    shape: tuple[int, int]
    style: str
    silicon_y: float
    layers: list = field(default_factory=list)   # (y0, y1, se_offset)
    lines: list = field(default_factory=list)    # dict(x0, x1, y0, y1, level)
    vias: list = field(default_factory=list)     # dict(xc, wt, wb, y0, y1, level, shift)
    liner: float = 1.0
    top_air_y: float | None = None


def _trapezoid(xc, wt, wb, y0, y1):
    return np.array([[xc - wt / 2, y0], [xc + wt / 2, y0], [xc + wb / 2, y1], [xc - wb / 2, y1]])


def via_polygon(v: dict, grow: float = 0.0) -> np.ndarray:
    """Polygon (x, y) of via ``v``, grown outward by ``grow`` px on the sides and bottom."""
    return _trapezoid(v["xc"] + v.get("shift", 0.0), v["wt"] + 2 * grow, v["wb"] + 2 * grow, v["y0"], v["y1"] + grow)


def plan(p: dict, rng: np.random.Generator, shape: tuple[int, int]) -> XPlan:
    """Draw the stack geometry for parameters ``p``."""
    h, w = shape
    style = p["xs_style"]
    contrast = p["xs_layer_contrast"]
    pitch = max(6.0, p["xs_pitch_frac"] * w)
    fill = p["xs_fill"]
    liner = p["xs_liner_px"]
    si_y = float(rng.uniform(0.72, 0.95) * h)
    xp = XPlan(shape, style, si_y, liner=liner)
    if style == "plugs":
        top = float(rng.uniform(0.05, 0.3) * h)
        line_t = float(rng.uniform(0.06, 0.15) * h)
        xp.layers.append((top - line_t - 2 * h, si_y, float(rng.normal(0, contrast))))
        off = float(rng.uniform(0, pitch))
        wt = fill * pitch
        continuous = rng.random() < 0.5
        xs = np.arange(off - pitch, w + pitch, pitch)
        if continuous:
            xp.lines.append(dict(x0=-5.0, x1=w + 5.0, y0=top - line_t, y1=top, level=1))
        for k, xc in enumerate(xs):
            if not continuous:
                xp.lines.append(dict(x0=xc - wt * 0.7, x1=xc + wt * 0.7, y0=top - line_t, y1=top, level=1))
            xp.vias.append(dict(xc=float(xc), wt=wt, wb=wt * p["xs_taper"], y0=top - 1, y1=si_y + 1, level=1,
                                shift=0.0))
        xp.top_air_y = top - line_t - float(rng.uniform(0.05, 0.2)) * h if p["xs_top"] == "air" else None
        return xp
    n_lev = int(p["xs_levels"])
    y = si_y
    avail = si_y - 0.08 * h
    unit = avail / (n_lev * 2.0)
    prev_lines: list = []
    for lev in range(n_lev):
        t_via = unit * float(rng.uniform(0.7, 1.2))
        t_met = unit * float(rng.uniform(0.7, 1.1))
        y_via_top = y - t_via
        y_met_top = y_via_top - t_met
        xp.layers.append((y_via_top, y, float(rng.normal(0, contrast))))
        xp.layers.append((y_met_top, y_via_top, float(rng.normal(0, contrast))))
        # thin etch-stop cap over each level, brighter than the oxide
        xp.layers.append((y_met_top - max(1.0, 0.015 * h), y_met_top, 0.12))
        lp = pitch * (1.0 + 0.5 * lev) * float(rng.uniform(0.8, 1.2))
        lw = fill * lp
        along = rng.random() < 0.25
        lines = []
        if along:
            x = -float(rng.uniform(0, w * 0.3))
            while x < w:
                seg = float(rng.uniform(0.4, 1.2)) * w
                lines.append(dict(x0=x, x1=x + seg, y0=y_met_top, y1=y_via_top, level=lev))
                x += seg + float(rng.uniform(0.5, 1.5)) * lw
        else:
            off = float(rng.uniform(0, lp))
            for xc in np.arange(off - lp, w + lp, lp):
                lines.append(dict(x0=xc - lw / 2, x1=xc + lw / 2, y0=y_met_top, y1=y_via_top, level=lev))
        xp.lines.extend(lines)
        # vias from this level's lines down to the lines (or silicon contacts) below
        for ln in lines:
            if ln["x1"] < 0 or ln["x0"] > w:
                continue
            if rng.random() > 0.6:
                continue
            xc = float(rng.uniform(ln["x0"] + lw * 0.4, ln["x1"] - lw * 0.4)) if ln["x1"] - ln["x0"] > lw else (ln["x0"] + ln["x1"]) / 2
            if prev_lines:
                below = [b for b in prev_lines if b["x0"] + 2 < xc < b["x1"] - 2]
                if not below:
                    continue
            wt = min(0.8 * lw, 0.8 * (ln["x1"] - ln["x0"]))
            xp.vias.append(dict(xc=xc, wt=wt, wb=wt * p["xs_taper"], y0=y_via_top, y1=y + (0 if prev_lines else 1),
                                level=lev, shift=0.0))
        prev_lines = lines
        y = y_met_top - max(1.0, 0.015 * h)
    xp.layers.append((-2.0 * h, y, float(rng.normal(0.05, contrast))))  # passivation
    # thin films inside the dielectric (etch stops, barrier caps, SiN / SiC layers)
    for _ in range(int(rng.integers(0, 4))):
        yt = float(rng.uniform(0.05, 1.0)) * si_y
        xp.layers.append((yt, yt + float(rng.uniform(1.0, 3.0)), float(rng.choice([-1, 1]) * rng.uniform(0.06, 0.15))))
    if p["xs_top"] == "air":
        xp.top_air_y = float(rng.uniform(0.2, 0.8)) * y
    return xp


def paint(xp: XPlan, rng: np.random.Generator, pixel_nm: float, meta: dict | None = None) -> Scene:
    """Render a plan into a cross-section scene (materials, relief, per-layer SE offsets)."""
    h, w = xp.shape
    yy = np.arange(h, dtype=np.float32)[:, None] + 0.5
    material = np.full((h, w), DIELECTRIC, np.uint8)
    se = np.zeros((h, w), np.float32)
    for y0, y1, off in xp.layers:
        band = (yy >= y0) & (yy < y1)
        se[np.broadcast_to(band, (h, w))] = off
    material[np.broadcast_to(yy >= xp.silicon_y, (h, w))] = SILICON
    se[np.broadcast_to(yy >= xp.silicon_y, (h, w))] = 0.0
    sh = 4  # cv2 fixed-point bits: sub-pixel polygon corners

    def fill(poly, value):
        pts = np.round(np.asarray(poly) * (1 << sh)).astype(np.int32)[None]
        cv2.fillPoly(material, pts, int(value), lineType=cv2.LINE_8, shift=sh)

    lt = xp.liner
    for ln in xp.lines:
        rect = np.array([[ln["x0"], ln["y0"]], [ln["x1"], ln["y0"]], [ln["x1"], ln["y1"]], [ln["x0"], ln["y1"]]])
        if lt > 0.3:
            fill(rect + np.array([[-lt, -0.0], [lt, 0.0], [lt, lt], [-lt, lt]]), LINER)
        fill(rect, METAL)
    for v in xp.vias:
        if lt > 0.3:
            fill(via_polygon(v, lt), LINER)
        fill(via_polygon(v), METAL)
    if xp.top_air_y is not None:
        air = np.broadcast_to(yy < xp.top_air_y, (h, w))
        material[air] = VOID
        se[air] = 0.0
    height = np.zeros((h, w), np.float32)
    for mat, r in RELIEF.items():
        height[material == mat] = r
    # polished metal grains and oxide mottle: weak, correlated texture
    se += 0.008 * smooth_noise(rng, (h, w), 2.0)
    se += np.where(material == METAL, 0.02, 0.0).astype(np.float32) * smooth_noise(rng, (h, w), 3.0)
    m = {"layout": LAYOUT, "style": xp.style, "n_vias": len(xp.vias), "n_lines": len(xp.lines), **(meta or {})}
    return Scene(height=height, material=material, pixel_nm=pixel_nm, view="cross-section", meta=m, se_offset=se)
