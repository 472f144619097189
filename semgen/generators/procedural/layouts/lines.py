"""Line/space patterns at any orientation, with rough edges and line-to-line CD variation.

Geometry lives in a rotated frame: ``u`` across the lines, ``v`` along them (pixels, origin at
the image centre). Line ``k`` is centred at ``centres[k]`` (u) and its left / right edges at
``v`` are ``centres[k] -+ cd[k]/2 + left[k, v] / right[k, v]``. Pixels are assigned to the line
whose cell (centre +- pitch/2) holds them, so the whole raster is a handful of whole-array
operations whatever the number of lines. Defect classes edit a :class:`LineGrid` (edges, extra
shapes) before :func:`lines_scene` turns it into a :class:`~..scene.Scene`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import portable
from ..params import ParamSpace, ParamSpec
from ..roughness import edge_pair
from ..scene import LINE, SUBSTRATE, Scene

ORIENTATIONS = ("vertical", "horizontal", "diagonal")


def line_params(*, sigma=(0.4, 1.6), xi=(10.0, 40.0), alpha=(0.4, 0.9), corr=(-0.3, 0.6),
                periods=(3.0, 30.0), duty=(0.3, 0.65), pitch_nm=(36.0, 160.0),
                cd_variation=(0.0, 0.05), orientation_weights=(0.55, 0.3, 0.15),
                when: dict | None = None) -> ParamSpace:
    """The parameters of a line/space layout, with class-specific default ranges.

    Returned specs are active only ``when`` (e.g. ``{"layout": ("lines",)}``).
    """
    w = when
    wd = dict(when or {}, orientation=("diagonal",))  # the angle only matters for diagonal lines
    return ParamSpace([
        ParamSpec("orientation", "choice", "vertical", choices=ORIENTATIONS, weights=orientation_weights, when=w,
                  doc="direction of the lines"),
        ParamSpec("angle_deg", "float", 45.0, 20.0, 70.0, limits=(1.0, 89.0), unit="deg", when=wd,
                  doc="angle of diagonal lines from vertical (mirrored with diag_flip)"),
        ParamSpec("diag_flip", "bool", 0.5, when=wd, doc="mirror diagonal lines (\\ instead of /)"),
        ParamSpec("periods", "float", 10.0, periods[0], periods[1], log=True, limits=(1.5, 80.0), when=w,
                  doc="line/space periods across the image (pitch = size / periods)"),
        ParamSpec("pitch_nm", "float", 64.0, pitch_nm[0], pitch_nm[1], log=True, limits=(10.0, 5000.0),
                  unit="nm", when=w, doc="physical pitch (sets the pixel size)"),
        ParamSpec("duty", "float", 0.5, duty[0], duty[1], limits=(0.1, 0.9), when=w,
                  doc="line width (CD) / pitch"),
        ParamSpec("cd_variation", "float", 0.02, cd_variation[0], cd_variation[1], limits=(0.0, 0.3), when=w,
                  doc="line-to-line CD variation, relative sigma"),
        ParamSpec("placement_nm", "float", 0.5, 0.0, 1.5, limits=(0.0, 20.0), unit="nm", when=w,
                  doc="line placement error, sigma"),
        ParamSpec("line_height_nm", "float", 50.0, 30.0, 90.0, limits=(1.0, 1000.0), unit="nm", when=w,
                  doc="line height (drives the edge effect)"),
        ParamSpec("sigma_nm", "float", sum(sigma) / 2, sigma[0], sigma[1], limits=(0.0, 50.0), unit="nm", when=w,
                  doc="edge roughness: RMS deviation of each edge (Palasantzas sigma)"),
        ParamSpec("xi_nm", "float", math.sqrt(xi[0] * xi[1]), xi[0], xi[1], log=True, limits=(0.5, 2000.0),
                  unit="nm", when=w, doc="edge roughness correlation length"),
        ParamSpec("alpha", "float", sum(alpha) / 2, alpha[0], alpha[1], limits=(0.05, 2.0), when=w,
                  doc="edge roughness exponent (PSD slope -(2 alpha + 1))"),
        ParamSpec("lr_correlation", "float", sum(corr) / 2, corr[0], corr[1], limits=(-1.0, 1.0), when=w,
                  doc="left/right edge correlation (1: wiggling lines, constant width; -1: width varies)"),
    ])


@dataclass
class LineGrid:
    """A line/space pattern on a pixel grid, before rasterisation (all lengths in pixels)."""

    size: int
    theta_deg: float          #: line direction from vertical (0 vertical, 90 horizontal)
    pixel_nm: float
    pitch_px: float
    centres: np.ndarray       #: (n,) u of each line centre
    cd: np.ndarray            #: (n,) nominal width of each line
    left: np.ndarray          #: (n, m) left-edge deviation at v = v0 + j (px, + is towards +u)
    right: np.ndarray         #: (n, m) right-edge deviation
    v0: float                 #: v of sample 0 of the edge arrays
    u: np.ndarray = field(repr=False)   #: (H, W) across-line coordinate of each pixel
    v: np.ndarray = field(repr=False)   #: (H, W) along-line coordinate
    cell: np.ndarray = field(repr=False)  #: (H, W) int, index of the line whose cell holds the pixel
    axis_aligned: bool = True  #: v of every pixel is an edge sample (no interpolation needed)

    @property
    def n_lines(self) -> int:
        return len(self.centres)

    def to_uv(self, x: float, y: float) -> tuple[float, float]:
        c = (self.size - 1) / 2.0
        t = math.radians(self.theta_deg)
        return ((x - c) * math.cos(t) + (y - c) * math.sin(t), -(x - c) * math.sin(t) + (y - c) * math.cos(t))

    def to_xy(self, u: float, v: float) -> tuple[float, float]:
        c = (self.size - 1) / 2.0
        t = math.radians(self.theta_deg)
        return (c + u * math.cos(t) - v * math.sin(t), c + u * math.sin(t) + v * math.cos(t))

    def visible_lines(self, margin: float = 0.0) -> np.ndarray:
        """Indices of lines whose centre line crosses the image at least ``margin`` px inside."""
        t = math.radians(self.theta_deg)
        # support function of the (shrunk) image square in the across-line direction
        half = max(0.0, (self.size - 1) / 2.0 - margin)
        reach = half * (abs(math.cos(t)) + abs(math.sin(t)))
        return np.nonzero(np.abs(self.centres) <= reach)[0]

    def _coverage_axis(self) -> np.ndarray:
        """Whole-image coverage of an axis-aligned grid: gathers of whole rows, no per-pixel index."""
        vertical = abs(math.cos(math.radians(self.theta_deg))) > 0.5
        # along the across-line axis: u and the cell of each pixel; along the line axis: v
        u1 = np.ascontiguousarray(self.u[0, :] if vertical else self.u[:, 0])
        k1 = np.ascontiguousarray(self.cell[0, :] if vertical else self.cell[:, 0])
        v1 = self.v[:, 0] if vertical else self.v[0, :]
        j1 = np.clip(np.rint(v1 - np.float32(self.v0)).astype(np.int64), 0, self.left.shape[1] - 1)
        el = ((self.centres - self.cd / 2)[:, None] + self.left[:, j1]).astype(np.float32)  # (n, n_v)
        er = ((self.centres + self.cd / 2)[:, None] + self.right[:, j1]).astype(np.float32)
        uu = u1[:, None] + np.float32(0.5)
        a = uu - el[k1]
        np.clip(a, 0.0, 1.0, out=a)
        b = er[k1] - uu + np.float32(1.0)
        np.clip(b, 0.0, 1.0, out=b)
        a *= b  # (n_u, n_v)
        return np.ascontiguousarray(a.T) if vertical else a

    def edge_at(self, k: int, v: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Absolute u of line ``k``'s left and right edges at along-line positions ``v``."""
        j = np.clip(np.asarray(v, dtype=np.float64) - self.v0, 0, self.left.shape[1] - 1)
        j0 = np.floor(j).astype(int)
        j1 = np.minimum(j0 + 1, self.left.shape[1] - 1)
        f = j - j0
        lft = self.left[k, j0] * (1 - f) + self.left[k, j1] * f
        rgt = self.right[k, j0] * (1 - f) + self.right[k, j1] * f
        return self.centres[k] - self.cd[k] / 2 + lft, self.centres[k] + self.cd[k] / 2 + rgt

    def coverage(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Fraction (0..1, float32) of each pixel covered by a line (1-px box anti-aliasing).

        ``rows`` / ``cols`` restrict it to a window of the image.
        """
        if self.axis_aligned and rows == slice(None) and cols == slice(None):
            return self._coverage_axis()
        m = self.left.shape[1]
        j = self.v[rows, cols] - np.float32(self.v0)
        u = self.u[rows, cols]
        k = self.cell[rows, cols]
        lo = (self.centres - self.cd / 2).astype(np.float32)
        hi = (self.centres + self.cd / 2).astype(np.float32)
        left = self.left.astype(np.float32).ravel()
        right = self.right.astype(np.float32).ravel()
        if self.axis_aligned:
            idx = k * m + np.clip(np.rint(j).astype(np.int64), 0, m - 1)
            el = lo[k] + left[idx]
            er = hi[k] + right[idx]
        else:
            j = np.clip(j, 0, m - 1.001)
            j0 = j.astype(np.int64)
            f = j - j0
            idx = k * m + j0
            el = lo[k] + left[idx] + (left[idx + 1] - left[idx]) * f
            er = hi[k] + right[idx] + (right[idx + 1] - right[idx]) * f
        a = np.clip(u - el + np.float32(0.5), 0.0, 1.0)
        b = np.clip(er - u + np.float32(0.5), 0.0, 1.0)
        return a * b



def line_theta(p: dict) -> float:
    """Line direction from vertical (deg) for the sampled orientation."""
    o = p.get("orientation", "vertical")
    if o == "vertical":
        return 0.0
    if o == "horizontal":
        return 90.0
    a = float(p.get("angle_deg", 45.0))
    return 180.0 - a if p.get("diag_flip") else a


def make_line_grid(p: dict, rng: np.random.Generator, size: int, *, min_gap_px: float = 0.8) -> LineGrid:
    """Sample the geometry of a line/space pattern from parameters ``p`` (see :func:`line_params`).

    Edges are clamped so that neighbouring lines never touch (a bridge is a defect, drawn on purpose)
    and no line gets thinner than one pixel.
    """
    theta = line_theta(p)
    pitch_px = size / float(p["periods"])
    pixel_nm = float(p["pitch_nm"]) / pitch_px
    t = math.radians(theta)
    axis = abs(math.sin(2 * t)) < 1e-9
    c = (size - 1) / 2.0
    ax = np.arange(size, dtype=np.float32) - np.float32(c)
    if axis:
        # exact and cheap: u depends on one image axis only, v on the other (broadcast views)
        ct_i, st_i = round(math.cos(t)), round(math.sin(t))
        u = np.broadcast_to(ax[None, :] * ct_i + ax[:, None] * st_i, (size, size))
        v = np.broadcast_to(-ax[None, :] * st_i + ax[:, None] * ct_i, (size, size))
    else:
        ct, st = np.float32(math.cos(t)), np.float32(math.sin(t))
        u = ax[None, :] * ct + ax[:, None] * st
        v = -ax[None, :] * st + ax[:, None] * ct
    half = c * (1.0 if axis else math.sqrt(2.0)) + 2.0
    phase = float(rng.uniform(-0.5, 0.5)) * pitch_px
    kmax = int(math.ceil(half / pitch_px)) + 1
    ks = np.arange(-kmax, kmax + 1)
    n = len(ks)
    place = rng.standard_normal(n) * (float(p["placement_nm"]) / pixel_nm)
    centres = phase + ks * pitch_px + place
    cd0 = float(p["duty"]) * pitch_px
    cd = cd0 * (1.0 + float(p["cd_variation"]) * rng.standard_normal(n))
    cd = np.clip(cd, 1.0, pitch_px - 2 * min_gap_px)
    m = int(math.ceil(2 * half)) + 2
    v0 = -float(m // 2)
    if axis and size % 2 == 0:
        v0 += 0.5  # pixel centres sit at half-integers around the centre of an even grid
    lft, rgt = edge_pair(n, m, pixel_nm, float(p["sigma_nm"]), float(p["xi_nm"]), float(p["alpha"]),
                         float(p["lr_correlation"]), rng)
    lft /= pixel_nm
    rgt /= pixel_nm
    # keep lines apart and at least 1 px wide
    # (limits relative to the nominal cell, so that placement errors cannot push a line out of it)
    cell_half = pitch_px / 2.0 - min_gap_px / 2.0
    lft = np.clip(lft, (-(cell_half - cd / 2) - place)[:, None], None)
    rgt = np.clip(rgt, None, (cell_half - cd / 2 - place)[:, None])
    width = cd[:, None] + rgt - lft
    thin = width < 1.0
    if thin.any():
        fix = (1.0 - width) / 2.0
        lft = np.where(thin, lft - fix, lft)
        rgt = np.where(thin, rgt + fix, rgt)
    if axis:
        u1 = u[0, :] if abs(math.cos(t)) > 0.5 else u[:, 0]
        c1 = np.clip(np.rint((u1 - phase) / pitch_px).astype(np.int64) + kmax, 0, n - 1)
        cell = np.broadcast_to(c1[None, :] if abs(math.cos(t)) > 0.5 else c1[:, None], (size, size))
    else:
        cell = np.clip(np.rint((u - phase) / pitch_px).astype(np.int64) + kmax, 0, n - 1)
    return LineGrid(size=size, theta_deg=theta, pixel_nm=pixel_nm, pitch_px=pitch_px, centres=centres,
                    cd=cd, left=lft, right=rgt, v0=v0, u=u, v=v, cell=cell, axis_aligned=axis)


def lines_scene(grid: LineGrid, p: dict, *, coverage: np.ndarray | None = None,
                extra_height: np.ndarray | None = None, mask: np.ndarray | None = None,
                meta: dict | None = None) -> Scene:
    """The :class:`Scene` of a line grid (plus optional extra material / defect mask).

    ``extra_height`` (nm) is combined with the lines' height by maximum (bridges, footing).
    """
    cov = grid.coverage() if coverage is None else coverage
    h = cov * np.float32(p["line_height_nm"])
    if extra_height is not None:
        h = np.maximum(h, extra_height.astype(np.float32))
    material = np.where(h > np.float32(0.5 * p["line_height_nm"] * 0.5), LINE, SUBSTRATE).astype(np.uint8)
    info = {
        "layout": "lines",
        "orientation": p.get("orientation", "vertical"),
        "angle_deg": round(float(grid.theta_deg), 3),
        "pitch_nm": round(float(p["pitch_nm"]), 3),
        "pitch_px": round(float(grid.pitch_px), 3),
        "pixel_nm": round(float(grid.pixel_nm), 4),
        "cd_nm": round(float(p["duty"]) * float(p["pitch_nm"]), 3),
        "n_lines": int(len(grid.visible_lines())),
    }
    if meta:
        info.update(meta)
    edges = {"left_nm": grid.left * grid.pixel_nm, "right_nm": grid.right * grid.pixel_nm}
    return Scene(height=h, material=material, pixel_nm=grid.pixel_nm, mask=mask, view="top-down",
                 meta=info, edges=edges)


# -- helpers for defects drawn on a line grid ------------------------------------------------------

def pick_site(grid: LineGrid, rng: np.random.Generator, *, pair: bool = False, margin: float = 8.0,
              avoid: list[tuple[float, float]] | None = None, min_dist: float = 0.0,
              span: int = 1) -> tuple[int, float]:
    """A line ``k`` (or lines ``k .. k+span`` if ``pair``) and an along-line ``v`` whose point lies
    at least ``margin`` px inside the image (and ``min_dist`` px away from the ``avoid`` points).

    Always consumes the same random numbers (a fixed batch of candidates), so the stream of the
    rest of the image does not depend on where the site falls.
    """
    lo, hi = margin, grid.size - 1 - margin
    cand_k = rng.random(32)
    cand_v = rng.random(32)
    span = int(span) if pair else 0
    ks = np.arange(max(1, grid.n_lines - span))
    best = None
    for ck, cv in zip(cand_k, cand_v):
        k = int(ks[min(int(ck * len(ks)), len(ks) - 1)])
        u = float(grid.centres[k] + span * grid.pitch_px / 2) if pair else float(grid.centres[k])
        v = (cv - 0.5) * (grid.size - 2 * margin)
        x, y = grid.to_xy(u, v)
        if not (lo <= x <= hi and lo <= y <= hi):
            continue
        if avoid and any((x - ax) ** 2 + (y - ay) ** 2 < min_dist ** 2 for ax, ay in avoid):
            best = best or (k, v)
            continue
        return k, float(v)
    if best is not None:
        return best
    # fall back to the line nearest the image centre
    k = int(np.argmin(np.abs(grid.centres + span * grid.pitch_px / 2)))
    k = min(k, grid.n_lines - 1 - span)
    return k, 0.0


def window(grid: LineGrid, u: float, v: float, radius: float) -> tuple[slice, slice]:
    """Row / column slices of the image box holding the disc of ``radius`` px around (u, v)."""
    x, y = grid.to_xy(u, v)
    r = radius + 2.0
    x0, x1 = max(0, int(math.floor(x - r))), min(grid.size, int(math.ceil(x + r)) + 1)
    y0, y1 = max(0, int(math.floor(y - r))), min(grid.size, int(math.ceil(y + r)) + 1)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def wobble(t: np.ndarray, rng: np.random.Generator, amplitude: float, n: int = 3) -> np.ndarray:
    """A smooth random 1-D perturbation of ``t`` (a few random sines), peak about ``amplitude``."""
    f = rng.uniform(0.5, 3.0, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    a = rng.uniform(-1, 1, n) / n
    out = np.zeros_like(t, dtype=np.float32)
    for fi, pi, ai in zip(f, ph, a):
        out += np.float32(ai) * portable.sin(np.float32(fi) * t + np.float32(pi))
    return out * np.float32(amplitude)
