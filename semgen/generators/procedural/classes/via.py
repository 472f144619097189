"""``via``: defective vias and contacts.

Top-down (contact / via hole arrays): a **missing** hole (the film is intact where the array
expects one), **merged** neighbours, **undersized** or **oversized** holes, a **misplaced** hole,
a **malformed** (lumpy, non-round) hole. Cross-section (interconnect stacks and contact plugs): a
**void** in the fill, **incomplete** fill (the bottom or top of the via left empty), a **seam**
along the via's axis, a via **misaligned** to the line below it.

The mask marks the defective hole (for a missing one, where it should be) or the void.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..layouts import crosssection
from ..layouts.edits import interior_shapes, neighbours, next_id, shape_mask, stamp
from ..layouts.select import LayoutGenerator, all_params
from ..layouts.shapes import Shape, polyline_coverage, smooth_noise
from ..params import ParamSpace, ParamSpec
from ..registry import register
from ..scene import VOID, Scene

LAYOUTS = {"crosssection": 0.75, "contacts": 0.25}
TOP_DEFECTS = ("missing", "merged", "undersized", "oversized", "misplaced", "malformed")
XS_DEFECTS = ("void", "incomplete", "seam", "misaligned")

PARAMS = [
    ParamSpec("via_defect_top", "choice", "missing", choices=TOP_DEFECTS, doc="top-down defect kind",
              when={"layout": ("contacts",)}),
    ParamSpec("via_defect_xs", "choice", "void", choices=XS_DEFECTS, weights=(0.4, 0.25, 0.15, 0.2),
              doc="cross-section defect kind", when={"layout": ("crosssection",)}),
    ParamSpec("via_count", "int", 1, 1, 2, limits=(1, 6), doc="defective vias per image"),
    ParamSpec("via_severity", "float", 0.6, 0.3, 1.0, limits=(0.05, 1.0),
              doc="how far from nominal (size change, shift, void size, lumpiness)"),
]


def _topdown(built, p: dict, rng: np.random.Generator) -> Scene:
    fs = built.geom
    h, w = fs.shape
    kind = p["via_defect_top"]
    sev = p["via_severity"]
    pitch = p["hole_pitch_nm"] / built.pixel_nm
    cand = interior_shapes(fs, 1.0) or list(range(len(fs.shapes)))
    masks: list[np.ndarray] = []
    used: set[int] = set()
    expected: list[tuple[float, float]] = []
    for _ in range(int(p["via_count"])):
        free = [k for k in cand if k not in used]
        if not free:
            break
        k = int(rng.choice(free))
        used.add(k)
        s = fs.shapes[k]
        before = shape_mask(s, fs.shape)
        g = list(s.geom)
        if kind == "missing":
            expected.append((g[0], g[1]))
            s.geom = (g[0], g[1], 0.0, 0.0, g[4])
            after = np.zeros(fs.shape, np.float32)
        elif kind == "merged":
            nb = [j for j in neighbours(fs, k, 1.3 * pitch) if j not in used]
            if not nb:
                nb = neighbours(fs, k, 3 * pitch)
            j = nb[0]
            used.add(j)
            o = fs.shapes[j]
            r = min(g[2], g[3]) * (0.6 + 0.3 * sev)
            link = Shape("capsule", (g[0], g[1], o.geom[0], o.geom[1], r), tag=("merge", k, j))
            fs.shapes.append(link)
            after = np.maximum(shape_mask(link, fs.shape), shape_mask(o, fs.shape))
        elif kind in ("undersized", "oversized"):
            # oversized holes are bounded so that they do not touch their neighbours
            lim = 0.5 * pitch / max(g[2], g[3]) * 0.95
            f = 1.0 - 0.6 * sev if kind == "undersized" else min(1.0 + 0.7 * sev, max(lim, 1.15))
            s.geom = (g[0], g[1], g[2] * f, g[3] * f, g[4])
            after = shape_mask(s, fs.shape)
        elif kind == "misplaced":
            a = float(rng.uniform(0, 2 * np.pi))
            d = (0.15 + 0.25 * sev) * pitch
            s.geom = (g[0] + d * np.cos(a), g[1] + d * np.sin(a), g[2], g[3], g[4])
            after = shape_mask(s, fs.shape)
        else:
            s.harmonics = [(m, float(rng.uniform(0.08, 0.22)) * sev, float(rng.uniform(0, 6.28))) for m in (2, 3, 4, 5)]
            s.geom = (g[0], g[1], g[2] * float(rng.uniform(0.8, 1.15)), g[3] * float(rng.uniform(0.8, 1.15)), g[4])
            after = shape_mask(s, fs.shape)
        masks.append(np.maximum(before, after))
    scene = built.scene(rng)
    for m in masks:
        scene.mask[m >= 0.5] = next_id(scene)
    scene.meta.update({"via_defect": kind, "expected_holes": [[round(x, 2), round(y, 2)] for x, y in expected]})
    return scene


def _fill_region(v: dict, shape) -> np.ndarray:
    """Boolean map of a via's fill (its polygon)."""
    m = np.zeros(shape, np.uint8)
    pts = np.round(crosssection.via_polygon(v) * 16).astype(np.int32)[None]
    cv2.fillPoly(m, pts, 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def _xsection(built, p: dict, rng: np.random.Generator) -> Scene:
    xp = built.geom
    h, w = xp.shape
    kind = p["via_defect_xs"]
    sev = p["via_severity"]
    vias = [i for i, v in enumerate(xp.vias) if v["wt"] < 0.6 * w and 0 <= v["xc"] - v["wt"] / 2
            and v["xc"] + v["wt"] / 2 <= w and v["y1"] - v["y0"] > 4]
    if not vias:
        # a stack without a usable via: add one through the lowest metal level
        ln = max(xp.lines, key=lambda l: min(l["x1"], w) - max(l["x0"], 0)) if xp.lines else None
        y0 = ln["y1"] if ln else 0.3 * h
        xp.vias.append(dict(xc=w / 2, wt=0.15 * w, wb=0.1 * w, y0=y0, y1=xp.silicon_y + 1, level=0, shift=0.0))
        vias = [len(xp.vias) - 1]
    chosen = list(rng.choice(vias, size=min(int(p["via_count"]), len(vias)), replace=False))
    if kind == "misaligned":
        for i in chosen:
            v = xp.vias[i]
            v["shift"] = float(rng.choice([-1, 1])) * (0.3 + 0.4 * sev) * v["wt"]
    scene = built.scene(rng)
    for i in chosen:
        v = xp.vias[i]
        fill = _fill_region(v, xp.shape)
        inst = next_id(scene)
        if kind == "misaligned":
            scene.mask[fill] = inst
            continue
        xc = v["xc"] + v.get("shift", 0.0)
        y0, y1 = v["y0"], min(v["y1"], h)
        hgt = y1 - y0
        cov = np.zeros(xp.shape, np.float32)
        if kind == "void":
            cy = y0 + hgt * float(rng.uniform(0.35, 0.85))
            wl = v["wt"] + (v["wb"] - v["wt"]) * (cy - y0) / max(hgt, 1)
            rx = max(1.0, wl * (0.15 + 0.25 * sev))
            ry = max(1.2, rx * float(rng.uniform(0.8, 2.5)))
            Shape("ellipse", (xc + float(rng.uniform(-0.15, 0.15)) * wl, cy, rx, ry, 0.0),
                  harmonics=[(3, 0.1, float(rng.uniform(0, 6)))]).splat(cov)
        elif kind == "incomplete":
            frac = 0.2 + 0.5 * sev
            yy = np.arange(h, dtype=np.float32)[:, None] + 0.5
            if rng.random() < 0.65:  # bottom left empty (pinch-off / poor nucleation)
                band = yy > y1 - frac * hgt
            else:                     # top left open (under-filled)
                band = yy < y0 + frac * hgt
            cov = (np.broadcast_to(band, xp.shape) & fill).astype(np.float32)
        else:  # seam: a thin slit along the axis, widest in the middle
            n = 12
            t = np.linspace(0.1, 0.95, n)
            ys = y0 + t * hgt
            xs = xc + 0.6 * smooth_noise(rng, (1, n), 2.0)[0]
            wd = (0.6 + 1.2 * sev) * np.sin(np.pi * (t - 0.05) / 0.95) + 0.3
            cov = polyline_coverage(xp.shape, np.stack([xs, ys], 1), wd)
        cov *= fill
        region = stamp(scene, cov, material=VOID, height=-40.0, se=0.0, instance=inst, thresh=0.4)
        if not region.any():  # sub-pixel void: mark the pixel it sits in
            cy, cx = int(np.clip(y0 + hgt / 2, 0, h - 1)), int(np.clip(xc, 0, w - 1))
            scene.material[cy, cx] = VOID
            scene.mask[cy, cx] = inst
    scene.meta.update({"via_defect": kind, "defect_vias": [int(i) for i in chosen]})
    return scene


@register
class Via(LayoutGenerator):
    name = "via"
    label = "via"
    version = "8"
    description = "missing / merged / resized / misplaced / malformed contacts; voids, seams, misaligned vias"
    params = ParamSpace(all_params(LAYOUTS, PARAMS))
    defects = {"xsection": _xsection, "*": _topdown}
