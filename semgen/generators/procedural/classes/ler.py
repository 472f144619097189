"""``ler``: line/space patterns whose edges are rough enough for a person to see wiggly lines.

Same layout as ``clean`` with a rougher Palasantzas PSD: larger sigma (relative to the pitch),
correlation lengths from a few nm (fine, ragged edges) to several pitches (lines that meander),
and left/right correlation from mirrored edges (width roughness, LWR) to edges that move together
(wiggling lines of constant width). There is no mask: the whole pattern is the defect.
"""

from __future__ import annotations

from ..layouts.lines import lines_scene
from ..layouts.select import LayoutGenerator, all_params
from ..params import ParamSpace
from ..registry import register

LAYOUTS = {"lines": 1.0}


@register
class Ler(LayoutGenerator):
    name = "ler"
    label = "ler"
    version = "8"
    description = "strong line-edge / line-width roughness on line/space patterns"
    params = ParamSpace(all_params(LAYOUTS, [], sigma=(2.5, 5.5), xi=(6.0, 80.0), alpha=(0.3, 0.95),
                                   corr=(-0.5, 0.95), periods=(4.0, 16.0), pitch_nm=(40.0, 100.0),
                                   duty=(0.35, 0.6), orientation_weights=(0.7, 0.25, 0.05)))

    def defect(self, built, p, rng, size):
        return lines_scene(built.geom, p, meta={"defect": "ler", "sigma_nm": round(float(p["sigma_nm"]), 3)})

    def masked(self, p: dict) -> bool:
        return False  # the whole pattern is the defect
