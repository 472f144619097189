"""``crack``: cracks in films, interconnect stacks and solder bumps.

- top-down film cracks (blanket films, pads, logic): a meandering dark gap from an edge with a
  few branches, tapering towards its tips; the gap is a trench (bright edges by the edge effect);
- solder-bump cross-sections: a fatigue crack running along the intermetallic interface from the
  bump's edge inwards, or a crack through the solder body;
- interconnect cross-sections: a crack through the dielectric stack from the top, or a
  delamination along a layer interface.

The mask is the open gap; tests check it is thin and long (skeleton length >> area / length).
"""

from __future__ import annotations

import numpy as np

from ..layouts import bumps
from ..layouts.edits import next_id, stamp
from ..layouts.select import LayoutGenerator, all_params, edge_start
from ..layouts.shapes import polyline_coverage, random_path, smooth_noise
from ..params import ParamSpace, ParamSpec
from ..registry import register
from ..scene import VOID, Scene

LAYOUTS = {"bump": 0.5, "crosssection": 0.2, "film": 0.22, "pads": 0.08}

PARAMS = [
    ParamSpec("crack_width_px", "float", 1.8, 0.8, 3.5, log=True, limits=(0.3, 20.0), unit="px",
              doc="crack opening at its widest"),
    ParamSpec("crack_length_frac", "float", 0.8, 0.45, 1.3, limits=(0.1, 3.0), doc="crack length / image width"),
    ParamSpec("crack_wander", "float", 0.2, 0.08, 0.35, limits=(0.0, 1.5), doc="meander (radians per step)"),
    ParamSpec("crack_branches", "int", 1, 0, 3, limits=(0, 10), doc="side branches (film cracks)"),
    ParamSpec("crack_depth_nm", "float", 60.0, 20.0, 150.0, limits=(1.0, 5000.0), unit="nm",
              doc="depth of a film crack"),
    ParamSpec("crack_mode", "choice", "interface", choices=("interface", "through"), weights=(0.6, 0.4),
              doc="cross-sections: along an interface or through the material"),
]


def crack_cover(rng: np.random.Generator, shape, start, heading, length, width, wander, taper=True):
    """Coverage of one tapering crack along a meandering path; returns (coverage, path)."""
    pts = random_path(rng, start, heading, length, step=1.5, wander=wander, persistence=0.6)
    n = len(pts)
    t = np.linspace(0, 1, n)
    wd = width * (1 + 0.3 * smooth_noise(rng, (1, n), 2.0)[0])
    if taper:
        wd *= (1 - t) ** 0.8
    return polyline_coverage(shape, pts, np.maximum(wd, 0.35)), pts


def paint_crack(scene: Scene, cov: np.ndarray, depth_nm: float, instance: int) -> np.ndarray:
    """Open a crack of coverage ``cov``: a dark gap (VOID), edges bright by the edge effect.

    The wall slope is capped (depth <= 1.5 pixels) so that a gap one or two pixels wide stays dark
    instead of being swamped by the glow of its own edges.
    """
    depth = min(float(depth_nm), 1.5 * scene.pixel_nm)
    return stamp(scene, cov, material=VOID, height_add=-depth, se_add=-0.1, instance=instance, thresh=0.4)


def film_crack(built, p: dict, rng: np.random.Generator) -> Scene:
    scene = built.scene(rng)
    h, w = scene.shape
    for _ in range(6):  # a path that wanders straight out of the frame is drawn again
        start, head = edge_start(rng, w)
        cov, pts = crack_cover(rng, scene.shape, start, head, p["crack_length_frac"] * w, p["crack_width_px"],
                               p["crack_wander"])
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        if inside.sum() * 1.5 >= 0.3 * w:
            break
    for _ in range(int(p["crack_branches"])):
        k = int(rng.integers(len(pts) // 5, max(len(pts) // 5 + 1, 4 * len(pts) // 5)))
        d = pts[min(k + 1, len(pts) - 1)] - pts[max(k - 1, 0)]
        hb = float(np.arctan2(d[1], d[0])) + float(rng.choice([-1, 1]) * rng.uniform(0.4, 1.1))
        cb, _ = crack_cover(rng, scene.shape, pts[k], hb, float(rng.uniform(0.15, 0.45)) * p["crack_length_frac"] * w,
                            0.6 * p["crack_width_px"], p["crack_wander"])
        np.maximum(cov, cb, out=cov)
    if (cov >= 0.4).sum() < 4:
        cov, _ = crack_cover(rng, scene.shape, (0.0, h / 2), 0.0, 0.8 * w, max(1.0, p["crack_width_px"]), 0.1)
    paint_crack(scene, cov, p["crack_depth_nm"], next_id(scene))
    return scene


def bump_crack(built, p: dict, rng: np.random.Generator) -> Scene:
    bp = built.geom
    scene = built.scene(rng)
    h, w = scene.shape
    solder = bumps.solder_region(bp)
    mode = p["crack_mode"] if solder.any() else "interface"
    cov = None
    if mode == "through":
        ys, xs = np.nonzero(solder)
        k = int(rng.integers(len(xs)))
        head = float(rng.uniform(-0.6, 0.6)) + (0 if rng.random() < 0.5 else np.pi)
        cov, _ = crack_cover(rng, scene.shape, (float(xs[k]), float(ys[k])), head, p["crack_length_frac"] * w * 0.6,
                             p["crack_width_px"], p["crack_wander"])
        cov *= solder  # cracks stay inside the solder
        span = np.ptp(np.nonzero((cov >= 0.4).any(0))[0]) if (cov >= 0.4).any() else 0
        if span < 0.2 * w:  # ran out of the solder at once: make it an interface crack instead
            cov = None
    if cov is None:
        # fatigue crack in the solder just above the IMC, from one side of the bump inwards
        cols = np.nonzero(solder.any(0))[0]
        x0, x1 = (int(cols.min()), int(cols.max())) if len(cols) else (0, w - 1)
        frac = float(np.clip(p["crack_length_frac"], 0.2, 1.0))
        n = max(4, int((x1 - x0) * frac))
        top_side = bp.imc_top is not None and rng.random() < 0.3
        xs = np.arange(n, dtype=np.float64)
        if rng.random() < 0.5:
            xs = x0 + xs
        else:
            xs = x1 - xs
        xi = np.clip(xs.astype(int), 0, w - 1)
        off = bp.imc_px * float(rng.uniform(0.3, 1.2))
        y = (bp.imc_top[xi] + off) if top_side else (bp.imc_bot[xi] - off)
        y = y + 0.6 * smooth_noise(rng, (1, n), 3.0)[0] * p["crack_wander"] * 4
        t = np.linspace(0, 1, n)
        wd = p["crack_width_px"] * (1 - 0.8 * t) * (1 + 0.3 * smooth_noise(rng, (1, n), 2.0)[0])
        cov = polyline_coverage(scene.shape, np.stack([xs, y], 1), np.maximum(wd, 0.4))
    if (cov >= 0.4).sum() < 4:
        cov, _ = crack_cover(rng, scene.shape, (0.0, bp.y_bot - 3), 0.0, 0.6 * w, 1.5, 0.05)
    paint_crack(scene, cov, 40.0, next_id(scene))
    return scene


def stack_crack(built, p: dict, rng: np.random.Generator) -> Scene:
    xp = built.geom
    scene = built.scene(rng)
    h, w = scene.shape
    if p["crack_mode"] == "interface" and xp.layers:
        # delamination along the top of a layer
        ys = [y0 for y0, y1, _ in xp.layers if 3 < y0 < xp.silicon_y - 2]
        y = float(rng.choice(ys)) if ys else xp.silicon_y - 2
        start = (float(rng.uniform(-0.1, 0.3)) * w, y)
        cov, _ = crack_cover(rng, scene.shape, start, float(rng.normal(0, 0.03)), p["crack_length_frac"] * w,
                             p["crack_width_px"], 0.03)
    else:
        start = (float(rng.uniform(0.2, 0.8)) * w, 0.0)
        cov, _ = crack_cover(rng, scene.shape, start, np.pi / 2 + float(rng.normal(0, 0.2)),
                             p["crack_length_frac"] * xp.silicon_y, p["crack_width_px"], p["crack_wander"])
    if (cov >= 0.4).sum() < 4:
        cov, _ = crack_cover(rng, scene.shape, (w / 2, 0.0), np.pi / 2, 0.6 * h, 1.5, 0.05)
    paint_crack(scene, cov, 40.0, next_id(scene))
    return scene


@register
class Crack(LayoutGenerator):
    name = "crack"
    label = "crack"
    version = "8"
    description = "film cracks, bump fatigue cracks along the IMC, cracks and delamination in stacks"
    params = ParamSpace(all_params(LAYOUTS, PARAMS))
    defects = {"bump": bump_crack, "xsection": stack_crack, "*": film_crack}
