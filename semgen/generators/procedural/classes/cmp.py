"""``cmp``: chemical-mechanical polishing defects: scratches, chatter marks, slurry residue,
dishing / erosion of wide or dense features.

- **scratch**: a groove from an abrasive particle (see :mod:`.scratch`), usually fine and long;
- **chatter**: a row of short arc-shaped marks at a regular spacing, left by a particle bouncing
  under the pad (the arcs curve the same way, like a stutter);
- **residue**: smeared clusters of slurry residue (a thin, slightly brighter film with blobs);
- **dishing**: wide features (or a dense region, erosion) polished below the field: a shallow
  bowl that darkens towards its centre and rounds its edges.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..layouts.edits import emboss, next_id, stamp
from ..layouts.select import LayoutGenerator, all_params, edge_start
from ..layouts.shapes import Shape, polylines_coverage, random_path, smooth_noise
from ..params import ParamSpace, ParamSpec
from ..registry import register
from ..scene import RESIDUE, Scene
from .scratch import add_groove, scratch_coverage

LAYOUTS = {"lines": 0.45, "contacts": 0.15, "pads": 0.22, "logic": 0.18}
VARIANTS = ("scratch", "chatter", "residue", "dishing")

PARAMS = [
    ParamSpec("cmp_variant", "choice", "scratch", choices=VARIANTS, weights=(0.3, 0.3, 0.2, 0.2),
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
    ParamSpec("cmp_relief", "float", 0.25, 0.1, 0.4, limits=(0.0, 1.0),
              doc="directional (topographic) shading of marks and residue"),
    ParamSpec("cmp_light_deg", "float", 0.0, -180.0, 180.0, unit="deg", doc="detector direction"),
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
        bowl = np.clip(dt / max(float(dt.max()), 1.0), 0, 1) ** 0.7
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
    else:
        dishing(scene, rng, p["cmp_dish_depth"], next_id(scene))
    return scene


@register
class CMP(LayoutGenerator):
    name = "cmp"
    label = "cmp"
    version = "4"
    description = "CMP scratches, chatter marks, slurry residue and dishing / erosion"
    params = ParamSpace(all_params(LAYOUTS, PARAMS, periods=(4.0, 30.0)))

    def defect(self, built, p, rng, size):
        scene = built.scene(rng)
        scene.height *= np.float32(p["cmp_planarity"])  # a polished surface is nearly flat
        return add_cmp(scene, rng, p)
