"""``open``: a line broken or pinched.

Three kinds on line/space patterns:

- ``break``: the line is cut; the two ends are rounded (they retract more at the edges than at
  the centre, as etched / developed line ends do), the cut may be slanted;
- ``pinch``: necking: both edges pulled in over a Gaussian stretch, down to a thin neck;
- ``partial``: a bite from one side (mouse bite) that does not cut the line through.

Each open is one mask instance: the line material that is missing (for a pinch, the whole
pinched stretch of the line).

On pads and logic (``RASTER_LAYOUTS``) an open is a cut across a lead or wire at a point of its
medial axis, drawn on the layout's coverage raster (:func:`~..layouts.edits.open_coverage`); in a
cross-section, a metal line or via broken and filled with dielectric.
"""

from __future__ import annotations

import numpy as np

from ..layouts.edits import next_id, open_coverage
from ..layouts.lines import LineGrid, lines_scene, pick_site, window, wobble
from ..layouts.select import LayoutGenerator, lines_or_edit
from ..params import ParamSpace, ParamSpec
from ..portable import exp
from ..registry import register
from ..scene import DIELECTRIC, METAL, Scene

OPEN_TYPES = ("break", "pinch", "partial")
W_LINES = {"layout": ("lines",)}

OPEN_LINE_PARAMS = ParamSpace([
    ParamSpec("open_type", "choice", "break", choices=OPEN_TYPES, weights=(0.5, 0.3, 0.2), when=W_LINES,
              doc="break (cut, rounded ends), pinch (necking) or partial (bite from one side)"),
    ParamSpec("n_opens", "choice", 1, choices=(1, 2, 3), weights=(0.75, 0.18, 0.07), when=W_LINES,
              doc="opens in the image"),
    ParamSpec("open_length", "float", 1.0, 0.4, 2.5, limits=(0.1, 10.0), when=W_LINES,
              doc="gap length (break) / stretch (pinch, partial) along the line, in line CDs"),
    ParamSpec("end_rounding", "float", 0.5, 0.1, 1.0, limits=(0.0, 2.0), when=W_LINES,
              doc="extra retraction of a broken line end at its edges, in half CDs"),
    ParamSpec("open_slant", "float", 0.0, -0.4, 0.4, limits=(-2.0, 2.0), when=W_LINES,
              doc="slant of the cut across the line (dv/du)"),
    ParamSpec("pinch_depth", "float", 0.75, 0.5, 0.92, limits=(0.1, 0.98), when=W_LINES,
              doc="fraction of the line width removed at the neck (pinch) or bite depth (partial)"),
    ParamSpec("open_roughness", "float", 0.12, 0.0, 0.3, limits=(0.0, 1.0), when=W_LINES,
              doc="waviness of the cut / bite outline (relative)"),
])


def draw_opens(grid: LineGrid, p: dict, rng: np.random.Generator, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Cut, pinch or bite lines of ``grid``; returns (new coverage, mask, info)."""
    size = grid.size
    kind = p["open_type"]
    cov = cov.copy()
    mask = np.zeros((size, size), np.uint16)
    info: list[dict] = []
    placed: list[tuple[float, float]] = []
    for i in range(int(p["n_opens"])):
        k, vo = pick_site(grid, rng, margin=max(4.0, 0.08 * size), avoid=placed, min_dist=1.5 * grid.pitch_px)
        el, er = (float(x) for x in grid.edge_at(k, vo))
        w = max(er - el, 1.0)
        mid = (el + er) / 2.0
        jit = rng.uniform(0.8, 1.25, 3)
        length = float(np.clip(float(p["open_length"]) * float(grid.cd[k]) * jit[0], 2.0, 0.2 * size))
        rows, cols = window(grid, mid, vo, length + w + 4)
        in_line = grid.cell[rows, cols] == k
        du = grid.u[rows, cols] - np.float32(mid)
        dv = grid.v[rows, cols] - np.float32(vo)
        old = cov[rows, cols]
        rough = wobble(du / np.float32(max(w, 1.0)) * np.float32(4.0), rng, float(p["open_roughness"]))
        side = 1.0 if rng.random() < 0.5 else -1.0
        if kind == "break":
            dv_s = dv - np.float32(float(p["open_slant"]) * jit[1]) * du
            t = np.clip(np.abs(du) / np.float32(w / 2.0), 0.0, 1.0)
            # rounded ends: the cut widens towards the line edges (a convex line-end cap)
            half = np.float32(length / 2.0) + np.float32(float(p["end_rounding"]) * w / 2.0) * \
                (1.0 - np.sqrt(np.maximum(0.0, 1.0 - t * t))) + np.float32(length / 2.0) * rough
            keep = 1.0 - np.clip(half - np.abs(dv_s) + np.float32(0.5), 0.0, 1.0)
        elif kind == "pinch":
            s = length / 2.0
            depth = float(p["pinch_depth"]) * w / 2.0 * exp(-0.5 * (dv / np.float32(s)) ** 2) * (1.0 + rough)
            asym = np.float32(0.25 * side * jit[2] - 0.25 * side)  # one side a bit deeper
            lo = np.float32(el) + depth * (1.0 + asym)
            hi = np.float32(er) - depth * (1.0 - asym)
            keep = np.clip(grid.u[rows, cols] - lo + np.float32(0.5), 0.0, 1.0) * \
                np.clip(hi - grid.u[rows, cols] + np.float32(0.5), 0.0, 1.0)
            keep = np.where(np.abs(dv) < 3 * s, np.maximum(keep, 0.0), 1.0)
            keep = np.minimum(1.0, keep / np.maximum(old, 1e-3))  # relative to what was there
        else:  # partial: elliptical bite from one edge
            edge_u = np.float32(el if side < 0 else er)
            depth = float(p["pinch_depth"]) * w * jit[1]
            r = np.sqrt(((grid.u[rows, cols] - edge_u) / np.float32(depth)) ** 2 +
                        (dv / np.float32(length / 2.0)) ** 2) - rough
            keep = np.clip((r - 1.0) * np.float32(min(depth, length / 2.0)) + np.float32(0.5), 0.0, 1.0)
        keep = np.where(in_line, keep, 1.0).astype(np.float32)
        new = old * keep
        removed = (old > 0.5) & (new < 0.5)
        if kind == "pinch":  # the whole pinched stretch of the line, not just its two slivers
            removed |= in_line & (old > 0.5) & (np.abs(dv) < np.float32(length / 2.0))
        if not removed.any():
            removed = in_line & (old > 0.5) & (np.abs(dv) <= max(1.0, float(np.abs(dv[in_line]).min()) if in_line.any() else 1.0))
        cov[rows, cols] = new
        sub = mask[rows, cols]
        sub[removed & (sub == 0)] = i + 1
        x, y = grid.to_xy(mid, vo)
        info.append({"type": kind, "line": int(k), "x": round(x, 2), "y": round(y, 2)})
        placed.append((x, y))
    return cov, mask, info


def _open_on_lines(grid: LineGrid, p: dict, rng: np.random.Generator) -> Scene:
    cov, mask, info = draw_opens(grid, p, rng, grid.coverage())
    return lines_scene(grid, p, coverage=cov, mask=mask, meta={"defect": p["open_type"], "defects": info})


def open_edit(cov: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray]:
    """An open on the coverage of a ``features`` layout: (new coverage, the removed material)."""
    new, region, _ = open_coverage(cov, rng, gap_px=1.5 + 3.0 * severity, min_length_px=8.0)
    return new, region


def xs_open(scene: Scene, rng: np.random.Generator, severity: float) -> Scene:
    """A break through a metal line or via of a cross-section, filled with dielectric (in place)."""
    metal = (scene.material == METAL).astype(np.float32)
    new, region, _ = open_coverage(metal, rng, gap_px=1.5 + 3 * severity, min_length_px=8)
    scene.material[region] = DIELECTRIC
    scene.height[region] = 0.0
    scene.mask[region] = next_id(scene)
    return scene


#: layouts besides ``lines``, with their weights (``lines`` takes the rest)
RASTER_LAYOUTS = {"pads": 0.04, "logic": 0.07, "crosssection": 0.04}


@register
class Open(LayoutGenerator):
    name = "open"
    label = "open"
    version = "9"
    description = "a line broken (rounded ends), pinched (necking) or partly cut"
    # pad_style: only pads with leads can be cut open
    params, defects = lines_or_edit("open", RASTER_LAYOUTS, OPEN_LINE_PARAMS, on_lines=_open_on_lines,
                                    on_xsection=xs_open, edit=open_edit, restrict={"pad_style": ("pads",)})
