"""Parameter specifications: what a generator samples, its default range, and ``--set`` checks.

A :class:`ParamSpec` is one named parameter with a kind, a default, a default sampling range and a
unit; a :class:`ParamSpace` is an ordered collection of them. Sampling draws one uniform per
parameter, in a fixed order, from one :class:`numpy.random.Generator` (whatever is overridden), so
fixing one parameter with ``--set`` leaves the others unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from ...errors import SemgenError

KINDS = ("float", "int", "choice", "bool")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


@dataclass(frozen=True)
class ParamSpec:
    """One sampled parameter.

    Parameters
    ----------
    name : str
        Unique within a :class:`ParamSpace`; what ``--set name=value`` uses.
    kind : {"float", "int", "choice", "bool"}
    default : Any
        Nominal value shown by ``--list``. Used as the value when no range is given (``low`` is
        None or ``low == high``). For ``bool`` it is the probability of True when sampled.
    low, high : float or int, optional
        Default sampling range (inclusive). ``float`` is uniform (log-uniform if ``log``).
    choices : tuple, optional
        The values of a ``choice`` parameter.
    unit : str
        Physical unit ("nm", "px", "e/px", ...), "" if dimensionless.
    doc : str
        One line for ``--list`` and the docs.
    log : bool
        Sample log-uniformly (for scale parameters spanning decades).
    weights : tuple of float, optional
        Relative probabilities of ``choices`` (uniform if None).
    limits : (float, float), optional
        The range ``--set`` accepts (physically meaningful values); defaults to ``(low, high)``.
        Lets a user push a parameter beyond what is sampled by default.
    when : mapping, optional
        Only active when every named (choice/bool) parameter has one of the given values, e.g.
        ``{"layout": ("lines",)}``. Inactive parameters are still drawn (so the random stream does
        not depend on choices) but are left out of the sampled dict.
    """

    name: str
    kind: str
    default: Any
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple | None = None
    unit: str = ""
    doc: str = ""
    log: bool = False
    weights: tuple | None = None
    limits: tuple | None = None
    when: Mapping[str, tuple] | None = field(default=None, hash=False, compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ParamSpec {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "choice":
            if not self.choices:
                raise ValueError(f"ParamSpec {self.name}: a choice needs choices")
            object.__setattr__(self, "choices", tuple(self.choices))
            if self.default not in self.choices:
                raise ValueError(f"ParamSpec {self.name}: default {self.default!r} not in choices")
            if self.weights is not None and len(self.weights) != len(self.choices):
                raise ValueError(f"ParamSpec {self.name}: weights and choices differ in length")
        if self.kind in ("float", "int") and (self.low is None) != (self.high is None):
            raise ValueError(f"ParamSpec {self.name}: give both low and high or neither")
        if self.kind in ("float", "int") and self.low is not None and self.low > self.high:
            raise ValueError(f"ParamSpec {self.name}: low > high")
        if self.log and (self.low is None or self.low <= 0):
            raise ValueError(f"ParamSpec {self.name}: log sampling needs 0 < low")
        if self.when is not None:
            object.__setattr__(self, "when", {k: tuple(v) if isinstance(v, (list, tuple)) else (v,)
                                              for k, v in self.when.items()})

    # -- ranges --------------------------------------------------------------------------------
    @property
    def valid_range(self) -> tuple | None:
        """``(lo, hi)`` accepted by ``--set`` for numeric kinds, else None."""
        if self.kind not in ("float", "int"):
            return None
        if self.limits is not None:
            return tuple(self.limits)
        if self.low is None:
            return None
        return (self.low, self.high)

    def describe_range(self) -> str:
        if self.kind == "choice":
            if self.weights is None:
                return "{" + ", ".join(map(str, self.choices)) + "}"
            tot = float(sum(self.weights))
            return "{" + ", ".join(f"{c}:{w / tot:.2f}" for c, w in zip(self.choices, self.weights)) + "}"
        if self.kind == "bool":
            return f"P(true)={float(self.default):.2f}"
        if self.low is None:
            return "fixed"
        s = f"[{_fmt(self.low)}, {_fmt(self.high)}]" + (" log" if self.log else "")
        if self.limits is not None and tuple(self.limits) != (self.low, self.high):
            s += f" (--set {_fmt(self.limits[0])}..{_fmt(self.limits[1])})"
        return s

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Any:
        """Draw a value. Always consumes exactly one uniform from ``rng``."""
        return self.from_uniform(float(rng.random()))

    def from_uniform(self, u: float) -> Any:
        """The value at quantile-like position ``u`` in [0, 1) (what :meth:`sample` draws)."""
        if self.kind == "bool":
            return bool(u < float(self.default))
        if self.kind == "choice":
            if self.weights is None:
                return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
            cw = np.cumsum(np.asarray(self.weights, dtype=np.float64))
            return self.choices[min(int(np.searchsorted(cw, u * cw[-1], side="right")), len(self.choices) - 1)]
        if self.low is None or self.low == self.high:
            return self.default if self.low is None else (self.low if self.kind == "float" else int(self.low))
        if self.kind == "int":
            n = int(self.high) - int(self.low) + 1
            return int(self.low) + min(int(u * n), n - 1)
        if self.log:
            return float(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return float(self.low + u * (self.high - self.low))

    def coerce(self, value: Any) -> Any:
        """Parse (from a ``--set`` string) and range-check ``value``; raise SemgenError if invalid."""
        raw = value
        try:
            if self.kind == "bool":
                if isinstance(value, str):
                    v = value.strip().lower()
                    if v in _TRUE:
                        return True
                    if v in _FALSE:
                        return False
                    raise ValueError
                if isinstance(value, (bool, np.bool_)) or value in (0, 1):
                    return bool(value)
                raise ValueError
            if self.kind == "choice":
                for c in self.choices:
                    if value == c or (isinstance(value, str) and str(c) == value.strip()):
                        return c
                raise SemgenError(f"--set {self.name}={raw}: not one of {', '.join(map(str, self.choices))}")
            if self.kind == "int":
                if isinstance(value, str):
                    value = float(value.strip())
                if float(value) != int(float(value)):
                    raise ValueError
                value = int(float(value))
            else:
                value = float(value.strip()) if isinstance(value, str) else float(value)
                if not math.isfinite(value):
                    raise ValueError
        except (ValueError, TypeError):
            raise SemgenError(f"--set {self.name}={raw}: not a valid {self.kind}") from None
        rng_ = self.valid_range
        if rng_ is not None and not (rng_[0] <= value <= rng_[1]):
            raise SemgenError(
                f"--set {self.name}={raw}: out of range [{_fmt(rng_[0])}, {_fmt(rng_[1])}]"
                + (f" {self.unit}" if self.unit else ""))
        return value

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter applies given the other values (see ``when``)."""
        if not self.when:
            return True
        return all(values.get(k) in allowed for k, allowed in self.when.items())

    def describe(self) -> dict:
        """A row for ``semgen procedural --list``."""
        d = {"name": self.name, "kind": self.kind, "default": self.default, "range": self.describe_range(),
             "unit": self.unit, "doc": self.doc}
        if self.when:
            d["when"] = {k: list(v) for k, v in self.when.items()}
        return d


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


class ParamSpace:
    """An ordered collection of :class:`ParamSpec` with unique names.

    ``a + b`` concatenates two spaces (a name in both is an error).
    """

    def __init__(self, specs: Iterable[ParamSpec] = ()):
        self._specs: dict[str, ParamSpec] = {}
        for s in specs:
            if s.name in self._specs:
                raise ValueError(f"duplicate parameter name {s.name!r}")
            self._specs[s.name] = s

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> ParamSpec:
        return self._specs[name]

    def __add__(self, other: "ParamSpace | Iterable[ParamSpec]") -> "ParamSpace":
        return ParamSpace(list(self) + list(other))

    def __repr__(self) -> str:
        return f"ParamSpace({list(self._specs)})"

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def defaults(self) -> dict:
        """Every parameter at its nominal default (bools: default >= 0.5)."""
        out = {s.name: (bool(s.default >= 0.5) if s.kind == "bool" else s.default) for s in self}
        return {k: v for k, v in out.items() if self._specs[k].active(out)}

    def check_overrides(self, overrides: Mapping[str, Any] | None) -> dict:
        """Validate and coerce ``{name: value}``; unknown names raise a SemgenError listing valid ones."""
        out: dict[str, Any] = {}
        for name, value in (overrides or {}).items():
            self.check_name(name)
            out[name] = self._specs[name].coerce(value)
        return out

    def sample(self, rng: np.random.Generator, overrides: Mapping[str, Any] | None = None) -> dict:
        """Draw every parameter in order; ``overrides`` (validated) replace drawn values.

        Returns only the active parameters (see :attr:`ParamSpec.when`), in declaration order.
        """
        fixed = self.check_overrides(overrides)
        values: dict[str, Any] = {}
        # one uniform per parameter, drawn in one call (even for overridden ones: the stream of the
        # rest of the image stays the same whatever is fixed)
        us = rng.random(len(self._specs)).tolist()
        for s, u in zip(self, us):
            values[s.name] = fixed[s.name] if s.name in fixed else s.from_uniform(u)
        return {k: v for k, v in values.items() if self._specs[k].active(values)}

    def describe(self) -> list[dict]:
        """Rows (name, kind, default, range, unit, doc) for ``--list``."""
        return [s.describe() for s in self]

    def with_ranges(self, ranges: Mapping[str, Mapping] | None, where: str = "--set") -> "ParamSpace":
        """This space with some sampling ranges or choice weights replaced (see :func:`apply_range`).

        The order of the specs (hence of the uniforms drawn) is unchanged, so an image made
        without overrides is the same with or without this call.

        Examples
        --------
        >>> sp = ParamSpace([ParamSpec("w", "float", 1.0, 0.5, 2.0, limits=(0.1, 5.0))])
        >>> sp.with_ranges({"w": {"range": [3.0, 4.0]}})["w"].describe_range()
        '[3, 4] (--set 0.1..5)'
        """
        if not ranges:
            return self
        for name in ranges:
            self.check_name(name, where)
        return ParamSpace(apply_range(s, ranges[s.name], where) if s.name in ranges else s for s in self)

    def check_name(self, name: str, where: str = "--set") -> None:
        """Raise a one-line SemgenError if ``name`` is not a parameter of this space."""
        if name not in self._specs:
            import difflib

            close = difflib.get_close_matches(name, self.names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise SemgenError(f"{where} {name}: unknown parameter{hint}; valid: {', '.join(self.names)}")


RANGE_KEYS = ("range", "choices")  #: the keys of a sampling override; ``value`` pins instead


def apply_range(spec: ParamSpec, override: Mapping, where: str = "--set") -> ParamSpec:
    """``spec`` with its sampling range (``{"range": [lo, hi]}``) or choice weights
    (``{"choices": {value: weight}}``) replaced; a bad override raises a one-line SemgenError.

    A numeric range must lie within the parameter's limits (what ``--set`` accepts) and keeps the
    parameter's log sampling. Choices not named get weight 0. A bool takes
    ``{"choices": {"true": w, "false": w}}`` (its probability of True).

    Examples
    --------
    >>> s = ParamSpec("k", "choice", "a", choices=("a", "b", "c"))
    >>> apply_range(s, {"choices": {"b": 3, "c": 1}}).weights
    (0.0, 3.0, 1.0)
    """
    name = f"{where} {spec.name}"
    r = override.get("range")
    if spec.kind in ("choice", "bool") and isinstance(r, (list, tuple)) and all(isinstance(x, str) for x in r):
        override = {"choices": {r[0]: r[1]}}  # `--set name=a:2` is one weighted choice, not a range
    keys = set(override)
    if len(keys) != 1 or not keys <= set(RANGE_KEYS):
        raise SemgenError(f"{name}: expected exactly one of 'range' or 'choices', got {sorted(keys)}")
    if "range" in override:
        if spec.kind not in ("float", "int"):
            raise SemgenError(f"{name}: a {spec.kind} parameter takes choices, not a range "
                              f"({spec.describe_range()})")
        lim = spec.valid_range
        if lim is None:
            raise SemgenError(f"{name}: has no range (fixed at {spec.default}); only a value can be set")
        r = override["range"]
        try:
            lo, hi = (float(x) for x in r)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError
            if spec.kind == "int":
                if lo != int(lo) or hi != int(hi):
                    raise ValueError
                lo, hi = int(lo), int(hi)
        except (TypeError, ValueError):
            raise SemgenError(f"{name}: range {r!r} is not two {spec.kind}s lo, hi") from None
        unit = f" {spec.unit}" if spec.unit else ""
        if not (lim[0] <= lo <= hi <= lim[1]):
            raise SemgenError(f"{name}: range [{_fmt(lo)}, {_fmt(hi)}] outside its limits "
                              f"[{_fmt(lim[0])}, {_fmt(lim[1])}]{unit} (or lo > hi)")
        if spec.log and lo <= 0:
            raise SemgenError(f"{name}: log-sampled, so the range must be above 0, got [{_fmt(lo)}, {_fmt(hi)}]")
        return replace(spec, low=lo, high=hi, limits=lim)
    ch = override["choices"]
    if not isinstance(ch, Mapping) or not ch:
        raise SemgenError(f"{name}: choices must be a non-empty mapping value -> weight, got {ch!r}")
    options = (True, False) if spec.kind == "bool" else spec.choices
    if options is None:
        raise SemgenError(f"{name}: a {spec.kind} parameter takes a range, not choices ({spec.describe_range()})")
    by_str = {str(c).lower() if spec.kind == "bool" else str(c): c for c in options}
    w = {c: 0.0 for c in options}
    for key, weight in ch.items():
        k = str(key).strip().lower() if spec.kind == "bool" else str(key).strip()
        if k not in by_str:
            raise SemgenError(f"{name}: choice {key!r} not one of {', '.join(by_str)}")
        try:
            wf = float(weight)
        except (TypeError, ValueError):
            wf = float("nan")
        if not (math.isfinite(wf) and wf >= 0):
            raise SemgenError(f"{name}: weight of {key!r} must be a number >= 0, got {weight!r}")
        w[by_str[k]] = wf
    total = sum(w.values())
    if total <= 0:
        raise SemgenError(f"{name}: choice weights sum to 0")
    if spec.kind == "bool":
        return replace(spec, default=w[True] / total)
    return replace(spec, weights=tuple(w[c] for c in spec.choices))


def parse_set_value(text: str) -> dict:
    """A ``--set`` value as an override: ``lo:hi`` -> range, ``a,b,c`` or ``a:2,b:1`` -> choices,
    anything else -> ``{"value": text}`` (a pin). Types are checked later, against the spec.

    Examples
    --------
    >>> parse_set_value("0.5:2"), parse_set_value("full:2,micro:1"), parse_set_value("3")
    ({'range': ['0.5', '2']}, {'choices': {'full': '2', 'micro': '1'}}, {'value': '3'})
    """
    t = text.strip()
    if "," in t:
        out: dict[str, str] = {}
        for part in t.split(","):
            k, _, w = part.partition(":")
            if not k.strip():
                raise SemgenError(f"--set ...={text}: empty choice in a choice list")
            out[k.strip()] = w.strip() if w else "1"
        return {"choices": out}
    if ":" in t:
        lo, _, hi = t.partition(":")
        return {"range": [lo.strip(), hi.strip()]}
    return {"value": text}


def split_sets(items: Iterable[str] | None) -> tuple[dict[str, str], dict[str, dict]]:
    """``--set`` items -> ``(pins, ranges)``: ``{name: value}`` and ``{name: {"range"|"choices": ...}}``."""
    pins: dict[str, str] = {}
    ranges: dict[str, dict] = {}
    for k, v in parse_set_args(items).items():
        ov = parse_set_value(v)
        if "value" in ov:
            pins[k] = ov["value"]
        else:
            ranges[k] = ov
    return pins, ranges


def parse_set_args(items: Iterable[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed item raises SemgenError."""
    out: dict[str, str] = {}
    for item in items or ():
        if "=" not in item:
            raise SemgenError(f"--set {item!r}: expected name=value")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise SemgenError(f"--set {item!r}: empty parameter name")
        out[k] = v
    return out
