"""``ler``: line/space patterns whose edges are rough enough for a person to see wiggly lines.

Same layout as ``clean`` with a rougher Palasantzas PSD: larger sigma (relative to the pitch),
correlation lengths from a few nm (fine, ragged edges) to several pitches (lines that meander),
and left/right correlation from mirrored edges (width roughness, LWR) to edges that move together
(wiggling lines of constant width). There is no mask: the whole pattern is the defect.
"""

from __future__ import annotations

import numpy as np

from ..layouts.lines import line_params, lines_scene, make_line_grid
from ..params import ParamSpace, ParamSpec
from ..registry import Generator, register
from ..scene import Scene

W_LINES = {"layout": ("lines",)}


def _lines(p: dict, rng: np.random.Generator, size: int) -> Scene:
    grid = make_line_grid(p, rng, size)
    return lines_scene(grid, p, meta={"defect": "ler", "sigma_nm": round(float(p["sigma_nm"]), 3)})


LAYOUTS = {"lines": _lines}
LAYOUT_WEIGHTS = {"lines": 1.0}


@register
class Ler(Generator):
    name = "ler"
    label = "ler"
    version = "3"
    description = "strong line-edge / line-width roughness on line/space patterns"
    params = ParamSpace([
        ParamSpec("layout", "choice", "lines", choices=tuple(LAYOUTS),
                  weights=tuple(LAYOUT_WEIGHTS[k] for k in LAYOUTS), doc="pattern layout"),
    ]) + line_params(sigma=(2.5, 5.5), xi=(6.0, 80.0), alpha=(0.3, 0.95), corr=(-0.5, 0.95),
                     periods=(4.0, 16.0), pitch_nm=(40.0, 100.0), duty=(0.35, 0.6),
                     orientation_weights=(0.7, 0.25, 0.05), when=W_LINES)

    def build(self, p: dict, rng: np.random.Generator, size: int) -> Scene:
        return LAYOUTS[p["layout"]](p, rng, size)
