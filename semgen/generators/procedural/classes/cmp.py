"""``cmp``: chemical-mechanical polishing defects: scratches, chatter marks, slurry residue,
dishing / erosion of wide or dense features.

- **scratch**: a groove from an abrasive particle (see :mod:`.scratch`), usually fine and long;
- **chatter**: a row of short arc-shaped marks at a regular spacing, left by a particle bouncing
  under the pad (the arcs curve the same way, like a stutter);
- **residue**: smeared clusters of slurry residue (a thin, slightly brighter film with blobs);
- **dishing**: wide features (or a dense region, erosion) polished below the field: a shallow
  bowl that darkens towards its centre and rounds its edges;
- **gouge**: a short, wide, deep lens-shaped groove dug by a large hard particle, its ploughed
  material heaped at the end; its far wall shades the floor (:func:`~..layouts.relief.cast_shadow`);
- **microscratch**: an arc of 3-12 fine concentric scratches (the pad's rotation drags a cluster of
  abrasive particles along circles whose centre lies outside the field);
- **pits**: a cluster of small round pits (grain pull-out, corrosion), each a bowl with bright rims.

The polished field (``film`` layout) is the most common view: a nearly featureless surface with
grain, sometimes with the edge of a pattern. Gouges, micro-scratches and pits are as deep as a
fraction of their width (``cmp_depth_ratio``), so they show at every magnification, as an
abrasive's indentation does.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..layouts.edits import emboss, next_id, stamp
from ..layouts.relief import cast_shadow
from ..layouts.select import LayoutGenerator, all_params, edge_start
from ..layouts.shapes import Shape, polyline_coverage, polylines_coverage, random_path, smooth_noise
from ..params import ParamSpace, ParamSpec
from ..portable import gaussian_blur, power
from ..registry import register
from ..scene import RESIDUE, Scene
from .scratch import add_groove, scratch_coverage

#: about half of real CMP images show a polished, nearly featureless field (``film``)
LAYOUTS = {"lines": 0.25, "contacts": 0.08, "pads": 0.14, "logic": 0.1, "film": 0.43}
VARIANTS = ("scratch", "chatter", "residue", "dishing", "gouge", "microscratch", "pits")

PARAMS = [
    ParamSpec("cmp_variant", "choice", "scratch", choices=VARIANTS, weights=(0.22, 0.16, 0.1, 0.06, 0.18, 0.16, 0.12),
              doc="kind of CMP defect"),
    ParamSpec("cmp_planarity", "float", 0.15, 0.03, 0.4, limits=(0.0, 1.0),
              doc="remaining feature relief after polishing / original height (the pattern shows mostly by "
                  "material contrast)"),
    ParamSpec("cmp_width_px", "float", 2.5, 1.2, 5.0, log=True, limits=(0.5, 30.0), unit="px",
              doc="scratch / chatter-mark width"),
    ParamSpec("cmp_depth_nm", "float", 30.0, 10.0, 80.0, limits=(1.0, 1000.0), unit="nm", doc="groove depth"),
    ParamSpec("cmp_marks", "int", 8, 4, 16, limits=(2, 60), doc="chatter marks in a row"),
    ParamSpec("cmp_mark_len_frac", "float", 0.1, 0.05, 0.2, doc="chatter-mark length / image width"),
    ParamSpec("cmp_residue_level", "float", 0.12, 0.04, 0.25, limits=(-0.5, 0.8), doc="SE excess of residue"),
    ParamSpec("cmp_dish_depth", "float", 0.5, 0.25, 0.8, limits=(0.0, 1.0), doc="dishing depth / feature height"),
    ParamSpec("cmp_relief", "float", 0.3, 0.15, 0.5, limits=(0.0, 1.0),
              doc="directional (topographic) shading of marks and residue"),
    ParamSpec("cmp_light_deg", "float", 0.0, -180.0, 180.0, unit="deg", doc="detector direction"),
    ParamSpec("cmp_depth_ratio", "float", 0.5, 0.25, 1.0, limits=(0.02, 3.0),
              doc="depth / width of gouges, micro-scratches and pits", when={"cmp_variant": VARIANTS[4:]}),
    ParamSpec("cmp_gouge_width_frac", "float", 0.06, 0.025, 0.15, log=True, limits=(0.005, 0.5),
              doc="gouge's widest width / image width", when={"cmp_variant": ("gouge",)}),
    ParamSpec("cmp_arcs", "int", 6, 3, 12, limits=(1, 40), doc="micro-scratches in the arc",
              when={"cmp_variant": ("microscratch",)}),
    ParamSpec("cmp_pits", "int", 8, 3, 20, limits=(1, 80), doc="pits in the cluster", when={"cmp_variant": ("pits",)}),
]


def chatter_coverage(rng: np.random.Generator, shape, p: dict) -> np.ndarray:
    """A row of arc-shaped marks along a gently curved track."""
    h, w = shape
    n = int(p["cmp_marks"])
    L = p["cmp_mark_len_frac"] * w
    spacing = float(rng.uniform(0.4, 1.0)) * L
    track_len = spacing * (n - 1)
    head = float(rng.uniform(0, 2 * np.pi))
    c0 = np.array([w / 2, h / 2]) - 0.5 * track_len * np.array([np.cos(head), np.sin(head)])
    c0 += rng.uniform(-0.15, 0.15, 2) * w
    track = random_path(rng, c0, head, track_len + 2, step=max(spacing, 1.0), wander=0.03, persistence=0.9)
    marks = []
    bend = float(rng.uniform(0.5, 1.3)) * np.sign(rng.uniform(-1, 1))
    skew = float(rng.uniform(-0.5, 0.5))
    for k in range(min(n, len(track))):
        cx, cy = track[k]
        ang = head + np.pi / 2 + skew
        s = np.linspace(-0.5, 0.5, 9)
        ln = L * float(rng.uniform(0.7, 1.2))
        # an arc: offset along the track by a parabola across it
        px = cx + np.cos(ang) * s * ln + np.cos(head) * bend * (s ** 2 - 0.25) * ln * 0.6
        py = cy + np.sin(ang) * s * ln + np.sin(head) * bend * (s ** 2 - 0.25) * ln * 0.6
        wd = p["cmp_width_px"] * np.clip(1.2 - 2.0 * np.abs(s), 0.3, 1.0)
        marks.append((np.stack([px, py], 1), wd))
    return polylines_coverage(shape, marks)


def residue_coverage(rng: np.random.Generator, shape) -> np.ndarray:
    """Clustered irregular blobs smeared along one direction."""
    h, w = shape
    cov = np.zeros(shape, np.float32)
    n = int(rng.integers(3, 12))
    cx, cy = rng.uniform(0.25, 0.75, 2) * np.array([w, h])
    head = float(rng.uniform(0, np.pi))
    spread = float(rng.uniform(0.08, 0.3)) * w
    for _ in range(n):
        t = float(rng.normal(0, 1))
        x = cx + np.cos(head) * t * spread + float(rng.normal(0, 0.05 * w))
        y = cy + np.sin(head) * t * spread + float(rng.normal(0, 0.05 * w))
        r = float(rng.uniform(0.015, 0.06)) * w
        harm = [(k, float(rng.uniform(0.05, 0.25)), float(rng.uniform(0, 6.28))) for k in (2, 3, 5)]
        Shape("ellipse", (x, y, r * float(rng.uniform(1.0, 2.5)), r, head), harmonics=harm).splat(cov)
    return cov


def dishing(scene: Scene, rng: np.random.Generator, depth_frac: float, instance: int) -> np.ndarray:
    """Bowl-shaped recess of the raised features inside a region (dishing / erosion)."""
    h, w = scene.shape
    raised = scene.height > 0.5 * float(scene.height.max() if scene.height.max() > 0 else 1.0)
    if not raised.any():
        raised = np.ones(scene.shape, bool)
    # erosion region: an ellipse over a dense patch, or the biggest feature for dishing
    lab_n, lab = cv2.connectedComponents(raised.astype(np.uint8), connectivity=4)
    sizes = np.bincount(lab.ravel())[1:] if lab_n > 1 else np.array([0])
    big = int(np.argmax(sizes)) + 1 if lab_n > 1 else 0
    if lab_n > 1 and sizes[big - 1] > 0.08 * h * w and rng.random() < 0.6:
        region = (lab == big).astype(np.float32)
        dt = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)
        bowl = power(np.clip(dt / max(float(dt.max()), 1.0), 0, 1), 0.7)
    else:
        r = np.array(rng.uniform(0.2, 0.4, 2)) * np.array([w, h])
        c = rng.uniform(0.3, 0.7, 2) * np.array([w, h])
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d2 = ((xx - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2
        bowl = np.clip(1 - d2, 0, 1) ** 0.7
        bowl = bowl * raised
    top = float(scene.height[raised].mean()) if raised.any() else 50.0
    drop = (depth_frac * top * bowl).astype(np.float32)
    scene.height -= drop
    if scene.se_offset is None:
        scene.se_offset = np.zeros(scene.shape, np.float32)
    scene.se_offset -= (0.12 * depth_frac * bowl).astype(np.float32)
    region = (bowl > 0.15) & raised
    scene.mask[region] = instance
    return region


def trench_dark(p: dict) -> float:
    """SE darkening at the bottom of a gouge, micro-scratch or pit: the deeper for its width, the
    fewer secondary electrons escape its walls (the trench effect)."""
    return 0.08 + 0.12 * float(p["cmp_depth_ratio"])


def gouge(scene: Scene, rng: np.random.Generator, p: dict, instance: int) -> np.ndarray:
    """A lens-shaped gouge: V-shaped in section, widest mid-way, ploughed material at its end."""
    h, w = scene.shape
    wmax = max(p["cmp_gouge_width_frac"] * w, 2.0)
    length = float(rng.uniform(4.0, 12.0)) * wmax
    head = float(rng.uniform(0, 2 * np.pi))
    c = rng.uniform(0.3, 0.7, 2) * np.array([w, h])
    start = c - 0.5 * length * np.array([np.cos(head), np.sin(head)])
    pts = random_path(rng, start, head, length, step=max(1.0, wmax / 3), wander=0.02, persistence=0.9)
    t = np.linspace(0, 1, len(pts))
    wd = wmax * np.sin(np.pi * np.clip(t, 0.02, 0.98)) ** 0.6 * (1 + 0.2 * smooth_noise(rng, (1, len(pts)),
                                                                                           max(1.0, len(pts) / 6))[0])
    cov = polyline_coverage(scene.shape, pts, np.maximum(wd, 0.5))
    if (cov >= 0.4).sum() < 3:
        cov = polyline_coverage(scene.shape, np.array([[0.3 * w, h / 2], [0.7 * w, h / 2]]), np.full(2, wmax))
    depth = p["cmp_depth_ratio"] * wmax * scene.pixel_nm
    dt = cv2.distanceTransform((cov >= 0.4).astype(np.uint8), cv2.DIST_L2, 3)
    bowl = np.clip(dt / max(float(dt.max()), 1.0), 0, 1).astype(np.float32) * cov  # V-shaped section
    # the ploughed material: a heap at the end of the gouge and a thin lip along it
    end = pts[-1]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    heap = np.exp(-((xx - end[0]) ** 2 + (yy - end[1]) ** 2) / (2 * (0.6 * wmax) ** 2)).astype(np.float32)
    rim = gaussian_blur(cv2.dilate((cov > 0.2).astype(np.uint8), np.ones((3, 3), np.uint8)), 1.0) * (1 - cov)
    dh = (depth * (0.5 * heap * (1 - cov) + 0.25 * rim - bowl)).astype(np.float32)
    emboss(scene, dh, p["cmp_light_deg"], p["cmp_relief"])
    scene.height += dh
    sh = cast_shadow(dh, scene.pixel_nm, p["cmp_light_deg"], 35.0)
    if scene.se_offset is None:
        scene.se_offset = np.zeros(scene.shape, np.float32)
    scene.se_offset -= (0.15 * sh).astype(np.float32)
    return stamp(scene, cov, se_add=-trench_dark(p) * bowl, instance=instance, thresh=0.4)


def microscratches(scene: Scene, rng: np.random.Generator, p: dict) -> None:
    """``cmp_arcs`` fine concentric arcs (one instance each) around a centre outside the field."""
    h, w = scene.shape
    R = float(rng.uniform(0.6, 3.0)) * w
    a = float(rng.uniform(0, 2 * np.pi))
    centre = np.array([w / 2, h / 2]) + (R + float(rng.uniform(-0.3, 0.3)) * w) * np.array([np.cos(a), np.sin(a)])
    spacing = float(rng.uniform(2.0, 8.0))
    width = float(rng.uniform(1.0, 2.2))
    for k in range(int(p["cmp_arcs"])):
        rk = R + (k - p["cmp_arcs"] / 2) * spacing * float(rng.uniform(0.6, 1.4))
        span = float(rng.uniform(0.5, 1.3)) * w / rk  # arc length of 0.5-1.3 widths
        mid = a + np.pi + float(rng.uniform(-0.15, 0.15)) * w / R
        th = np.linspace(mid - span / 2, mid + span / 2, max(8, int(span * rk / 2)))
        pts = centre[None] + rk * np.stack([np.cos(th), np.sin(th)], 1)
        tt = np.linspace(0, 1, len(th))
        wd = width * float(rng.uniform(0.6, 1.3)) * np.clip(np.minimum(tt, 1 - tt) / 0.15, 0.2, 1.0)
        cov = polyline_coverage(scene.shape, pts, wd)
        if (cov >= 0.4).sum() < 3:
            continue
        add_groove(scene, cov, p["cmp_depth_ratio"] * width * scene.pixel_nm, 0.3, trench_dark(p), next_id(scene),
                   light_deg=p["cmp_light_deg"], relief=p["cmp_relief"])


def pits(scene: Scene, rng: np.random.Generator, p: dict) -> None:
    """``cmp_pits`` round pits (one instance each) clustered around a point."""
    h, w = scene.shape
    c = rng.uniform(0.25, 0.75, 2) * np.array([w, h])
    spread = float(rng.uniform(0.05, 0.25)) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(p["cmp_pits"])):
        x, y = c + rng.normal(0, spread, 2)
        r = max(float(rng.uniform(0.008, 0.035)) * w, 1.0)
        d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
        cov = np.clip(r - d + 0.5, 0, 1).astype(np.float32)
        if (cov >= 0.5).sum() < 2:
            continue
        bowl = np.sqrt(np.clip(1 - (d / r) ** 2, 0, 1)).astype(np.float32)
        dh = -(p["cmp_depth_ratio"] * 2 * r * scene.pixel_nm * bowl)
        emboss(scene, dh, p["cmp_light_deg"], p["cmp_relief"])
        stamp(scene, cov, height_add=dh, se_add=-trench_dark(p) * bowl, instance=next_id(scene))


def add_cmp(scene: Scene, rng: np.random.Generator, p: dict, variant: str | None = None) -> Scene:
    v = variant or p["cmp_variant"]
    h, w = scene.shape
    if v == "scratch":
        start, head = edge_start(rng, w)
        cov = scratch_coverage(rng, scene.shape, start, head, float(rng.uniform(0.8, 1.6)) * w, p["cmp_width_px"],
                               float(rng.uniform(-0.01, 0.01)), 0.01)
        if (cov >= 0.4).sum() < 3:
            cov = scratch_coverage(rng, scene.shape, (0.0, h / 2), 0.0, 1.2 * w, p["cmp_width_px"], taper=False)
        add_groove(scene, cov, p["cmp_depth_nm"], 0.4, 0.06, next_id(scene), light_deg=p["cmp_light_deg"],
                   relief=p["cmp_relief"])
    elif v == "chatter":
        cov = chatter_coverage(rng, scene.shape, p)
        add_groove(scene, cov, p["cmp_depth_nm"], 0.6, 0.05, next_id(scene), light_deg=p["cmp_light_deg"],
                   relief=p["cmp_relief"])
    elif v == "residue":
        cov = residue_coverage(rng, scene.shape)
        tex = 1.0 + 0.3 * smooth_noise(rng, scene.shape, 1.5)
        dh = float(rng.uniform(8, 30)) * cov * tex
        emboss(scene, dh, p["cmp_light_deg"], p["cmp_relief"], blur_px=1.0)
        stamp(scene, cov, material=RESIDUE, height_add=dh, se_add=p["cmp_residue_level"] * tex,
              instance=next_id(scene))
    elif v == "dishing":
        dishing(scene, rng, p["cmp_dish_depth"], next_id(scene))
    elif v == "gouge":
        gouge(scene, rng, p, next_id(scene))
    elif v == "microscratch":
        microscratches(scene, rng, p)
    else:
        pits(scene, rng, p)
    if not scene.mask.any():  # every mark fell outside the frame: one scratch through the centre
        cov = scratch_coverage(rng, scene.shape, (0.0, h / 2), 0.0, 1.2 * w, p["cmp_width_px"], taper=False)
        add_groove(scene, cov, p["cmp_depth_nm"], 0.4, 0.06, next_id(scene), light_deg=p["cmp_light_deg"],
                   relief=p["cmp_relief"])
    return scene


@register
class CMP(LayoutGenerator):
    name = "cmp"
    label = "cmp"
    version = "10"
    description = "CMP scratches, gouges, chatter, micro-scratch arcs, pits, slurry residue, dishing / erosion, " \
                  "often on a polished field"
    # a polished field is seen at up to a few micrometres across, where these marks still show; it
    # is mostly a uniform mid-to-light grey (Cu or oxide after polishing) of fine grain, rarely with an edge
    params = ParamSpace(all_params(LAYOUTS, PARAMS, periods=(4.0, 30.0))).with_ranges(
        {"film_field_nm": {"range": [300.0, 5000.0]}, "film_level": {"choices": {"bright": 0.75, "dark": 0.25}},
         "film_grain_px": {"range": [1.0, 2.0]},
         "film_edge": {"choices": {"true": 0.25, "false": 0.75}}})

    def defect(self, built, p, rng, size):
        scene = built.scene(rng)
        scene.height *= np.float32(p["cmp_planarity"])  # a polished surface is nearly flat
        return add_cmp(scene, rng, p)
