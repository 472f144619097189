"""``clean``: defect-free patterns with nominal (low) edge roughness.

Line/space patterns, contact arrays, pads, cross-sections and solder bumps. Tilted views and logic
routing are left to ``other``, whose defect-free pictures show them, so that the two classes never
share a distribution. There is no mask.
"""

from __future__ import annotations

from ..layouts.select import LayoutGenerator, all_params
from ..params import ParamSpace
from ..registry import register

#: weights follow what real clean crops show: about 45 % line/space, a third cross-sections
LAYOUTS = {"lines": 0.42, "contacts": 0.06, "pads": 0.1, "crosssection": 0.3, "bump": 0.12}


@register
class Clean(LayoutGenerator):
    name = "clean"
    label = "clean"
    version = "5"
    description = "defect-free line/space patterns, nominal low roughness"
    params = ParamSpace(all_params(LAYOUTS, [], sigma=(0.3, 1.5), xi=(10.0, 40.0), corr=(-0.3, 0.6)))

    def defect(self, built, p, rng, size):
        return built.scene(rng)

    def masked(self, p: dict) -> bool:
        return False
