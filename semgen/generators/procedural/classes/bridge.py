"""``bridge``: material joining two neighbouring lines.

Three kinds on line/space patterns:

- ``full``: a bridge as wide as a line or more, at full line height (an "H" between two lines);
- ``micro``: a thin (sub-CD) bridge, often necked in the middle and partly lower than the lines;
- ``footing``: resist / residue left at the foot of the lines, low and wide with soft borders
  (a greyer film joining the line bottoms).

Each bridge is one instance in the mask, covering the bridge itself and the ends where it merges
into both lines (so the mask touches two lines).

On contact arrays, pads and logic (``RASTER_LAYOUTS``) a bridge is a bar across the narrowest gap
between a feature and its nearest neighbour, drawn on the layout's coverage raster
(:func:`~..layouts.edits.bridge_coverage`); in an interconnect cross-section, metal joining two
metal features.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..layouts.edits import bridge_coverage, next_id
from ..layouts.lines import LineGrid, lines_scene, pick_site, window, wobble
from ..layouts.select import LayoutGenerator, lines_or_edit
from ..params import ParamSpace, ParamSpec
from ..registry import register
from ..scene import LINE, METAL, RESIDUE, SUBSTRATE, Scene

BRIDGE_TYPES = ("full", "micro", "footing")
_WIDTH_SCALE = {"full": 1.0, "micro": 0.45, "footing": 0.8}
_HEIGHT_SCALE = {"full": 1.0, "micro": 0.9, "footing": 0.4}

W_LINES = {"layout": ("lines",)}

BRIDGE_LINE_PARAMS = ParamSpace([
    ParamSpec("bridge_type", "choice", "full", choices=BRIDGE_TYPES, weights=(0.4, 0.35, 0.25), when=W_LINES,
              doc="full (H-shaped), micro (thin, necked) or footing (low residue at the line feet)"),
    ParamSpec("n_bridges", "choice", 1, choices=(1, 2, 3), weights=(0.72, 0.2, 0.08), when=W_LINES,
              doc="bridges in the image"),
    ParamSpec("bridge_width", "float", 1.3, 0.7, 2.5, limits=(0.1, 6.0), when=W_LINES,
              doc="bridge width along the lines, in line CDs (x0.45 for micro, x0.8 for footing)"),
    ParamSpec("bridge_neck", "float", 0.3, 0.0, 0.6, limits=(0.0, 0.9), when=W_LINES,
              doc="narrowing of the bridge half-way between the lines (relative)"),
    ParamSpec("bridge_height", "float", 0.85, 0.6, 1.0, limits=(0.05, 1.5), when=W_LINES,
              doc="bridge height relative to the lines (x0.4 for footing)"),
    ParamSpec("bridge_skew", "float", 0.0, -0.5, 0.5, limits=(-2.0, 2.0), when=W_LINES,
              doc="slant of the bridge across the space (dv/du)"),
    ParamSpec("bridge_roughness", "float", 0.15, 0.0, 0.35, limits=(0.0, 1.0), when=W_LINES,
              doc="waviness of the bridge outline (relative)"),
    ParamSpec("bridge_charging", "float", 0.1, 0.0, 0.25, limits=(0.0, 1.0), when=W_LINES,
              doc="extra SE yield of the bridge (thin, isolated material charges up and glows)"),
    ParamSpec("bridge_span", "choice", 1, choices=(1, 2, 3), weights=(0.6, 0.3, 0.1), when=W_LINES,
              doc="spaces a full bridge crosses (a blob joining 2-4 lines of a dense array)"),
])


def draw_bridges(grid: LineGrid, p: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Bridges on a line grid.

    Returns
    -------
    extra_height : float32 (H, W), nm
    mask : uint16 (H, W), instance ids
    footing : bool (H, W), pixels of footing residue (drawn as RESIDUE material)
    info : list of dict, one per bridge (type, line pair, x, y)
    """
    size = grid.size
    H = float(p["line_height_nm"])
    kind = p["bridge_type"]
    extra = np.zeros((size, size), np.float32)
    mask = np.zeros((size, size), np.uint16)
    footing = np.zeros((size, size), bool)
    info: list[dict] = []
    placed: list[tuple[float, float]] = []
    span = int(p.get("bridge_span", 1)) if kind == "full" else 1
    span = max(1, min(span, grid.n_lines - 1))
    for i in range(int(p["n_bridges"])):
        k, vb = pick_site(grid, rng, pair=True, span=span, margin=max(4.0, 0.08 * size), avoid=placed,
                          min_dist=1.5 * grid.pitch_px * span)
        _, er0 = grid.edge_at(k, vb)
        el1, _ = grid.edge_at(k + span, vb)
        er0, el1 = float(er0), float(el1)
        gap = max(el1 - er0, 0.8)
        uc = (er0 + el1) / 2.0
        cd = float(min(grid.cd[k], grid.cd[k + span]))
        overlap = max(1.2, 0.35 * cd)
        a = gap / 2.0 + overlap
        # per-bridge jitter of the class-level shape parameters keeps several bridges different
        jit = rng.uniform(0.8, 1.25, 3)
        # in dense arrays a printed bridge is a blob about a pitch wide or more (real images show
        # bridges several pitches long); only micro-bridges stay thinner
        base = max(cd, (0.6 if kind == "micro" else 1.0) * float(grid.pitch_px))
        b0 = max(0.75, 0.5 * base * float(p["bridge_width"]) * _WIDTH_SCALE[kind] * jit[0])
        neck = min(0.9, float(p["bridge_neck"]) * jit[1] * (1.6 if kind == "micro" else 1.0))
        skew = float(p["bridge_skew"]) * jit[2]
        hfrac = float(p["bridge_height"]) * _HEIGHT_SCALE[kind]
        rows, cols = window(grid, uc, vb, a + 1.5 * b0 + abs(skew) * a + 2)
        du = grid.u[rows, cols] - np.float32(uc)
        dv = grid.v[rows, cols] - np.float32(vb) - np.float32(skew) * du
        t = np.clip(du / np.float32(a), -1.0, 1.0)
        b = np.float32(b0) * (1.0 - np.float32(neck) * (1.0 - t * t))
        b = b * (1.0 + wobble(t * np.float32(3.0), rng, float(p["bridge_roughness"])))
        b = np.maximum(b, np.float32(0.6))
        soft = np.float32(2.5 if kind == "footing" else 1.0)
        cov = np.clip((b - np.abs(dv)) / soft + np.float32(0.5), 0.0, 1.0) * \
            np.clip((np.float32(a) - np.abs(du)) / soft + np.float32(0.5), 0.0, 1.0)
        hb = cov * np.float32(hfrac * H)
        np.maximum(extra[rows, cols], hb, out=extra[rows, cols])
        inst = cov > 0.5
        if not inst.any():  # never leave a defect without a mask: take its central pixel
            inst = np.abs(du) + np.abs(dv) <= np.min(np.abs(du) + np.abs(dv))
        sub = mask[rows, cols]
        sub[inst & (sub == 0)] = i + 1
        if kind == "footing":
            footing[rows, cols] |= inst
        x, y = grid.to_xy(uc, vb)
        info.append({"type": kind, "lines": list(range(int(k), int(k) + span + 1)), "x": round(x, 2),
                     "y": round(y, 2)})
        placed.append((x, y))
    return extra, mask, footing, info


def _bridge_on_lines(grid: LineGrid, p: dict, rng: np.random.Generator) -> Scene:
    cov = grid.coverage()
    extra, mask, footing, info = draw_bridges(grid, p, rng)
    scene = lines_scene(grid, p, coverage=cov, extra_height=extra, mask=mask,
                        meta={"defect": p["bridge_type"], "defects": info})
    glow = float(p.get("bridge_charging", 0.0))
    if glow > 0:
        scene.se_offset = np.where(mask > 0, np.float32(glow), np.float32(0.0)).astype(np.float32)
    if footing.any():
        film = footing & (cov < 0.5)
        scene.material[film] = RESIDUE
    scene.material[(scene.material == SUBSTRATE) & (extra > 0.5 * float(p["line_height_nm"]))] = LINE
    return scene


def bridge_edit(cov: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray]:
    """A bridge on the coverage of a ``features`` layout: (new coverage, the bar touching both features)."""
    pitch_like = max(2.0, float(np.sqrt((cov >= 0.5).mean() + 1e-3)) * 6)
    width = max(1.5, (0.4 + 1.2 * severity) * pitch_like)
    new, region, _ = bridge_coverage(cov, rng, width)
    return new, region


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


#: layouts besides ``lines``, with their weights (``lines`` takes the rest)
RASTER_LAYOUTS = {"contacts": 0.06, "pads": 0.05, "logic": 0.06, "crosssection": 0.03}


@register
class Bridge(LayoutGenerator):
    name = "bridge"
    label = "bridge"
    version = "9"
    description = "material joining two neighbouring lines: full bridges, micro-bridges, footing"
    # xs_style: only interconnect stacks, whose metal is not one connected network
    params, defects = lines_or_edit("bridge", RASTER_LAYOUTS, BRIDGE_LINE_PARAMS, on_lines=_bridge_on_lines,
                                    on_xsection=xs_bridge, edit=bridge_edit, restrict={"xs_style": ("interconnect",)})
