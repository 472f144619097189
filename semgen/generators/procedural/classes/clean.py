"""``clean``: defect-free patterns with nominal (low) edge roughness.

Line/space patterns, contact arrays, pads, cross-sections, solder bumps and polished blanket films.
Tilted views and logic routing are left to ``other``, whose defect-free pictures show them, so that
the two classes never share a distribution. There is no mask.

Nothing in a clean image may look like a defect or its figure convention: solder bumps have no
process voids (``bump_voids`` is 0; a round black void is a defect), and no annotation marker
(``overlay_marker``: real figures circle or point at defects, so a circle on a clean image would
teach "circle => any class"). Info bars, scale bars and JPEG stay, as on every class.
"""

from __future__ import annotations

from ..layouts.select import LayoutGenerator, all_params
from ..params import ParamSpace
from ..registry import register

#: weights follow what real clean crops show: about 40 % line/space, 35 % cross-sections (interconnect
#: and bumps), the rest pad / contact arrays and a few featureless polished fields
LAYOUTS = {"lines": 0.38, "contacts": 0.1, "pads": 0.12, "crosssection": 0.26, "bump": 0.08, "film": 0.06}


@register
class Clean(LayoutGenerator):
    name = "clean"
    label = "clean"
    version = "10"
    description = "defect-free line/space patterns, arrays, pads, cross-sections, bumps and films"
    params = ParamSpace(all_params(LAYOUTS, [], sigma=(0.3, 1.5), xi=(10.0, 40.0), corr=(-0.3, 0.6))).with_ranges(
        {"bump_voids": {"range": [0, 0]}})
    overlay_p = {"overlay_marker": 0.0}

    def defect(self, built, p, rng, size):
        return built.scene(rng)

    def masked(self, p: dict) -> bool:
        return False
