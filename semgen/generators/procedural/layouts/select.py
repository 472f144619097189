"""One entry point for every layout of this package: parameters and a :class:`Built` layout that
defect classes edit and render.

``build(name, p, rng, size)`` returns a :class:`Built` whose ``kind`` says what can be edited:
``features`` (a :class:`~.shapes.FeatureSet` with a renderer: contacts, pads, logic, and their
tilted views), ``xsection`` (a :class:`~.crosssection.XPlan`), ``bump`` (a
:class:`~.bumps.BumpPlan`) or ``lines`` (the foundation's line/space scene). The pixel size is
derived from the pitch and the number of periods across the field, so a 256 px image shows the
same pattern as a 128 px one, finer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ....errors import SemgenError
from .. import portable
from ..params import ParamSpace, ParamSpec
from ..registry import Generator
from ..scene import DIELECTRIC, METAL, SILICON, Scene
from .edits import NoSite, next_id
from .shapes import smooth_noise
from . import bumps, contacts, crosssection, logic, pads, tilt

TOPDOWN = ("contacts", "pads", "logic")
#: every layout name this module builds (``lines`` comes from the foundation's lines.py)
ALL = ("lines", "contacts", "pads", "logic", "film", "crosssection", "bump", "tilted")
XSECTION = ("crosssection", "bump")

#: features across the field of view per layout (sets the pixel size)
_PERIODS = {
    "contacts": ParamSpec("contacts_across", "float", 5.0, 3.0, 8.5, doc="hole pitches across the field",
                          when={"layout": ("contacts",)}),
    "pads": ParamSpec("pads_across", "float", 4.0, 2.2, 7.0, doc="pad pitches across the field",
                      when={"layout": ("pads",)}),
    "logic": ParamSpec("logic_across", "float", 9.0, 5.0, 16.0, doc="routing tracks across the field",
                       when={"layout": ("logic",)}),
    "crosssection": ParamSpec("xs_field_nm", "float", 1200.0, 400.0, 4000.0, unit="nm",
                              doc="width of the cross-section field", when={"layout": ("crosssection",)}),
    "film": ParamSpec("film_field_nm", "float", 2000.0, 300.0, 20000.0, log=True, unit="nm",
                      doc="width of the blanket-film field", when={"layout": ("film",)}),
    "bump": ParamSpec("bump_field_um", "float", 80.0, 30.0, 150.0, unit="um",
                      doc="width of the bump cross-section field", when={"layout": ("bump",)}),
}

FILM_PARAMS = [
    ParamSpec("film_grain", "float", 0.025, 0.008, 0.05, doc="SE texture of the blanket film (grains)",
              when={"layout": ("film",)}),
    ParamSpec("film_grain_px", "float", 2.0, 1.0, 5.0, unit="px", doc="grain size", when={"layout": ("film",)}),
    ParamSpec("film_level", "choice", "bright", choices=("bright", "dark"), when={"layout": ("film",)},
              doc="film material: bright (metal) or dark (oxide)"),
    ParamSpec("film_edge", "bool", 0.5, when={"layout": ("film",)},
              doc="the field also shows the film's edge (a step down to the layer below)"),
]

_MODULE_PARAMS = {
    "film": FILM_PARAMS,
    "contacts": contacts.PARAMS, "pads": pads.PARAMS, "logic": logic.PARAMS,
    "crosssection": crosssection.PARAMS, "bump": bumps.PARAMS,
}


def layout_params(layouts: tuple[str, ...], restrict: dict | None = None) -> list[ParamSpec]:
    """Every parameter of the given layouts (each only active under its ``layout`` value).

    ``tilted`` needs the parameters of its base layouts, which are made active under
    ``layout=tilted`` too. ``restrict`` limits choice parameters to some of their choices for a
    class (e.g. ``{"pad_style": ("pads",)}``: only pads with leads can be cut open).
    """
    out: list[ParamSpec] = []
    need = list(layouts)
    if "tilted" in need:
        for b in ("logic", "pads", "contacts"):
            if b not in need:
                need.append(b)
    seen = set()
    for name in need:
        if name == "lines":
            continue
        if name == "tilted":
            continue
        for s in _MODULE_PARAMS[name] + [_PERIODS[name]]:
            if s.name in seen:
                continue
            seen.add(s.name)
            when = s.when
            if "tilted" in layouts and name in TOPDOWN and when and "layout" in when:
                when = {**when, "layout": tuple(when["layout"]) + ("tilted",)}
            choices, weights, default = s.choices, s.weights, s.default
            if restrict and s.name in restrict:
                keep = [i for i, c in enumerate(s.choices) if c in restrict[s.name]]
                choices = tuple(s.choices[i] for i in keep)
                weights = None if s.weights is None else tuple(s.weights[i] for i in keep)
                default = default if default in choices else choices[0]
            out.append(ParamSpec(s.name, s.kind, default, s.low, s.high, choices, s.unit, s.doc, s.log,
                                 weights, s.limits, when))
    if "tilted" in layouts:
        out.extend(tilt.PARAMS)
    return out


@dataclass
class Built:
    """A layout built for one image, still editable by a defect class."""

    name: str
    kind: str                      # "features" | "xsection" | "bump" | "lines"
    pixel_nm: float
    shape: tuple[int, int]
    geom: Any = None               # FeatureSet / XPlan / BumpPlan / Scene
    render_fn: Callable | None = None
    info: dict = field(default_factory=dict)

    def scene(self, rng: np.random.Generator, cov: np.ndarray | None = None) -> Scene:
        """Render the (possibly edited) geometry into a scene."""
        if self.kind == "features":
            return self.render_fn(self.geom, rng, cov)
        if self.kind == "lines":
            return self.render_fn(self.geom, rng, cov)
        return self.render_fn(self.geom, rng)


def film_scene(p: dict, rng: np.random.Generator, size: int, pixel_nm: float) -> Scene:
    """A blanket film (metal or oxide) with grain texture: the canvas of film cracks and scratches."""
    g = smooth_noise(rng, (size, size), p["film_grain_px"])
    se = p["film_grain"] * portable.tanh(1.5 * g)
    mat = METAL if p["film_level"] == "bright" else DIELECTRIC
    height = np.full((size, size), 50.0, np.float32)
    material = np.full((size, size), mat, np.uint8)
    # draw the edge's geometry whether or not it is used: the random stream stays the same
    a = float(rng.uniform(0, 2 * np.pi))
    off = float(rng.uniform(0.2, 0.45)) * size
    bend = float(rng.uniform(-0.002, 0.002))
    if p["film_edge"]:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - np.float32(size / 2)
        d = xx * np.cos(a) + yy * np.sin(a) + bend * (xx * np.sin(a) - yy * np.cos(a)) ** 2 - (size / 2 - off)
        cov = np.clip(0.5 - d / 1.5, 0.0, 1.0)  # 1 beyond the edge
        height = (50.0 * (1.0 - cov)).astype(np.float32)
        material[cov >= 0.5] = DIELECTRIC if mat == METAL else SILICON
    return Scene(height=height, material=material, pixel_nm=pixel_nm, view="top-down",
                 meta={"layout": "film", "film_edge": bool(p["film_edge"])}, se_offset=se.astype(np.float32))


def _pixel(name: str, p: dict, width: int) -> float:
    key = {"contacts": ("hole_pitch_nm", "contacts_across"), "pads": ("pad_pitch_nm", "pads_across"),
           "logic": ("logic_pitch_nm", "logic_across")}[name]
    return p[key[0]] * p[key[1]] / width


def _features(name: str, p: dict, rng, shape) -> tuple:
    if name == "contacts":
        pix = _pixel(name, p, shape[1])
        return pix, contacts.hole_array(p, rng, shape, pix), lambda fs, r, cov: contacts.render(fs, p, r, pix, cov=cov)
    if name == "pads":
        pix = _pixel(name, p, shape[1])
        return pix, pads.pad_features(p, rng, shape, pix), lambda fs, r, cov: pads.render(fs, p, r, pix, cov=cov)
    pix = _pixel(name, p, shape[1])
    return pix, logic.logic_features(p, rng, shape, pix), lambda fs, r, cov: logic.render(fs, p, r, pix, cov=cov)


def build(name: str, p: dict, rng: np.random.Generator, size: int, lines_fn: Callable | None = None) -> Built:
    """Build layout ``name`` for parameters ``p`` on a ``size`` x ``size`` grid.

    ``lines_fn(p, rng, size) -> Scene`` builds the foundation's line/space layout when ``name`` is
    ``lines``.
    """
    shape = (size, size)
    if name in TOPDOWN:
        pix, fs, fn = _features(name, p, rng, shape)
        return Built(name, "features", pix, shape, fs, fn)
    if name == "film":
        pix = p["film_field_nm"] / size
        return Built(name, "film", pix, shape, None, lambda g, r: film_scene(p, r, size, pix))
    if name == "crosssection":
        pix = p["xs_field_nm"] / size
        xp = crosssection.plan(p, rng, shape)
        return Built(name, "xsection", pix, shape, xp, lambda g, r: crosssection.paint(g, r, pix))
    if name == "bump":
        pix = p["bump_field_um"] * 1000.0 / size
        bp = bumps.plan(p, rng, shape)
        return Built(name, "bump", pix, shape, bp, lambda g, r: bumps.paint(g, p, r, pix))
    if name == "tilted":
        base = p["tilt_base"]
        film = {"logic": "logic_film_nm", "pads": "pad_film_nm", "contacts": "hole_film_nm"}[base]
        across = {"logic": "logic_across", "pads": "pads_across", "contacts": "contacts_across"}[base]
        pix = _pixel(base, p, size)
        # feature height such that the projected wall is tilt_wall_frac of a pitch
        wall_nm = p["tilt_wall_frac"] * size / p[across] * pix / max(np.sin(np.deg2rad(p["tilt_deg"])), 0.1)
        gain = wall_nm / p[film]
        h0 = tilt.source_rows(size, p["tilt_deg"], p[film] * gain, pix)
        pix, fs, fn = _features(base, p, rng, (h0, size))

        def render_tilted(g, r, cov, fn=fn):
            src = fn(g, r, cov)
            src.height *= gain
            return tilt.tilt_scene(src, size, p["tilt_deg"], p["tilt_perspective"])

        return Built(name, "features", pix, (h0, size), fs, render_tilted, {"base": base})
    if name == "lines":
        from .lines import lines_scene, make_line_grid

        grid = make_line_grid(p, rng, size)
        return Built(name, "lines", grid.pixel_nm, shape, grid, lambda g, r, cov=None: lines_scene(g, p, coverage=cov),
                     {"grid": grid})
    raise ValueError(f"unknown layout {name!r}")


def lines_layout_params(**ranges) -> list[ParamSpec]:
    """The foundation's line/space parameters, active under ``layout=lines``."""
    from .lines import line_params

    return list(line_params(when={"layout": ("lines",)}, **ranges))


def layout_choice(layouts: dict[str, float], doc: str = "pattern layout") -> ParamSpec:
    """The ``layout`` choice parameter with relative weights."""
    names = tuple(layouts)
    return ParamSpec("layout", "choice", names[0], choices=names, weights=tuple(layouts[k] for k in names), doc=doc)


def all_params(layouts: dict[str, float], class_params: list[ParamSpec], *, lines_first: bool = False,
               restrict: dict | None = None, **line_ranges) -> list[ParamSpec]:
    """``layout`` choice, the class's own parameters, then every layout's parameters.

    Parameters
    ----------
    layouts : dict
        ``{layout: relative weight}``; the first is the default. ``lines`` brings the foundation's
        line/space parameters (with ``line_ranges``, see :func:`~.lines.line_params`).
    class_params : list of ParamSpec
        The class's own parameters.
    lines_first : bool
        Put the line/space parameters before the class's own (``bridge`` and ``open`` sample in
        this order: the order of the specs is the order of the uniforms they take).
    restrict : dict, optional
        Limits some layout choice parameters to some of their choices (see :func:`layout_params`).

    Examples
    --------
    >>> [s.name for s in all_params({"film": 1.0}, [])][:2]
    ['layout', 'film_grain']
    """
    lines = lines_layout_params(**line_ranges) if "lines" in layouts else []
    own = list(class_params)
    out = [layout_choice(layouts)] + (lines + own if lines_first else own + lines)
    out += layout_params(tuple(k for k in layouts if k != "lines"), restrict)
    return out


def edge_start(rng: np.random.Generator, size: int, inward: bool = True) -> tuple[tuple[float, float], float]:
    """A random point on the image border and a heading pointing into the image (radians)."""
    side = int(rng.integers(0, 4))
    t = float(rng.uniform(0.1, 0.9)) * size
    pt, base = [((0.0, t), 0.0), ((size, t), np.pi), ((t, 0.0), np.pi / 2), ((t, size), -np.pi / 2)][side]
    return pt, base + float(rng.uniform(-0.5, 0.5))


class LayoutGenerator(Generator):
    """The procedural generator: pick a layout, build it, add the defect.

    Subclasses set ``name``, ``label``, ``version``, ``description`` and ``params`` (normally
    ``ParamSpace(all_params(LAYOUTS, PARAMS))``), and either the :attr:`defects` table or
    ``defect(built, p, rng, size) -> Scene``; they register with ``@register``. Adding a class is
    adding one such module to ``classes/``: the registry, ``--list``, the pretraining labels and
    the tests that iterate :func:`~..registry.list_generators` pick it up.
    """

    #: layout builds tried while :meth:`defect` raises :class:`NoSite`
    attempts: int = 6
    #: what :meth:`defect` draws on each kind of built layout (``Built.kind``; ``"*"``: every
    #: other kind), as ``fn(built, p, rng) -> Scene``
    defects: dict = {}

    def build(self, p: dict, rng: np.random.Generator, size: int) -> Scene:
        for _ in range(self.attempts):
            built = build(p["layout"], p, rng, size)
            try:
                scene = self.defect(built, p, rng, size)
            except NoSite:
                continue
            scene.meta.setdefault("layout", p["layout"])
            scene.meta["pixel_nm"] = round(float(scene.pixel_nm), 4)
            return scene
        raise SemgenError(f"could not place a {self.label} on layout {p['layout']!r} with these parameters")

    def defect(self, built: Built, p: dict, rng: np.random.Generator, size: int) -> Scene:
        """The scene of layout ``built`` with this class's defect drawn into it (by :attr:`defects`)."""
        fn = self.defects.get(built.kind, self.defects.get("*"))
        if fn is None:  # pragma: no cover - a class without a table overrides this method
            raise NotImplementedError(f"{self.name}: no defect for a {built.kind!r} layout")
        return fn(built, p, rng)


#: line/space ranges of the classes drawn by :func:`lines_or_edit` (dense arrays, as real shorts
#: and opens are imaged)
EDIT_LINE_RANGES = {"sigma": (0.4, 2.0), "periods": (3.0, 26.0), "duty": (0.35, 0.65)}


def lines_or_edit(name: str, raster_layouts: dict[str, float], line_params, *, on_lines: Callable,
                  on_xsection: Callable, edit: Callable, restrict: dict) -> tuple[ParamSpace, dict]:
    """Parameters and :attr:`LayoutGenerator.defects` of a class drawn by its own code on
    line/space patterns and, on the other layouts, as one coverage edit (``bridge``, ``open``).

    ``lines`` takes the weight that ``raster_layouts`` leave. A ``{name}_severity`` parameter,
    active on the raster layouts, sizes the edit: on a ``features`` layout
    ``edit(coverage, rng, severity) -> (new coverage, region)`` changes what is rendered and the
    region becomes a new mask instance; on a cross-section ``on_xsection(scene, rng, severity)``
    edits the rendered scene in place. On lines ``on_lines(grid, p, rng) -> Scene`` draws it all.

    Returns
    -------
    params : ParamSpace
        ``layout``, the line/space parameters (:data:`EDIT_LINE_RANGES`), ``line_params``, the
        severity, then every raster layout's parameters (``restrict`` limits their choices).
    defects : dict
        The :attr:`LayoutGenerator.defects` table.

    Examples
    --------
    >>> space, table = lines_or_edit("x", {"pads": 0.1}, [], on_lines=None, on_xsection=None,
    ...                              edit=None, restrict={})
    >>> space["layout"].weights, space["x_severity"].when, sorted(table)
    ((0.9, 0.1), {'layout': ('pads',)}, ['*', 'lines'])
    """
    severity = f"{name}_severity"
    layouts = {"lines": 1.0 - sum(raster_layouts.values()), **raster_layouts}
    own = list(line_params) + [
        ParamSpec(severity, "float", 0.5, 0.2, 1.0, limits=(0.0, 1.0), when={"layout": tuple(raster_layouts)},
                  doc="defect size on contact / pad / logic / cross-section layouts (relative)"),
    ]
    params = ParamSpace(all_params(layouts, own, lines_first=True, restrict=restrict, **EDIT_LINE_RANGES))

    def lines(built: Built, p: dict, rng: np.random.Generator) -> Scene:
        return on_lines(built.geom, p, rng)

    def raster(built: Built, p: dict, rng: np.random.Generator) -> Scene:
        if built.kind == "xsection":
            scene = on_xsection(built.scene(rng), rng, p[severity])
        else:
            new, region = edit(built.geom.coverage(), rng, p[severity])
            scene = built.scene(rng, cov=new)
            scene.mask[region] = next_id(scene)
        scene.meta["defect"] = name
        return scene

    return params, {"lines": lines, "*": raster}
