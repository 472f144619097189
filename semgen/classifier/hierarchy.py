"""The class hierarchy of hierarchical heads, as data: a gate, defect families and their leaves.

A hierarchy (YAML or JSON; the default is ``hierarchy.yaml`` beside this module)::

    gate: [clean, defect, other]     # every gate output but `defect` is a class itself
    defect: defect                   # the gate output that opens the families
    families:
      line: [bridge, open, ler]
      via: [via]
      area: [crack, particle, cmp, scratch]
    loss_weights: {gate: 1.0, family: 1.0, leaf: 1.0}
    gate_after: null                 # backbone stages before the gate (null: half of them)
    gate_width: 128                  # channels of the gate's 1x1 convolution

The leaves are the classes: the gate outputs other than ``defect``, then the families' members.
A leaf's probability is the product of the probabilities on its path (gate, then family, then
leaf within the family), so the leaf probabilities sum to 1. No torch here: the CLI validates a
hierarchy file without loading torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import SemgenError
from ..taxonomy import canonical

DEFAULT_FILE = Path(__file__).resolve().parent / "hierarchy.yaml"
LEVELS = ("gate", "family", "leaf")
_KEYS = {"gate", "defect", "families", "loss_weights", "gate_after", "gate_width"}


@dataclass(frozen=True)
class Hierarchy:
    """A validated hierarchy (see the module docstring).

    Attributes
    ----------
    gate : tuple of str
        The gate's outputs, in order.
    families : tuple of (str, tuple of str)
        Defect families and their leaf classes, in order.
    defect : str
        The gate output whose images go on to the families.
    loss_weights : tuple of (str, float)
        Weight of each level's cross-entropy in the head loss.
    gate_after : int or None
        Backbone stages before the gate; None: half of them.
    gate_width : int

    Examples
    --------
    >>> h = Hierarchy.from_dict({"gate": ["clean", "defect"], "families": {"line": ["bridge", "open"]}})
    >>> h.leaves
    ('clean', 'bridge', 'open')
    >>> h.for_classes(["clean", "open"]).families
    (('line', ('open',)),)
    """

    gate: tuple
    families: tuple
    defect: str = "defect"
    loss_weights: tuple = (("gate", 1.0), ("family", 1.0), ("leaf", 1.0))
    gate_after: int | None = None
    gate_width: int = 128
    _leaves: tuple = field(default=(), repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "hierarchy") -> "Hierarchy":
        """Validate a mapping (as read from YAML / JSON); one-line :class:`SemgenError` otherwise."""
        if not isinstance(d, dict):
            raise SemgenError(f"{source}: a hierarchy is a mapping with 'gate' and 'families'")
        unknown = sorted(set(d) - _KEYS)
        if unknown:
            raise SemgenError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
        defect = d.get("defect", "defect")
        if not isinstance(defect, str) or not defect:
            raise SemgenError(f"{source}: 'defect' must be the name of a gate output")
        gate_raw = d.get("gate")
        if not isinstance(gate_raw, (list, tuple)) or not gate_raw or not all(isinstance(g, str) for g in gate_raw):
            raise SemgenError(f"{source}: 'gate' must be a list of output names, e.g. [clean, {defect}, other]")
        gate = tuple(g if g == defect else _cls(g, source) for g in gate_raw)
        fam_raw = d.get("families") or {}
        if not isinstance(fam_raw, dict) or not all(isinstance(v, (list, tuple)) and v for v in fam_raw.values()):
            raise SemgenError(f"{source}: 'families' must map each family name to a non-empty list of classes")
        families = tuple((str(name), tuple(_cls(c, source) for c in members)) for name, members in fam_raw.items())
        if families and defect not in gate:
            raise SemgenError(f"{source}: the gate has no '{defect}' output to lead to the families")
        if defect in gate and not families:
            raise SemgenError(f"{source}: the gate's '{defect}' output needs at least one family")
        leaves = [g for g in gate if g != defect] + [c for _, m in families for c in m]
        twice = sorted({c for c in leaves if leaves.count(c) > 1})
        if twice or len(set(gate)) != len(gate):
            raise SemgenError(f"{source}: each class and gate output may appear once; repeated: "
                              f"{', '.join(twice or [g for g in gate if gate.count(g) > 1])}")
        w = d.get("loss_weights") or {}
        if not isinstance(w, dict) or set(w) - set(LEVELS):
            raise SemgenError(f"{source}: 'loss_weights' takes {', '.join(LEVELS)}")
        weights = []
        for level in LEVELS:
            v = w.get(level, 1.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise SemgenError(f"{source}: loss weight '{level}' must be a number >= 0, got {v!r}")
            weights.append((level, float(v)))
        if not any(v for _, v in weights):
            raise SemgenError(f"{source}: at least one loss weight must be positive")
        ga = d.get("gate_after")
        if ga is not None and (isinstance(ga, bool) or not isinstance(ga, int) or ga < 1):
            raise SemgenError(f"{source}: 'gate_after' must be a positive number of backbone stages or null")
        gw = d.get("gate_width", 128)
        if isinstance(gw, bool) or not isinstance(gw, int) or not 1 <= gw <= 4096:
            raise SemgenError(f"{source}: 'gate_width' must be an integer in [1, 4096]")
        return cls(gate, families, defect, tuple(weights), ga, gw, tuple(leaves))

    def __post_init__(self):
        if not self._leaves:
            leaves = tuple(g for g in self.gate if g != self.defect) + tuple(c for _, m in self.families for c in m)
            object.__setattr__(self, "_leaves", leaves)

    @property
    def leaves(self) -> tuple:
        """The classes, in hierarchy order: gate outputs (but ``defect``), then family members."""
        return self._leaves

    @property
    def weights(self) -> dict:
        return dict(self.loss_weights)

    def for_classes(self, classes) -> "Hierarchy":
        """The hierarchy restricted to ``classes`` (families left empty and their gate output go);
        a class that is not in it is a one-line error."""
        classes = list(classes)
        missing = [c for c in classes if c not in self.leaves]
        if missing:
            raise SemgenError(f"class(es) {', '.join(missing)} not in the hierarchy (its classes: "
                              f"{', '.join(self.leaves)}); add them to a --hierarchy file")
        keep = set(classes)
        fams = tuple((n, tuple(c for c in m if c in keep)) for n, m in self.families)
        fams = tuple((n, m) for n, m in fams if m)
        gate = tuple(g for g in self.gate if (g == self.defect and fams) or g in keep)
        return replace(self, gate=gate, families=fams, _leaves=())

    def to_dict(self) -> dict:
        """JSON-serialisable; :meth:`from_dict` reads it back."""
        return {"gate": list(self.gate), "defect": self.defect,
                "families": {n: list(m) for n, m in self.families},
                "loss_weights": dict(self.loss_weights), "gate_after": self.gate_after, "gate_width": self.gate_width}


def _cls(name: str, source: str) -> str:
    try:
        return canonical(name)
    except SemgenError as e:
        raise SemgenError(f"{source}: {e}") from None


def load_hierarchy(spec=None) -> Hierarchy:
    """A :class:`Hierarchy` from None (the default file), a mapping, a Hierarchy, or a YAML / JSON file."""
    if isinstance(spec, Hierarchy):
        return spec
    if isinstance(spec, dict):
        return Hierarchy.from_dict(spec)
    path = DEFAULT_FILE if spec is None else Path(spec)
    if not path.is_file():
        raise SemgenError(f"--hierarchy {path}: no such file")
    try:
        text = path.read_text()
        if path.suffix == ".json":
            d = json.loads(text)
        else:
            import yaml

            d = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SemgenError(f"--hierarchy {path}: unreadable ({type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - yaml's own error types
        raise SemgenError(f"--hierarchy {path}: not valid YAML ({type(e).__name__})") from None
    return Hierarchy.from_dict(d, source=str(path))
