"""``scratch``: long straight or gently curved scratches across a pattern.

A scratch is a groove ploughed through the surface: material removed along a path (height drops,
the floor shows, darker), a thin raised lip of displaced material on both sides (bright), and a
width that varies slowly and tapers at its ends. Several parallel scratches come from one abrasive
particle cluster. The mask is the groove.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..layouts.edits import emboss, next_id, stamp
from ..layouts.select import LayoutGenerator, all_params, edge_start
from ..layouts.shapes import polyline_coverage, random_path, smooth_noise
from ..params import ParamSpace, ParamSpec
from ..portable import gaussian_blur
from ..registry import register
from ..scene import SUBSTRATE, Scene

LAYOUTS = {"lines": 0.4, "contacts": 0.12, "pads": 0.12, "logic": 0.16, "film": 0.2}

PARAMS = [
    ParamSpec("scratch_count", "int", 1, 1, 3, limits=(1, 10), doc="scratches (parallel when > 1)"),
    ParamSpec("scratch_width_px", "float", 2.5, 1.0, 6.0, log=True, limits=(0.5, 40.0), unit="px",
              doc="groove width"),
    ParamSpec("scratch_depth_nm", "float", 40.0, 15.0, 120.0, limits=(1.0, 1000.0), unit="nm", doc="groove depth"),
    ParamSpec("scratch_curvature", "float", 0.0, -0.012, 0.012, limits=(-0.2, 0.2),
              doc="heading change per 2 px step (0: straight)"),
    ParamSpec("scratch_wander", "float", 0.01, 0.0, 0.03, limits=(0.0, 0.5), doc="random heading noise per step"),
    ParamSpec("scratch_lip", "float", 0.35, 0.0, 0.7, limits=(0.0, 2.0), doc="raised lip height / groove depth"),
    ParamSpec("scratch_dark", "float", 0.08, 0.0, 0.2, limits=(-0.5, 0.5), doc="SE darkening inside the groove"),
    ParamSpec("scratch_relief", "float", 0.2, 0.08, 0.35, limits=(0.0, 1.0),
              doc="directional (topographic) shading of the groove"),
    ParamSpec("scratch_light_deg", "float", 0.0, -180.0, 180.0, unit="deg", doc="detector direction"),
]


def scratch_coverage(rng: np.random.Generator, shape, start, heading, length, width, curvature=0.0,
                     wander=0.01, taper=True) -> np.ndarray:
    """Coverage of one scratch groove along a gently curving path."""
    pts = random_path(rng, start, heading, length, step=2.0, wander=wander, persistence=0.95, curvature=curvature)
    n = len(pts)
    wd = width * (1.0 + 0.25 * smooth_noise(rng, (1, n), max(1.0, n / 8))[0])
    if taper:
        t = np.linspace(0, 1, n)
        end = float(rng.uniform(0.6, 1.0))
        wd *= np.clip(np.minimum(t / 0.08, (end - t) / 0.1), 0.0, 1.0) ** 0.5
        pts, wd = pts[t <= end], wd[t <= end]
    return polyline_coverage(shape, pts, np.maximum(wd, 0.3))


def add_groove(scene: Scene, cov: np.ndarray, depth_nm: float, lip: float, dark: float, instance: int,
               cut_to_floor: bool = False, light_deg: float = 0.0, relief: float = 0.0) -> np.ndarray:
    """Plough a groove of coverage ``cov`` into ``scene`` (in place); returns the groove region.

    ``relief`` is the gain of the directional shading of the groove and its lips (see
    :func:`~..layouts.edits.emboss`), seen from ``light_deg``.
    """
    rim = cv2.dilate((cov > 0.2).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=1).astype(np.float32)
    rim = gaussian_blur(rim, 0.8) * (1 - cov)
    dh = (lip * depth_nm * rim - depth_nm * cov).astype(np.float32)
    scene.height += (lip * depth_nm * rim).astype(np.float32)
    emboss(scene, dh, light_deg, relief)
    region = stamp(scene, cov, height_add=-depth_nm, se_add=-dark, instance=instance, thresh=0.4)
    if cut_to_floor:
        scene.material[region] = SUBSTRATE
    return region


def add_scratches(scene: Scene, rng: np.random.Generator, p: dict, length_frac=(0.8, 1.6)) -> Scene:
    """``scratch_count`` parallel scratches crossing the image."""
    h, w = scene.shape
    start, head = edge_start(rng, w)
    spacing = float(rng.uniform(3.0, 10.0)) * p["scratch_width_px"]
    nx, ny = -np.sin(head), np.cos(head)
    for k in range(int(p["scratch_count"])):
        off = (k - (p["scratch_count"] - 1) / 2) * spacing
        s = (start[0] + nx * off, start[1] + ny * off)
        width = p["scratch_width_px"] * float(rng.uniform(0.6, 1.2))
        cov = scratch_coverage(rng, scene.shape, s, head, float(rng.uniform(*length_frac)) * w, width,
                               p["scratch_curvature"], p["scratch_wander"])
        if (cov >= 0.4).sum() < 3:
            continue
        add_groove(scene, cov, p["scratch_depth_nm"], p["scratch_lip"], p["scratch_dark"], next_id(scene),
                   light_deg=p["scratch_light_deg"], relief=p["scratch_relief"])
    if not scene.mask.any():  # every path left the frame: put one through the centre
        cov = scratch_coverage(rng, scene.shape, (0.0, h / 2), 0.0, 1.2 * w, p["scratch_width_px"], 0.0, 0.0,
                               taper=False)
        add_groove(scene, cov, p["scratch_depth_nm"], p["scratch_lip"], p["scratch_dark"], next_id(scene),
                   light_deg=p["scratch_light_deg"], relief=p["scratch_relief"])
    return scene


@register
class Scratch(LayoutGenerator):
    name = "scratch"
    label = "scratch"
    version = "8"
    description = "long straight or curved scratches across any top-down pattern"
    params = ParamSpace(all_params(LAYOUTS, PARAMS, periods=(4.0, 30.0)))

    def defect(self, built, p, rng, size):
        return add_scratches(built.scene(rng), rng, p)
