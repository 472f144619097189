"""Contact / via hole arrays seen from the top: square or hexagonal lattices of round or
elliptical holes (dark with bright rims), or the inverse, posts.

:func:`hole_array` returns the nominal geometry as a :class:`FeatureSet` whose shapes are tagged
with their lattice index, so that defect classes can remove, resize, move or merge given holes
and tests can ask where the array expects one. :func:`render` turns it into a scene.
"""

from __future__ import annotations

import numpy as np

from ..params import ParamSpec
from ..scene import DIELECTRIC, Scene
from .shapes import FeatureSet, Shape, lattice
from .topdown import holes_scene, raised_scene

LAYOUT = "contacts"
_W = {"layout": (LAYOUT,)}

PARAMS = [
    ParamSpec("hole_pitch_nm", "float", 120.0, 60.0, 260.0, unit="nm", doc="contact array pitch", when=_W),
    ParamSpec("hole_fill", "float", 0.5, 0.32, 0.62, doc="hole diameter / pitch", when=_W),
    ParamSpec("hole_lattice", "choice", "square", choices=("square", "hexagonal"), weights=(0.6, 0.4),
              doc="square grid or hexagonal (staggered) array", when=_W),
    ParamSpec("hole_shape", "choice", "round", choices=("round", "elliptical"), weights=(0.7, 0.3),
              doc="hole outline", when=_W),
    ParamSpec("hole_ellipticity", "float", 1.6, 1.2, 2.4, doc="major/minor axis of elliptical holes", when=_W),
    ParamSpec("hole_angle_deg", "float", 0.0, -8.0, 8.0, unit="deg", doc="array rotation", when=_W),
    ParamSpec("hole_cd_sigma", "float", 0.03, 0.0, 0.06, doc="relative hole-to-hole CD variation", when=_W),
    ParamSpec("hole_place_sigma", "float", 0.02, 0.0, 0.04, doc="placement noise / pitch", when=_W),
    ParamSpec("hole_polarity", "choice", "holes", choices=("holes", "posts"), weights=(0.8, 0.2),
              doc="dark holes in an oxide film, or bright resist posts", when=_W),
    ParamSpec("hole_film_nm", "float", 80.0, 40.0, 160.0, unit="nm", doc="film thickness / hole depth", when=_W),
]


def hole_array(p: dict, rng: np.random.Generator, shape: tuple[int, int], pixel_nm: float) -> FeatureSet:
    """The nominal hole (or post) array of parameters ``p`` on an (H, W) grid."""
    pitch = p["hole_pitch_nm"] / pixel_nm
    hex_ = p["hole_lattice"] == "hexagonal"
    py = pitch * (np.sqrt(3) / 2 if hex_ else 1.0)
    origin = (float(rng.uniform(0, pitch)), float(rng.uniform(0, py)))
    cx, cy, ii, jj = lattice(shape, pitch, py, 0.5 if hex_ else 0.0, np.deg2rad(p["hole_angle_deg"]), origin)
    n = len(cx)
    r = 0.5 * p["hole_fill"] * pitch
    ell = p["hole_ellipticity"] if p["hole_shape"] == "elliptical" else 1.0
    rx, ry = r * np.sqrt(ell), r / np.sqrt(ell)
    cd = 1.0 + p["hole_cd_sigma"] * rng.standard_normal(n)
    d = p["hole_place_sigma"] * pitch * rng.standard_normal((n, 2))
    ang = np.deg2rad(p["hole_angle_deg"])
    fs = FeatureSet(shape)
    for k in range(n):
        fs.shapes.append(Shape("ellipse", (float(cx[k] + d[k, 0]), float(cy[k] + d[k, 1]), float(rx * cd[k]),
                                           float(ry * cd[k]), float(ang)), tag=(int(ii[k]), int(jj[k]))))
    return fs


def render(fs: FeatureSet, p: dict, rng: np.random.Generator, pixel_nm: float, meta: dict | None = None,
           cov: np.ndarray | None = None) -> Scene:
    """Scene of the array: holes in a film (dark, bright rims) or posts on a floor."""
    cov = fs.coverage() if cov is None else cov
    m = {"layout": LAYOUT, "pitch_nm": p["hole_pitch_nm"], "lattice": p["hole_lattice"],
         "polarity": p["hole_polarity"], **(meta or {})}
    if p["hole_polarity"] == "posts":
        return raised_scene(cov, p["hole_film_nm"], pixel_nm, rng, meta=m)
    # contact / via holes are etched into the inter-layer dielectric (oxide): a grey film
    return holes_scene(cov, p["hole_film_nm"], pixel_nm, rng, film=DIELECTRIC, meta=m)
