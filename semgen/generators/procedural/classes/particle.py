"""``particle``: a foreign particle on any top-down layout.

Particles are domes (spheres, lumpy irregular grains, flat flakes, agglomerates of small spheres)
sitting on the local surface. Their picture in an SE image: a bright body shaded towards the
detector, a darker shadow on the far side (the detector sees less of the floor behind it), and
often a bright charging halo around an insulating particle. The mask is the particle's footprint.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..layouts.edits import next_id, stamp
from ..layouts.select import LayoutGenerator, all_params
from ..layouts.shapes import Shape, smooth_noise
from ..params import ParamSpace, ParamSpec
from ..registry import register
from ..scene import PARTICLE, Scene

LAYOUTS = {"lines": 0.55, "contacts": 0.12, "pads": 0.12, "logic": 0.13, "film": 0.08}
SHAPES = ("sphere", "irregular", "flake", "agglomerate")

PARAMS = [
    ParamSpec("particle_shape", "choice", "irregular", choices=SHAPES, weights=(0.25, 0.35, 0.15, 0.25),
              doc="particle morphology"),
    ParamSpec("particle_size_frac", "float", 0.1, 0.04, 0.28, log=True, limits=(0.01, 0.8),
              doc="particle diameter / image width"),
    ParamSpec("particle_height_nm", "float", 150.0, 40.0, 400.0, log=True, limits=(1.0, 5000.0), unit="nm",
              doc="particle height above the surface"),
    ParamSpec("particle_count", "int", 1, 1, 2, limits=(1, 8), doc="particles per image"),
    ParamSpec("particle_shade", "float", 0.15, 0.0, 0.3, limits=(0.0, 1.0),
              doc="SE shading of the faces towards / away from the detector"),
    ParamSpec("particle_light_deg", "float", 0.0, -180.0, 180.0, unit="deg", doc="detector direction"),
    ParamSpec("particle_shadow", "float", 0.08, 0.0, 0.2, limits=(0.0, 1.0), doc="darkening of the floor behind"),
    ParamSpec("particle_halo", "float", 0.05, 0.0, 0.25, limits=(0.0, 1.0), doc="bright charging halo"),
]


def particle_footprint(rng: np.random.Generator, shape, cx: float, cy: float, r: float, kind: str) -> tuple:
    """Footprint coverage and a unit dome profile for one particle of radius ``r`` px."""
    cov = np.zeros(shape, np.float32)
    dome = np.zeros(shape, np.float32)
    blobs = []
    if kind == "agglomerate":
        n = int(rng.integers(3, 10))
        for _ in range(n):
            rr = r * float(rng.uniform(0.3, 0.6))
            d = rng.normal(0, 0.45 * r, 2)
            blobs.append(Shape("ellipse", (cx + d[0], cy + d[1], rr, rr * float(rng.uniform(0.8, 1.0)),
                                           float(rng.uniform(0, np.pi)))))
    else:
        asp = {"sphere": (0.85, 1.0), "irregular": (0.55, 1.0), "flake": (0.25, 0.6)}[kind]
        harm = []
        if kind != "sphere":
            harm = [(k, float(rng.uniform(0.02, 0.14)), float(rng.uniform(0, 6.28))) for k in range(2, 7)]
        blobs.append(Shape("ellipse", (cx, cy, r, r * float(rng.uniform(*asp)), float(rng.uniform(0, np.pi))),
                           harmonics=harm))
    for b in blobs:
        c = np.zeros(shape, np.float32)
        b.splat(c)
        np.maximum(cov, c, out=cov)
        # dome of each blob from its distance to the outline
        bin_ = (c >= 0.5).astype(np.uint8)
        if bin_.any():
            dt = cv2.distanceTransform(bin_, cv2.DIST_L2, 3)
            rad = max(float(dt.max()), 1.0)
            t = np.clip(dt / rad, 0, 1)
            np.maximum(dome, np.sqrt(t * (2 - t)) * (min(b.geom[2], b.geom[3]) / r), out=dome)
    return cov, dome


def add_particle(scene: Scene, rng: np.random.Generator, p: dict, cx: float, cy: float, instance: int) -> np.ndarray:
    """Place one particle centred at (cx, cy) on ``scene`` (in place); returns its footprint.

    Everything (footprint, shading, shadow, halo) is computed in a window of a few particle radii
    around it, so the cost follows the particle's size, not the image's.
    """
    H, W = scene.shape
    r = max(0.5 * p["particle_size_frac"] * W, 1.5)
    reach = int(np.ceil(3.2 * r + 8))
    x0, x1 = max(0, int(cx) - reach), min(W, int(cx) + reach + 1)
    y0, y1 = max(0, int(cy) - reach), min(H, int(cy) + reach + 1)
    sub = Scene(scene.height[y0:y1, x0:x1].copy(), scene.material[y0:y1, x0:x1].copy(), scene.pixel_nm,
                mask=scene.mask[y0:y1, x0:x1].copy(),
                se_offset=None if scene.se_offset is None else scene.se_offset[y0:y1, x0:x1].copy())
    fp = _add_particle(sub, rng, p, cx - x0, cy - y0, r, instance)
    scene.height[y0:y1, x0:x1] = sub.height
    scene.material[y0:y1, x0:x1] = sub.material
    scene.mask[y0:y1, x0:x1] = sub.mask
    if scene.se_offset is None:
        scene.se_offset = np.zeros(scene.shape, np.float32)
    scene.se_offset[y0:y1, x0:x1] = sub.se_offset
    full = np.zeros(scene.shape, bool)
    full[y0:y1, x0:x1] = fp
    return full


def _add_particle(scene: Scene, rng: np.random.Generator, p: dict, cx: float, cy: float, r: float,
                  instance: int) -> np.ndarray:
    h, w = scene.shape
    cov, dome = particle_footprint(rng, scene.shape, cx, cy, r, p["particle_shape"])
    if p["particle_shape"] == "flake":
        dome *= 0.4
    rough = 1.0 + 0.15 * smooth_noise(rng, scene.shape, max(0.8, r / 6)) if p["particle_shape"] != "sphere" else 1.0
    hgt = (p["particle_height_nm"] * dome * rough).astype(np.float32)
    base = scene.height.copy()
    a = np.deg2rad(p["particle_light_deg"])
    lx, ly = np.cos(a), np.sin(a)
    gy, gx = np.gradient(hgt)
    gn = np.sqrt(gx * gx + gy * gy) + 1e-6
    facing = -(gx * lx + gy * ly) / gn * np.clip(gn / (scene.pixel_nm + 1e-6), 0, 1)
    footprint = stamp(scene, cov, material=PARTICLE, instance=instance,
                      se_add=p["particle_shade"] * facing + 0.05 * rough if p["particle_shape"] != "sphere"
                      else p["particle_shade"] * facing)
    scene.height[:] = np.where(cov > 0, np.maximum(base + hgt, scene.height), scene.height)
    if scene.se_offset is None:
        scene.se_offset = np.zeros(scene.shape, np.float32)
    fp = cov.astype(np.float32)
    if p["particle_shadow"] > 0:
        d = 0.6 * r
        M = np.float32([[1, 0, -lx * d], [0, 1, -ly * d]])
        sh = cv2.warpAffine(fp, M, (w, h), flags=cv2.INTER_LINEAR)
        sh = cv2.GaussianBlur(sh, (0, 0), max(0.8, 0.3 * r)) * (1 - fp)
        scene.se_offset -= (p["particle_shadow"] * sh).astype(np.float32)
    if p["particle_halo"] > 0:
        halo = cv2.GaussianBlur(fp, (0, 0), max(1.0, 0.5 * r)) * (1 - fp)
        scene.se_offset += (p["particle_halo"] * 2.0 * halo).astype(np.float32)
    return footprint


def add_particles(scene: Scene, rng: np.random.Generator, p: dict, n: int | None = None) -> Scene:
    """``n`` (default ``particle_count``) particles at random places away from the border."""
    h, w = scene.shape
    for _ in range(int(p["particle_count"] if n is None else n)):
        cx, cy = float(rng.uniform(0.2, 0.8) * w), float(rng.uniform(0.2, 0.8) * h)
        add_particle(scene, rng, p, cx, cy, next_id(scene))
    return scene


@register
class Particle(LayoutGenerator):
    name = "particle"
    label = "particle"
    version = "4"
    description = "foreign particles (spheres, grains, flakes, agglomerates) on any top-down layout"
    params = ParamSpace(all_params(LAYOUTS, PARAMS, periods=(4.0, 30.0)))

    def defect(self, built, p, rng, size):
        scene = built.scene(rng)
        return add_particles(scene, rng, p)
