"""``other``: what the other classes do not cover.

Variants: **collapse** (resist lines leaning onto their neighbours in a patch), **wiggle** (line
wiggling / buckling over a region), **scumming** (resist residue left in the spaces),
**incomplete_etch** (a region where holes and spaces did not open fully), **multiple** (defects of
several kinds at once: particle, scratch, crack, residue), and **plain** (``other_plain``):
defect-free pictures of layouts no other class shows (tilted 3-D views, logic routing), so that
``other`` and ``clean`` never share a distribution. A plain image has an empty mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..layouts.edits import next_id, stamp
from ..layouts.select import LayoutGenerator, all_params
from ..layouts.shapes import smooth_noise
from ..params import ParamSpace, ParamSpec
from ..portable import REFLECT, gaussian_blur, remap, sin
from ..registry import register
from ..scene import RESIDUE, Scene

LAYOUTS = {"lines": 0.3, "tilted": 0.3, "logic": 0.2, "pads": 0.1, "contacts": 0.1}
VARIANTS = ("collapse", "wiggle", "scumming", "incomplete_etch", "multiple")
#: layouts that no other class shows, where ``other`` also makes defect-free pictures
PLAIN_LAYOUTS = ("tilted", "logic")

PARAMS = [
    ParamSpec("other_variant", "choice", "collapse", choices=VARIANTS, weights=(0.25, 0.2, 0.2, 0.15, 0.2),
              doc="the defect shown"),
    ParamSpec("other_plain", "bool", 0.35, doc="a defect-free picture of a rare layout (tilted view, logic)",
              when={"layout": PLAIN_LAYOUTS}),
    ParamSpec("other_region_frac", "float", 0.35, 0.2, 0.6, doc="defect region size / image width"),
    ParamSpec("other_amplitude", "float", 0.5, 0.25, 0.9, limits=(0.0, 3.0),
              doc="displacement (collapse, wiggle) in pattern pitches, or residue strength"),
    ParamSpec("other_wavelength_frac", "float", 0.25, 0.1, 0.5, doc="wiggle wavelength / image width"),
]


def _pitch_px(scene: Scene) -> float:
    pp = scene.meta.get("pitch_px")
    if pp:
        return float(pp)
    pn = scene.meta.get("pitch_nm")
    return float(pn) / scene.pixel_nm if pn else scene.shape[1] / 8.0


def warp_scene(scene: Scene, dx: np.ndarray, dy: np.ndarray) -> Scene:
    """Resample every map of ``scene`` at (x + dx, y + dy) (in place)."""
    h, w = scene.shape
    mx = (np.arange(w, dtype=np.float32)[None, :] + dx).astype(np.float32)
    my = (np.arange(h, dtype=np.float32)[:, None] + dy).astype(np.float32)
    scene.height = remap(scene.height, mx, my, True, REFLECT)
    scene.material = remap(scene.material, mx, my, False, REFLECT)
    scene.mask = remap(scene.mask, mx, my, False, REFLECT)
    if scene.se_offset is not None:
        scene.se_offset = remap(scene.se_offset, mx, my, True, REFLECT)
    return scene


def _window(rng, shape, frac):
    h, w = shape
    c = rng.uniform(0.3, 0.7, 2) * np.array([w, h])
    r = frac * w / 2 * rng.uniform(0.7, 1.3, 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.exp(-(((xx - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2) * 1.5).astype(np.float32)


def _changed(before: Scene, after: Scene, win: np.ndarray) -> np.ndarray:
    return ((before.material != after.material) | (np.abs(before.height - after.height) > 5.0)) & (win > 0.1)


def collapse(scene: Scene, rng, p) -> Scene:
    win = _window(rng, scene.shape, p["other_region_frac"])
    a = p["other_amplitude"] * _pitch_px(scene)
    ang = float(rng.uniform(0, 2 * np.pi))
    before = Scene(scene.height.copy(), scene.material.copy(), scene.pixel_nm)
    # leaning lines: a sheared displacement that grows along the lines, capped by the window
    warp_scene(scene, a * np.cos(ang) * win, a * np.sin(ang) * win)
    region = _changed(before, scene, win)
    region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)).astype(bool)
    scene.mask[region] = next_id(scene)
    return scene


def wiggle(scene: Scene, rng, p) -> Scene:
    h, w = scene.shape
    win = _window(rng, scene.shape, max(p["other_region_frac"], 0.4) * 1.6)
    lam = p["other_wavelength_frac"] * w
    a = 0.35 * p["other_amplitude"] * _pitch_px(scene)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = smooth_noise(rng, (h, w), lam / 3)
    dx = a * win * sin(2 * np.pi * yy / lam + 1.5 * noise)
    dy = a * win * sin(2 * np.pi * xx / lam + 1.5 * noise)
    before = Scene(scene.height.copy(), scene.material.copy(), scene.pixel_nm)
    warp_scene(scene, dx.astype(np.float32), dy.astype(np.float32))
    region = _changed(before, scene, win) & (win > 0.3)
    region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)).astype(bool)
    scene.mask[region] = next_id(scene)
    return scene


def _floor(scene: Scene) -> np.ndarray:
    top = float(scene.height.max()) if scene.height.max() > 0 else 1.0
    return scene.height < 0.3 * top


def scumming(scene: Scene, rng, p) -> Scene:
    win = _window(rng, scene.shape, p["other_region_frac"])
    blob = (win * (1 + 0.6 * smooth_noise(rng, scene.shape, 2.0))) > 0.5
    region = blob & _floor(scene)
    cov = gaussian_blur(region, 0.8)
    top = float(scene.height.max()) if scene.height.max() > 0 else 50.0
    stamp(scene, cov, material=RESIDUE, height_add=0.3 * top * p["other_amplitude"],
          se_add=0.05 + 0.1 * smooth_noise(rng, scene.shape, 1.0) * 0.3, instance=next_id(scene))
    return scene


def incomplete_etch(scene: Scene, rng, p) -> Scene:
    win = _window(rng, scene.shape, p["other_region_frac"])
    top = float(scene.height.max()) if scene.height.max() > 0 else 50.0
    region = (win > 0.35) & _floor(scene)
    cov = gaussian_blur(region, 1.0)
    level = top * (0.4 + 0.4 * min(p["other_amplitude"], 1.0))
    inst = next_id(scene)
    scene.height[:] = np.maximum(scene.height, (level * cov).astype(np.float32))
    r = stamp(scene, cov, se_add=0.06, instance=inst)
    scene.material[r] = scene.material[~_floor(scene)].max() if (~_floor(scene)).any() else scene.material[r]
    return scene


def multiple(scene: Scene, rng, p) -> Scene:
    from .cmp import residue_coverage
    from .crack import crack_cover, paint_crack
    from .particle import add_particle
    from .scratch import add_groove, scratch_coverage
    from ..layouts.select import edge_start

    h, w = scene.shape
    kinds = list(rng.choice(["particle", "scratch", "crack", "residue"], size=int(rng.integers(2, 4)), replace=False))
    for k in kinds:
        if k == "particle":
            pp = {"particle_size_frac": float(rng.uniform(0.05, 0.15)), "particle_shape": "irregular",
                  "particle_height_nm": 150.0, "particle_shade": 0.15, "particle_light_deg": 0.0,
                  "particle_shadow": 0.05, "particle_halo": 0.05}
            add_particle(scene, rng, pp, float(rng.uniform(0.2, 0.8) * w), float(rng.uniform(0.2, 0.8) * h),
                         next_id(scene))
        elif k == "scratch":
            s, hd = edge_start(rng, w)
            cov = scratch_coverage(rng, scene.shape, s, hd, 1.3 * w, float(rng.uniform(1.5, 3.5)), 0.0, 0.01,
                                   taper=False)
            if (cov >= 0.4).any():
                add_groove(scene, cov, 40.0, 0.4, 0.1, next_id(scene), light_deg=float(rng.uniform(-180, 180)),
                           relief=0.2)
        elif k == "crack":
            s, hd = edge_start(rng, w)
            cov, _ = crack_cover(rng, scene.shape, s, hd, 0.7 * w, 2.0, 0.2)
            if (cov >= 0.4).any():
                paint_crack(scene, cov, 60.0, next_id(scene))
        else:
            cov = residue_coverage(rng, scene.shape)
            stamp(scene, cov, material=RESIDUE, height_add=15.0, se_add=0.12, instance=next_id(scene))
    return scene


_VARIANT_FN = {"collapse": collapse, "wiggle": wiggle, "scumming": scumming, "incomplete_etch": incomplete_etch,
               "multiple": multiple}


@register
class Other(LayoutGenerator):
    name = "other"
    label = "other"
    version = "8"
    description = "pattern collapse, wiggling, scumming, incomplete etch, mixed defects; rare layouts"
    params = ParamSpace(all_params(LAYOUTS, PARAMS, periods=(4.0, 40.0)))

    def masked(self, p: dict) -> bool:
        return not p.get("other_plain", False)

    def defect(self, built, p, rng, size):
        scene = built.scene(rng)
        variant = "plain" if p.get("other_plain") else p["other_variant"]
        scene.meta["variant"] = variant
        if variant == "plain":
            return scene
        scene = _VARIANT_FN[variant](scene, rng, p)
        if not scene.mask.any():  # the pattern had nothing to move here: fall back to residue
            scene.meta["variant"] = "scumming"
            scumming(scene, rng, {**p, "other_region_frac": 0.5})
        if not scene.mask.any():
            scene.meta["variant"] = "multiple"
            multiple(scene, rng, p)
        return scene
