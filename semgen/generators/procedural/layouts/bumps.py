"""Solder-bump cross-sections: a board or die pad, the intermetallic (IMC) layer with its
scalloped top, the solder body (barrel between two pads, a free ball, or a cap on a copper pillar)
with its two-phase microstructure, and the underfill, mould or air around it.

:func:`plan` returns a :class:`BumpPlan` (outline and interfaces in pixels) so that the crack
class can follow an interface or cut through the solder before :func:`paint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import portable
from ..params import ParamSpec
from ..scene import DIELECTRIC, IMC, METAL, SILICON, SOLDER, VOID, Scene
from .shapes import smooth_noise

LAYOUT = "bump"
_W = {"layout": (LAYOUT,)}
STYLES = ("barrel", "ball", "pillar")

RELIEF = {DIELECTRIC: 0.0, METAL: 5.0, IMC: 8.0, SOLDER: 2.0, SILICON: 0.0, VOID: -40.0}

PARAMS = [
    ParamSpec("bump_style", "choice", "barrel", choices=STYLES, weights=(0.5, 0.25, 0.25),
              doc="solder barrel between two pads, free ball on a pad, or cap on a Cu pillar", when=_W),
    ParamSpec("bump_width_frac", "float", 0.8, 0.55, 1.15, doc="solder width / image width", when=_W),
    ParamSpec("bump_imc_px", "float", 2.5, 1.0, 5.0, unit="px", doc="IMC layer thickness", when=_W),
    ParamSpec("bump_surround", "choice", "underfill", choices=("underfill", "air", "mould"),
              weights=(0.45, 0.35, 0.2), doc="what fills the space around the bump", when=_W),
    ParamSpec("bump_phase_contrast", "float", 0.025, 0.005, 0.05, doc="SE contrast of the solder's phases", when=_W),
    ParamSpec("bump_voids", "int", 0, 0, 2, doc="process voids in the solder (round, dark)", when=_W),
]


@dataclass
class BumpPlan:
    """Geometry of one bump, in pixels (y down)."""

    shape: tuple[int, int]
    style: str
    xc: float
    y_bot: float          # top of the bottom pad's IMC (solder starts here)
    y_top: float          # bottom of the top IMC (solder ends here); <= 0 for a free ball
    half_width: np.ndarray  # (H,) solder half width per row (0 outside the solder)
    imc_bot: np.ndarray   # (W,) y of the bottom IMC's top (scalloped)
    imc_top: np.ndarray | None  # (W,) y of the top IMC's bottom
    imc_px: float
    pad_half: float
    voids: list = field(default_factory=list)  # (cx, cy, r)


def plan(p: dict, rng: np.random.Generator, shape: tuple[int, int]) -> BumpPlan:
    h, w = shape
    style = p["bump_style"]
    xc = w / 2 + float(rng.uniform(-0.1, 0.1)) * w
    hw = 0.5 * p["bump_width_frac"] * w
    imc = p["bump_imc_px"]
    y_bot = float(rng.uniform(0.7, 0.88)) * h
    yy = np.arange(h, dtype=np.float32) + 0.5
    if style == "ball":
        # free solder ball: a sphere truncated by the pad; the top may leave the frame
        r = hw * float(rng.uniform(1.0, 1.25))
        cy = y_bot - r * float(rng.uniform(0.75, 0.95))
        half = np.sqrt(np.maximum(r * r - (yy - cy) ** 2, 0.0))
        half[yy > y_bot] = 0.0
        y_top = cy - r
        pad_half = min(hw * 0.8, np.sqrt(max(r * r - (y_bot - cy) ** 2, 1.0)) * 1.1)
        top = None
    else:
        y_top = float(rng.uniform(0.08, 0.25)) * h if style == "barrel" else float(rng.uniform(0.3, 0.45)) * h
        mid = (y_top + y_bot) / 2
        span = (y_bot - y_top) / 2
        bulge = float(rng.uniform(0.0, 0.25)) if style == "barrel" else float(rng.uniform(0.0, 0.1))
        t = np.clip((yy - mid) / max(span, 1.0), -1.0, 1.0)
        half = hw * (1.0 - bulge * t ** 2)
        half[(yy < y_top) | (yy > y_bot)] = 0.0
        pad_half = hw * float(rng.uniform(0.8, 0.98))
        top = None
    x = np.arange(w, dtype=np.float32) + 0.5
    # IMC scallops: rounded grains a few px wide on the solder side of the interface
    scal = np.abs(portable.sin((x / float(rng.uniform(3.0, 7.0))) + float(rng.uniform(0, 6.3))))
    imc_bot = y_bot - imc * (0.6 + 0.5 * scal) + 0.4 * imc * smooth_noise(rng, (1, w), 2.0)[0]
    if style != "ball":
        scal2 = np.abs(portable.sin((x / float(rng.uniform(3.0, 7.0))) + float(rng.uniform(0, 6.3))))
        top = y_top + imc * (0.6 + 0.5 * scal2)
    voids = []
    for _ in range(int(p["bump_voids"])):
        rr = float(rng.uniform(0.03, 0.1)) * hw * 2
        vy = float(rng.uniform(max(y_top, 0) + rr, y_bot - rr))
        hwv = half[int(np.clip(vy, 0, h - 1))]
        if hwv > 2 * rr:
            voids.append((xc + float(rng.uniform(-1, 1)) * (hwv - 1.5 * rr), vy, rr))
    return BumpPlan(shape, style, xc, y_bot, y_top, half.astype(np.float32), imc_bot.astype(np.float32),
                    None if top is None else top.astype(np.float32), imc, float(pad_half), voids)


def solder_region(bp: BumpPlan) -> np.ndarray:
    """Boolean (H, W) map of the solder body (before voids and cracks)."""
    h, w = bp.shape
    x = np.arange(w, dtype=np.float32)[None, :] + 0.5
    yy = np.arange(h, dtype=np.float32)[:, None] + 0.5
    inside = np.abs(x - bp.xc) < bp.half_width[:, None]
    inside &= yy < bp.imc_bot[None, :]
    if bp.imc_top is not None:
        inside &= yy > bp.imc_top[None, :]
    return inside


def paint(bp: BumpPlan, p: dict, rng: np.random.Generator, pixel_nm: float, meta: dict | None = None) -> Scene:
    """Render the bump plan into a cross-section scene."""
    h, w = bp.shape
    x = np.arange(w, dtype=np.float32)[None, :] + 0.5
    yy = np.arange(h, dtype=np.float32)[:, None] + 0.5
    surround = p["bump_surround"]
    material = np.full((h, w), VOID if surround == "air" else DIELECTRIC, np.uint8)
    se = np.zeros((h, w), np.float32)
    if surround == "underfill":
        # silica filler spheres in epoxy: bright dots in a dark matrix
        fill = smooth_noise(rng, (h, w), 1.5)
        se += np.where(fill > 1.5, 0.06, -0.05).astype(np.float32)
    elif surround == "mould":
        se += 0.02 * smooth_noise(rng, (h, w), 3.0) - 0.05
    # bottom: board / die with its copper pad
    board = yy >= bp.y_bot
    material[np.broadcast_to(board, (h, w))] = DIELECTRIC
    se[np.broadcast_to(board, (h, w))] = float(rng.uniform(-0.05, 0.05))
    pad_t = float(rng.uniform(0.04, 0.1)) * h
    pad = (yy >= bp.y_bot) & (yy < bp.y_bot + pad_t) & (np.abs(x - bp.xc) < bp.pad_half)
    material[pad] = METAL
    se[pad] = 0.0
    low = (yy >= bp.y_bot + pad_t + float(rng.uniform(0.02, 0.08)) * h)
    material[np.broadcast_to(low, (h, w))] = SILICON
    se[np.broadcast_to(low, (h, w))] = 0.0
    imc_b = (yy >= bp.imc_bot[None, :]) & (yy < bp.y_bot) & (np.abs(x - bp.xc) < np.maximum(bp.pad_half, 1))
    if bp.imc_top is not None:
        # top: die side with its pad (and a copper pillar for the pillar style)
        top_pad_t = float(rng.uniform(0.03, 0.08)) * h
        if bp.style == "pillar":
            top_pad_t = float(rng.uniform(0.15, 0.3)) * h
        tp = (yy < bp.y_top) & (yy >= bp.y_top - top_pad_t) & (np.abs(x - bp.xc) < bp.pad_half)
        material[tp] = METAL
        die = yy < bp.y_top - top_pad_t
        material[np.broadcast_to(die, (h, w))] = SILICON
        se[np.broadcast_to(die, (h, w))] = float(rng.uniform(-0.03, 0.05))
    sol = solder_region(bp)
    material[sol] = SOLDER
    # two-phase solder microstructure (Sn matrix with Ag3Sn / Pb-rich islands)
    ph = smooth_noise(rng, (h, w), float(rng.uniform(1.0, 3.0)))
    dots = smooth_noise(rng, (h, w), 0.8) > float(rng.uniform(2.3, 3.2))  # Ag3Sn / Cu6Sn5 particles
    se[sol] = (p["bump_phase_contrast"] * portable.tanh(2.0 * ph) + 0.08 * dots)[sol]
    material[imc_b] = IMC
    if bp.imc_top is not None:
        imc_t = (yy >= bp.y_top) & (yy < bp.imc_top[None, :]) & (np.abs(x - bp.xc) < bp.pad_half)
        material[imc_t] = IMC
    for vx, vy, r in bp.voids:
        v = (x - vx) ** 2 + (yy - vy) ** 2 < r * r
        material[v] = VOID
        se[v] = 0.0
    height = np.zeros((h, w), np.float32)
    for mat, rel in RELIEF.items():
        height[material == mat] = rel
    m = {"layout": LAYOUT, "style": bp.style, "surround": surround, **(meta or {})}
    return Scene(height=height, material=material, pixel_nm=pixel_nm, view="cross-section", meta=m, se_offset=se)
