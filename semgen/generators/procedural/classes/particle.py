"""``particle``: a foreign particle on any top-down layout.

Small particles are domes (spheres, lumpy irregular grains, flat flakes, agglomerates of small
spheres) sitting on the local surface. Their picture in an SE image: a bright body shaded towards
the detector, a darker shadow on the far side (the detector sees less of the floor behind it), and
often a bright charging halo around an insulating particle.

Large 3-D particles (``boulder``: one lumpy rock; ``crumb``: a crumbly agglomerate of many grains)
fill 12-60 % of the width, as contamination in real inspection images does. They are built as a
height field about as tall as wide, so the imaging model's edge effect brightens their rim and
every grain's edge; slopes facing the detector brighten and the others darken (:func:`emboss`),
the body's own SE level is near the floor's (the brightness comes from the relief, not the
material), and the floor behind them lies in a cast shadow whose length follows their height
and the detector's elevation (:func:`~..layouts.relief.cast_shadow`). The mask is the footprint.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..layouts.edits import emboss, next_id, stamp
from ..layouts.relief import cast_shadow
from ..layouts.select import LayoutGenerator, all_params
from ..layouts.shapes import Shape, smooth_noise
from ..params import ParamSpace, ParamSpec
from ..portable import gaussian_blur, shift
from ..registry import register
from ..scene import PARTICLE, Scene

LAYOUTS = {"lines": 0.55, "contacts": 0.12, "pads": 0.12, "logic": 0.13, "film": 0.08}
SMALL = ("sphere", "irregular", "flake", "agglomerate")
#: large particles drawn as a 3-D height field with relief shading and a cast shadow
BIG = ("boulder", "crumb")
SHAPES = SMALL + BIG
_BIG = {"particle_shape": BIG}
_SMALL = {"particle_shape": SMALL}

PARAMS = [
    ParamSpec("particle_shape", "choice", "boulder", choices=SHAPES, weights=(0.08, 0.14, 0.06, 0.1, 0.34, 0.28),
              doc="particle morphology (boulder, crumb: large 3-D particles)"),
    ParamSpec("particle_size_frac", "float", 0.1, 0.04, 0.28, log=True, limits=(0.01, 0.8), when=_SMALL,
              doc="particle diameter / image width"),
    ParamSpec("particle_height_nm", "float", 150.0, 40.0, 400.0, log=True, limits=(1.0, 5000.0), unit="nm",
              when=_SMALL, doc="particle height above the surface"),
    ParamSpec("particle_count", "int", 1, 1, 2, limits=(1, 8), doc="particles per image"),
    ParamSpec("particle_shade", "float", 0.15, 0.0, 0.3, limits=(0.0, 1.0), when=_SMALL,
              doc="SE shading of the faces towards / away from the detector"),
    ParamSpec("particle_light_deg", "float", 0.0, -180.0, 180.0, unit="deg", doc="detector direction"),
    ParamSpec("particle_shadow", "float", 0.08, 0.0, 0.2, limits=(0.0, 1.0), when=_SMALL,
              doc="darkening of the floor behind"),
    ParamSpec("particle_halo", "float", 0.05, 0.0, 0.25, limits=(0.0, 1.0), doc="bright charging halo"),
    ParamSpec("particle_big_frac", "float", 0.3, 0.12, 0.6, log=True, limits=(0.02, 0.95), when=_BIG,
              doc="large particle's diameter / image width"),
    ParamSpec("particle_aspect", "float", 0.7, 0.35, 1.1, limits=(0.05, 3.0), when=_BIG,
              doc="large particle's height / radius"),
    ParamSpec("particle_rough", "float", 0.25, 0.08, 0.5, limits=(0.0, 1.0), when=_BIG,
              doc="relative height roughness of the large particle's surface"),
    ParamSpec("particle_relief", "float", 0.25, 0.1, 0.45, limits=(0.0, 1.0), when=_BIG,
              doc="SE shading of slopes facing towards / away from the detector"),
    ParamSpec("particle_body", "float", -0.2, -0.4, 0.0, limits=(-1.0, 1.0), when=_BIG,
              doc="SE level of the large particle's body relative to the particle material"),
    ParamSpec("particle_elev_deg", "float", 35.0, 20.0, 55.0, limits=(2.0, 88.0), unit="deg", when=_BIG,
              doc="detector elevation above the surface (shadow length)"),
    ParamSpec("particle_cast", "float", 0.2, 0.08, 0.35, limits=(0.0, 1.0), when=_BIG,
              doc="SE darkening of the floor in the cast shadow"),
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
    around it (for a large particle, as far as its shadow reaches), so the cost follows the
    particle's size, not the image's.
    """
    H, W = scene.shape
    big = p["particle_shape"] in BIG
    if big:
        r = max(0.5 * p["particle_big_frac"] * W / np.sqrt(p["particle_count"]), 3.0)
        shadow = p["particle_aspect"] / np.tan(np.deg2rad(p["particle_elev_deg"]))
        reach = int(np.ceil(r * (1.5 + shadow) + 8))
    else:
        r = max(0.5 * p["particle_size_frac"] * W, 1.5)
        reach = int(np.ceil(3.2 * r + 8))
    x0, x1 = max(0, int(cx) - reach), min(W, int(cx) + reach + 1)
    y0, y1 = max(0, int(cy) - reach), min(H, int(cy) + reach + 1)
    sub = Scene(scene.height[y0:y1, x0:x1].copy(), scene.material[y0:y1, x0:x1].copy(), scene.pixel_nm,
                mask=scene.mask[y0:y1, x0:x1].copy(),
                se_offset=None if scene.se_offset is None else scene.se_offset[y0:y1, x0:x1].copy())
    fp = (_add_big_particle if big else _add_particle)(sub, rng, p, cx - x0, cy - y0, r, instance)
    scene.height[y0:y1, x0:x1] = sub.height
    scene.material[y0:y1, x0:x1] = sub.material
    scene.mask[y0:y1, x0:x1] = sub.mask
    if scene.se_offset is None:
        scene.se_offset = np.zeros(scene.shape, np.float32)
    scene.se_offset[y0:y1, x0:x1] = sub.se_offset
    full = np.zeros(scene.shape, bool)
    full[y0:y1, x0:x1] = fp
    return full


def big_particle_relief(rng: np.random.Generator, shape, cx: float, cy: float, r: float, kind: str,
                        rough: float) -> tuple[np.ndarray, np.ndarray]:
    """Footprint coverage and unit height (height / radius, float32) of a large 3-D particle.

    ``boulder``: a lumpy outline (radial harmonics 2-7), a dome cut by 2-4 planes (flat facets)
    and a rough surface. ``crumb``: a low dome carrying 12-40 spherical grains of 0.12-0.3 of the
    radius, each sitting on the surface below it, so that every grain gets its own bright rim.

    Examples
    --------
    >>> cov, z = big_particle_relief(np.random.default_rng(0), (64, 64), 32, 32, 20, "crumb", 0.2)
    >>> bool(cov[32, 32] > 0.5), bool(z.max() > 0.5), float(z[cov == 0].max())
    (True, True, 0.0)
    """
    h, w = shape
    # lumpy, not star-shaped: the higher the harmonic, the smaller its amplitude (about 1 / k)
    harm = [(k, float(rng.uniform(0.03, 0.15)) * 2.0 / k, float(rng.uniform(0, 2 * np.pi))) for k in range(2, 8)]
    outline = Shape("ellipse", (cx, cy, r, r * float(rng.uniform(0.65, 1.0)), float(rng.uniform(0, np.pi))),
                    harmonics=harm)
    cov = np.zeros(shape, np.float32)
    outline.splat(cov)
    dt = cv2.distanceTransform((cov >= 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    t = np.clip(dt / max(float(dt.max()), 1.0), 0, 1)
    z = np.sqrt(t * (2 - t)).astype(np.float32)  # a dome: vertical walls at the outline
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "boulder":
        for _ in range(int(rng.integers(2, 5))):  # flat facets: the dome cut by planes
            a = float(rng.uniform(0, 2 * np.pi))
            plane = float(rng.uniform(0.55, 0.9)) - float(rng.uniform(0.3, 1.0)) * (
                (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)) / r
            np.minimum(z, np.maximum(plane, 0.15 * z), out=z)
    else:
        z *= np.float32(0.6)
        for _ in range(int(rng.integers(12, 41))):
            d, a = r * 0.85 * np.sqrt(float(rng.random())), float(rng.uniform(0, 2 * np.pi))
            gx, gy = cx + d * np.cos(a), cy + d * np.sin(a)
            rr = r * float(rng.uniform(0.12, 0.3))
            xi, yi = int(np.clip(round(gx), 0, w - 1)), int(np.clip(round(gy), 0, h - 1))
            z0 = float(z[yi, xi]) - 0.4 * rr / r  # the grain sits half sunk into the surface below
            # only the grain's box: outside it (more than rr + 0.5 px away) both terms are 0, a no-op
            y0, y1 = max(0, math.floor(gy - rr - 2)), min(h, math.ceil(gy + rr + 3))
            x0, x1 = max(0, math.floor(gx - rr - 2)), min(w, math.ceil(gx + rr + 3))
            if y0 >= y1 or x0 >= x1:
                continue
            box = (slice(y0, y1), slice(x0, x1))
            d2 = ((xx[box] - gx) ** 2 + (yy[box] - gy) ** 2) / rr ** 2
            grain = np.where(d2 < 1, z0 + rr / r * np.sqrt(np.clip(1 - d2, 0, 1)), 0).astype(np.float32)
            np.maximum(z[box], grain, out=z[box])
            np.maximum(cov[box], np.clip(rr - np.sqrt(d2) * rr + 0.5, 0, 1).astype(np.float32), out=cov[box])
    if rough > 0:
        bumps = 1.0 + rough * (0.6 * smooth_noise(rng, shape, max(1.0, r / 5))
                               + 0.4 * smooth_noise(rng, shape, max(0.7, r / 14)))
        z *= np.clip(bumps, 0.2, None)
    z = np.where(cov > 0, np.maximum(z, 0), 0).astype(np.float32)
    return cov, z


def _add_big_particle(scene: Scene, rng: np.random.Generator, p: dict, cx: float, cy: float, r: float,
                      instance: int) -> np.ndarray:
    cov, z = big_particle_relief(rng, scene.shape, cx, cy, r, p["particle_shape"], p["particle_rough"])
    hgt = (z * np.float32(p["particle_aspect"] * r * scene.pixel_nm)).astype(np.float32)
    base = scene.height.copy()
    # slopes facing the detector brighten, those facing away darken (the edge effect is imaging's)
    emboss(scene, hgt, p["particle_light_deg"], p["particle_relief"])
    tex = smooth_noise(rng, scene.shape, 1.0)
    footprint = stamp(scene, cov, material=PARTICLE, instance=instance,
                      se_add=np.float32(p["particle_body"]) + np.float32(0.03) * tex)
    scene.height[:] = np.where(cov > 0, np.maximum(base + hgt, scene.height), scene.height)
    # the floor (and lower grains) behind the particle, seen from the detector, lie in its shadow
    sh = cast_shadow(hgt, scene.pixel_nm, p["particle_light_deg"], p["particle_elev_deg"])
    sh = gaussian_blur(sh, 0.8)
    scene.se_offset -= (p["particle_cast"] * sh).astype(np.float32)
    if p["particle_halo"] > 0:
        fp = cov.astype(np.float32)
        halo = gaussian_blur(fp, max(1.0, 0.3 * r)) * (1 - fp)
        scene.se_offset += (p["particle_halo"] * 2.0 * halo).astype(np.float32)
    return footprint


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
        sh = gaussian_blur(shift(fp, -lx * d, -ly * d), max(0.8, 0.3 * r)) * (1 - fp)
        scene.se_offset -= (p["particle_shadow"] * sh).astype(np.float32)
    if p["particle_halo"] > 0:
        halo = gaussian_blur(fp, max(1.0, 0.5 * r)) * (1 - fp)
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
    version = "10"
    description = "foreign particles (spheres, grains, flakes, agglomerates, large 3-D boulders and crumbs) on any " \
                  "top-down layout"
    params = ParamSpace(all_params(LAYOUTS, PARAMS, periods=(4.0, 30.0)))

    def defect(self, built, p, rng, size):
        scene = built.scene(rng)
        return add_particles(scene, rng, p)
