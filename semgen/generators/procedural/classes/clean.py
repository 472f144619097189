"""``clean``: defect-free patterns with nominal (low) edge roughness.

The layout is a choice parameter; each layout has its own scene builder and parameters (active
only for that layout). Add a layout by adding an entry to ``LAYOUTS`` / ``LAYOUT_WEIGHTS`` and its
parameters to ``params``, and bump ``version``.
"""

from __future__ import annotations

import numpy as np

from ..layouts.lines import line_params, lines_scene, make_line_grid
from ..params import ParamSpace, ParamSpec
from ..registry import Generator, register
from ..scene import Scene


def _lines(p: dict, rng: np.random.Generator, size: int) -> Scene:
    return lines_scene(make_line_grid(p, rng, size), p)


#: layout name -> scene builder ``f(p, rng, size) -> Scene``
LAYOUTS = {"lines": _lines}
#: relative frequency of each layout
LAYOUT_WEIGHTS = {"lines": 1.0}

# layouts of helper E (layouts/select.py): contact arrays, pads, logic, cross-sections, bumps, tilted
from ..layouts import select as _select  # noqa: E402

# (tilted views and logic routing are left to ``other``, whose defect-free pictures show them)
# weights follow what real clean crops show: about 45 % line/space, a third cross-sections
_E_LAYOUTS = {"contacts": 0.06, "pads": 0.1, "crosssection": 0.3, "bump": 0.12}


def _e_layout(name: str):
    def build(p: dict, rng: np.random.Generator, size: int) -> Scene:
        return _select.build(name, p, rng, size).scene(rng)
    return build


LAYOUT_WEIGHTS["lines"] = 0.42
for _k, _w in _E_LAYOUTS.items():
    LAYOUTS[_k] = _e_layout(_k)
    LAYOUT_WEIGHTS[_k] = _w


@register
class Clean(Generator):
    name = "clean"
    label = "clean"
    version = "4"
    description = "defect-free line/space patterns, nominal low roughness"
    params = ParamSpace([
        ParamSpec("layout", "choice", "lines", choices=tuple(LAYOUTS),
                  weights=tuple(LAYOUT_WEIGHTS[k] for k in LAYOUTS), doc="pattern layout"),
    ]) + line_params(sigma=(0.3, 1.5), xi=(10.0, 40.0), corr=(-0.3, 0.6), when={"layout": ("lines",)}) \
        + ParamSpace(_select.layout_params(tuple(_E_LAYOUTS)))

    def build(self, p: dict, rng: np.random.Generator, size: int) -> Scene:
        return LAYOUTS[p["layout"]](p, rng, size)
