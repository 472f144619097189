"""Bridges and opens on any raster layout (contact arrays, pads, logic, cross-section lines).

These complement the foundation's line/space bridge and open: they work on the coverage of a
built layout (or the metal of a cross-section), so the physics tests can check connectivity
directly: a bridge joins two connected components of the feature material into one, an open
splits one into two.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..scene import DIELECTRIC, METAL, Scene
from .edits import components, next_id
from .shapes import Shape


def _interior(lab: np.ndarray, margin: int) -> np.ndarray:
    h, w = lab.shape
    ok = np.zeros(lab.shape, bool)
    ok[margin:h - margin, margin:w - margin] = True
    return ok


def bridge_coverage(cov: np.ndarray, rng: np.random.Generator, width_px: float, margin: int = 3,
                    max_gap_px: float | None = None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Join two neighbouring features of ``cov`` (>= 0.5 is material) with a bar of ``width_px``.

    Picks a random feature, then the place where another feature is nearest to it (among the
    near-nearest places, at random) and draws a capsule across the gap. Returns the new coverage,
    the bridge region (the bar, overlapping both features) and the labels of the two joined features.
    """
    binary = cov >= 0.5
    lab, n = components(binary)
    if n < 2:
        raise ValueError("a bridge needs two features")
    ok = _interior(lab, margin)
    ids = [i for i in np.unique(lab[ok & binary]) if i]
    rng.shuffle(ids)
    for a in ids:
        mine = lab == a
        others = binary & ~mine
        dt, (iy, ix) = ndi.distance_transform_edt(~others, return_indices=True)
        edge = mine & ~ndi.binary_erosion(mine) & ok
        if not edge.any():
            continue
        d = dt[edge]
        lim = d.min() * 1.3 + 1.0
        if max_gap_px is not None and d.min() > max_gap_px:
            continue
        ys, xs = np.nonzero(edge)
        cand = np.nonzero(d <= lim)[0]
        k = int(rng.choice(cand))
        y0, x0 = int(ys[k]), int(xs[k])
        y1, x1 = int(iy[y0, x0]), int(ix[y0, x0])
        b = lab[y1, x1]
        bar = np.zeros(cov.shape, np.float32)
        Shape("capsule", (x0 + 0.5, y0 + 0.5, x1 + 0.5, y1 + 0.5, width_px / 2)).splat(bar)
        new = np.maximum(cov, bar)
        # like the line/space bridges, the region covers the bar and the ends where it merges
        # into both features (so it touches both); it must add material somewhere
        if ((bar >= 0.5) & ~binary).any():
            return new, bar >= 0.5, (int(a), int(b))
    raise ValueError("no pair of features to bridge")


def open_coverage(cov: np.ndarray, rng: np.random.Generator, gap_px: float, margin: int = 4,
                  min_length_px: float = 12.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut an elongated feature of ``cov`` across its width with a gap of ``gap_px``.

    The cut is placed at a random point of the feature's medial axis and oriented across the
    local direction of the feature (principal axis of the nearby pixels). Returns the new
    coverage, the removed region and the label of the cut feature.
    """
    binary = cov >= 0.5
    lab, n = components(binary)
    ok = _interior(lab, margin)
    dt = ndi.distance_transform_edt(binary)
    ids = [i for i in np.unique(lab[ok & binary]) if i]
    rng.shuffle(ids)
    yy, xx = np.mgrid[0:cov.shape[0], 0:cov.shape[1]]
    for a in ids:
        mine = lab == a
        ys, xs = np.nonzero(mine)
        if max(np.ptp(ys), np.ptp(xs)) < min_length_px:
            continue
        half = float(dt[mine].max())
        # ridge points: local maxima of the distance map inside the feature, away from the border
        ridge = mine & ok & (dt >= 0.7 * half) & (dt >= ndi.maximum_filter(dt, 3) - 0.5)
        ry, rx = np.nonzero(ridge)
        if len(ry) == 0:
            continue
        for k in rng.permutation(len(ry))[:6]:
            cy, cx = int(ry[k]), int(rx[k])
            near = mine & ((yy - cy) ** 2 + (xx - cx) ** 2 <= (4 * half + 4) ** 2)
            py, px = np.nonzero(near)
            c = np.cov(np.stack([px - px.mean(), py - py.mean()]))
            evals, evecs = np.linalg.eigh(c)
            ux, uy = evecs[:, 1]  # along the feature
            vx, vy = -uy, ux      # across it
            L = 2.5 * float(dt[cy, cx]) + 3  # across the local width only
            cut = np.zeros(cov.shape, np.float32)
            Shape("capsule", (cx - vx * L, cy - vy * L, cx + vx * L, cy + vy * L, gap_px / 2)).splat(cut)
            new = cov * (1.0 - cut)
            region = (cut >= 0.5) & binary
            if region.any() and components(new >= 0.5)[1] > n:
                return new, region, int(a)
    raise ValueError("no feature long enough to open")


def built_bridge(built, rng: np.random.Generator, severity: float) -> Scene:
    """A bridge on a built ``features`` / ``lines`` layout; the mask is the bar (touching both)."""
    cov = built.geom.coverage()
    pitch_like = max(2.0, float(np.sqrt((cov >= 0.5).mean() + 1e-3)) * 6)
    width = max(1.5, (0.4 + 1.2 * severity) * pitch_like)
    new, region, _ = bridge_coverage(cov, rng, width)
    scene = built.scene(rng, cov=new)
    scene.mask[region] = next_id(scene)
    return scene


def built_open(built, rng: np.random.Generator, severity: float) -> Scene:
    """An open on a built ``features`` / ``lines`` layout; the mask is the removed material."""
    cov = built.geom.coverage()
    new, region, _ = open_coverage(cov, rng, gap_px=1.5 + 3.0 * severity, min_length_px=8.0)
    scene = built.scene(rng, cov=new)
    scene.mask[region] = next_id(scene)
    return scene


def xs_bridge(scene: Scene, rng: np.random.Generator, severity: float) -> Scene:
    """Metal joining two neighbouring metal features of a cross-section (in place)."""
    metal = (scene.material == METAL).astype(np.float32)
    new, region, _ = bridge_coverage(metal, rng, 1.5 + 3 * severity)
    region &= scene.material != METAL  # only dielectric / liner turns into metal
    scene.material[region] = METAL
    scene.height[region] = 4.0
    if scene.se_offset is not None:
        scene.se_offset[region] = 0.0
    scene.mask[(new >= 0.5) & (ndi.binary_dilation(region, iterations=1))] = next_id(scene)
    return scene


def xs_open(scene: Scene, rng: np.random.Generator, severity: float) -> Scene:
    """A break through a metal line or via of a cross-section, filled with dielectric (in place)."""
    metal = (scene.material == METAL).astype(np.float32)
    new, region, _ = open_coverage(metal, rng, gap_px=1.5 + 3 * severity, min_length_px=8)
    scene.material[region] = DIELECTRIC
    scene.height[region] = 0.0
    scene.mask[region] = next_id(scene)
    return scene


#: layouts of this package on which the bridge / open classes work, with their default weights
BRIDGE_LAYOUTS = {"contacts": 0.06, "pads": 0.05, "logic": 0.06, "crosssection": 0.03}
OPEN_LAYOUTS = {"pads": 0.04, "logic": 0.07, "crosssection": 0.04}


def severity_param(name: str, layouts) -> "ParamSpec":
    from ..params import ParamSpec

    return ParamSpec(name, "float", 0.5, 0.2, 1.0, limits=(0.0, 1.0), when={"layout": tuple(layouts)},
                     doc="defect size on contact / pad / logic / cross-section layouts (relative)")


def _with_retries(fn, name: str, p: dict, rng: np.random.Generator, size: int, what: str) -> Scene:
    from . import select

    for _ in range(6):  # a layout draw without a suitable pair / line: draw the layout again
        built = select.build(name, p, rng, size)
        try:
            scene = fn(built)
        except ValueError:
            continue
        scene.meta.update({"defect": what, "pixel_nm": round(float(scene.pixel_nm), 4)})
        return scene
    from ....errors import SemgenError

    raise SemgenError(f"could not place a {what} on layout {name!r} with these parameters")


def bridge_scene(name: str, p: dict, rng: np.random.Generator, size: int, severity: float) -> Scene:
    """A bridge on layout ``name`` (contact holes merged, pads / wires / metal lines joined)."""
    def fn(built):
        if built.kind == "xsection":
            return xs_bridge(built.scene(rng), rng, severity)
        return built_bridge(built, rng, severity)
    return _with_retries(fn, name, p, rng, size, "bridge")


def open_scene(name: str, p: dict, rng: np.random.Generator, size: int, severity: float) -> Scene:
    """An open on layout ``name`` (a pad lead, wire or metal line cut through)."""
    def fn(built):
        if built.kind == "xsection":
            return xs_open(built.scene(rng), rng, severity)
        return built_open(built, rng, severity)
    return _with_retries(fn, name, p, rng, size, "open")
