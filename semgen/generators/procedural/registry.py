"""Generator base class and registry (timm-like ``@register`` / ``create_generator``).

Every module in ``semgen.generators.procedural.classes`` is imported on first use, so a new class
registers itself by existing. Several generators may share a label; the one whose ``name`` is the
label is the default for that label.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

import numpy as np

from ...errors import UnknownClassError
from ...taxonomy import CLASSES, canonical
from .params import ParamSpace

if TYPE_CHECKING:  # pragma: no cover
    from .scene import Scene


class Generator:
    """Base class of a procedural generator.

    Subclasses set ``name``, ``label`` (a canonical class), ``version`` (bump it whenever the
    output bytes for a seed change), ``params`` (class + layout parameters) and implement
    :meth:`build`. The imaging and overlay parameters are appended by :attr:`space`.
    """

    name: str = ""
    label: str = ""
    version: str = "1"
    description: str = ""
    params: ParamSpace = ParamSpace()
    #: sampling overrides ``{param: {"range": [lo, hi]} | {"choices": {value: weight}}}`` of this
    #: instance (see :meth:`with_ranges`); empty for the registered defaults
    ranges: dict = {}
    #: overlay probabilities this class replaces, ``{bool overlay parameter: P(true)}`` (``clean``
    #: carries no marker: figures circle or point at defects, so a marker on a clean image is a lie)
    overlay_p: dict = {}

    def build(self, p: dict, rng: np.random.Generator, size: int) -> "Scene":  # pragma: no cover
        """Build the scene of one image from sampled parameters ``p`` on a ``size`` x ``size`` grid."""
        raise NotImplementedError

    @property
    def space(self) -> ParamSpace:
        """Class parameters followed by the imaging parameters (the order of sampling)."""
        from .imaging import IMAGING
        from .overlays import OVERLAYS

        # nuisance overlays (info bar, markers, JPEG) for every class alike, so that no class can
        # be told apart by them (``overlay_p`` only where a class must not carry one); sampled last,
        # applied after imaging by generate_one
        overlays = OVERLAYS.with_ranges({k: {"choices": {"true": v, "false": 1.0 - v}}
                                         for k, v in self.overlay_p.items()}) if self.overlay_p else OVERLAYS
        base = self.params + IMAGING + overlays
        return base.with_ranges(self.ranges) if self.ranges else base

    def with_ranges(self, ranges: dict | None, where: str = "--set") -> "Generator":
        """A copy of this generator that samples with some ranges or choice weights replaced.

        ``ranges`` is ``{param: {"range": [lo, hi]} | {"choices": {value: weight}}}`` (see
        :func:`~.params.apply_range`); they are checked here (one-line SemgenError). The uniforms
        drawn do not change, only what they map to, so the rest of an image's stream is the same.

        Examples
        --------
        >>> g = create_generator("bridge").with_ranges({"bridge_width": {"range": [2.0, 2.5]}})
        >>> g.space["bridge_width"].low, create_generator("bridge").space["bridge_width"].low
        (2.0, 0.7)
        """
        import copy

        g = copy.copy(self)
        g.ranges = {**self.ranges, **(ranges or {})}
        g.space  # validate now, not at the first image
        return g

    def sample_params(self, rng: np.random.Generator, overrides: dict | None = None) -> dict:
        return self.space.sample(rng, overrides)

    def masked(self, p: dict) -> bool:
        """Whether an image made with sampled parameters ``p`` shows a defect, hence has a mask."""
        return True

    def config(self) -> dict:
        """What identifies this generator's output in ``dataset.json``."""
        return {"name": self.name, "version": self.version, "label": self.label}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}@{self.version} label={self.label}>"


_REGISTRY: dict[str, type[Generator]] = {}
_LOADED = False


def register(cls: type[Generator]) -> type[Generator]:
    """Class decorator: add a :class:`Generator` subclass to the registry."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.label not in CLASSES:
        raise ValueError(f"{cls.__name__}: label {cls.label!r} is not a canonical class")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        old = _REGISTRY[cls.name]
        # re-import of the same module (e.g. importlib.reload) is fine; two different classes are not
        if (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"generator name {cls.name!r} registered twice ({old.__module__}, {cls.__module__})")
    names = set(cls.params.names)
    from .imaging import IMAGING

    from .overlays import OVERLAYS

    clash = names & (set(IMAGING.names) | set(OVERLAYS.names))
    if clash:
        raise ValueError(f"{cls.__name__}: parameter names {sorted(clash)} clash with imaging parameters")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    global _LOADED
    if _LOADED:
        return
    from . import classes as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _LOADED = True


def list_generators() -> list[str]:
    """Names of all registered generators, in taxonomy order then by name."""
    _load_builtin()
    return sorted(_REGISTRY, key=lambda n: (CLASSES.index(_REGISTRY[n].label), n != _REGISTRY[n].label, n))


def generator_class(name_or_label: str) -> type[Generator]:
    """The class registered as ``name_or_label`` (a generator name, a label or an alias)."""
    _load_builtin()
    if name_or_label in _REGISTRY:
        return _REGISTRY[name_or_label]
    key = str(name_or_label).strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    label = canonical(name_or_label)  # raises UnknownClassError with the closest match
    if label in _REGISTRY:
        return _REGISTRY[label]
    for cls in _REGISTRY.values():
        if cls.label == label:
            return cls
    raise UnknownClassError(
        f"no procedural generator for class '{label}' yet; available: {', '.join(list_generators())}")


def create_generator(name_or_label: str) -> Generator:
    """An instance of the generator for ``name_or_label``; unknown -> :class:`UnknownClassError`."""
    return generator_class(name_or_label)()
