"""The generator playground's logic: parameter widgets from the registry, one image, the export.

The page fixes some parameters (the ones the user touched: *pins*) and samples the rest, exactly as
``semgen procedural --set name=value`` does; pasted ``--set name=lo:hi`` / ``name=a:2,b:1`` items or
a ``--profile`` change how a parameter is sampled (*ranges*). The image shown is image 0 of the
exported command, byte for byte (same generator, ``image_seed(seed, label, 0)``, size, pins and
ranges), whether the command carries ``--set`` items or the exported profile file.

Examples
--------
>>> from semgen.generators.procedural import create_generator
>>> gen = create_generator("bridge")
>>> s = parse_settings("--set sigma_nm=1.5 --set psf_sigma_px=0.5:1", gen)
>>> s["pins"], s["ranges"]
({'sigma_nm': 1.5}, {'psf_sigma_px': {'range': [0.5, 1.0]}})
>>> procedural_command(gen, s["pins"], s["ranges"], n=100, size=128, seed=7)
'semgen procedural --class bridge --n 100 --size 128 --seed 7 --set sigma_nm=1.5 --set psf_sigma_px=0.5:1.0'
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SemgenError
from ..imageio import encode_png, sha256_bytes
from ..seeding import image_seed

#: Image sizes the playground renders (the CLI takes 32-4096; past 1024 a slider stops being live).
MIN_SIZE, MAX_SIZE = 32, 1024
#: Seeds the page accepts (any non-negative 32-bit integer; the CLI takes any integer).
MAX_SEED = 2**32 - 1
#: Slider positions across a parameter's range: fine enough to pick any value a user would type.
SLIDER_STEPS = 1000


@dataclass(frozen=True)
class Widget:
    """How one parameter appears on the page.

    Attributes
    ----------
    name, kind : str
        The parameter (``ParamSpec.name``) and its kind (float, int, choice, bool).
    control : {"slider", "number", "dropdown", "checkbox"}
        ``number`` for log-sampled and unbounded parameters (a linear slider over four decades
        cannot pick the small values).
    group : str
        ``class``, ``imaging`` or ``overlays``: the section it is listed in.
    minimum, maximum : float or None
        What ``--set`` accepts (``ParamSpec.valid_range``).
    step : float or None
    choices : tuple of str
        For dropdowns: the choices as ``--set`` spells them.
    label, info : str
        The widget's title (name and unit) and its help line (doc, sampled range, limits, when).
    """

    name: str
    kind: str
    control: str
    group: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple = ()
    label: str = ""
    info: str = ""


def _nice_step(lo: float, hi: float) -> float:
    """A power of ten at most (hi - lo) / SLIDER_STEPS (a slider step that types as a short number)."""
    span = float(hi) - float(lo)
    if span <= 0:
        return 1.0
    return 10.0 ** math.floor(math.log10(span / SLIDER_STEPS))


def widgets(gen) -> list[Widget]:
    """One :class:`Widget` per parameter of a generator, in sampling order.

    Parameters
    ----------
    gen : Generator
        From :func:`semgen.generators.procedural.create_generator`.
    """
    from ..generators.procedural import IMAGING

    class_names = set(gen.params.names)
    imaging_names = set(IMAGING.names)
    out = []
    for s in gen.space:
        group = "class" if s.name in class_names else "imaging" if s.name in imaging_names else "overlays"
        parts = [s.doc] if s.doc else []
        parts.append(f"sampled: {s.describe_range()}")  # names the --set limits where they differ
        rng_ = s.valid_range
        if s.when:
            parts.append("only when " + ", ".join(f"{k} = {'|'.join(map(str, v))}" for k, v in s.when.items()))
        label = s.name + (f" ({s.unit})" if s.unit else "")
        common = dict(name=s.name, kind=s.kind, group=group, label=label, info="; ".join(parts))
        if s.kind == "bool":
            out.append(Widget(control="checkbox", **common))
        elif s.kind == "choice":
            out.append(Widget(control="dropdown", choices=tuple(str(c) for c in s.choices), **common))
        elif rng_ is None or s.log:
            out.append(Widget(control="number", minimum=None if rng_ is None else rng_[0],
                              maximum=None if rng_ is None else rng_[1], step=1 if s.kind == "int" else None,
                              **common))
        else:
            step = 1 if s.kind == "int" else _nice_step(*rng_)
            out.append(Widget(control="slider", minimum=rng_[0], maximum=rng_[1], step=step, **common))
    return out


def check_value(gen, name: str, value: Any) -> Any:
    """``value`` for parameter ``name``, coerced and range-checked as ``--set`` does.

    Raises
    ------
    SemgenError
        An unknown parameter, or a value outside the parameter's limits, with the limits and unit.
    """
    return gen.space.check_overrides({name: value})[name]


@dataclass
class Rendered:
    """One playground image and what it is made of."""

    image: np.ndarray          #: uint8 (size, size)
    mask: np.ndarray | None    #: instance mask, None for no defect
    bboxes: list               #: [[x0, y0, x1, y1], ...]
    params: dict               #: every active parameter, sampled or fixed
    seed: int                  #: the image's own seed (image 0 of the master seed)
    sha256: str                #: of the PNG that ``semgen procedural`` writes for it
    meta: dict = field(default_factory=dict)


def check_seed_size(seed, size) -> tuple[int, int]:
    """``(seed, size)`` as integers within the page's limits, else a one-line :class:`SemgenError`."""
    try:
        seed_i = int(seed)
        if seed_i != float(seed):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise SemgenError(f"seed must be a whole number, got {seed!r}") from None
    if not 0 <= seed_i <= MAX_SEED:
        raise SemgenError(f"seed must be in [0, {MAX_SEED}], got {seed_i}")
    try:
        size_i = int(size)
        if size_i != float(size):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise SemgenError(f"size must be a whole number of pixels, got {size!r}") from None
    if not MIN_SIZE <= size_i <= MAX_SIZE:
        raise SemgenError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {size_i}")
    return seed_i, size_i


def check_ranges(gen, ranges: dict | None) -> dict:
    """Sampling overrides (``{name: {"range": [lo, hi]}}`` or ``{"choices": {...}}``) checked against
    the parameters' limits, in the canonical form a profile records."""
    from ..generators.procedural.profile import canonical_overrides

    ranges = dict(ranges or {})
    if any("value" in v for v in ranges.values() if isinstance(v, dict)):
        raise SemgenError("a pinned value is a pin, not a range")
    return canonical_overrides(gen, ranges, "--set") if ranges else {}


def render(gen, seed: int, size: int, pins: dict, ranges: dict | None = None) -> Rendered:
    """Image 0 of ``semgen procedural --class GEN --seed SEED --size SIZE --set ...``.

    Parameters
    ----------
    gen : Generator
    seed : int
        The master seed (``--seed``).
    size : int
        Width and height in pixels.
    pins : dict
        ``{name: value}`` fixed parameters (``--set name=value``); checked against their limits.
    ranges : dict, optional
        Sampling overrides (``--set name=lo:hi``, choice weights), as :func:`check_ranges` takes them.
    """
    from ..generators.procedural import generate_one

    seed, size = check_seed_size(seed, size)
    pins = gen.space.check_overrides(pins)
    ranges = check_ranges(gen, ranges)
    s_img = image_seed(seed, gen.label, 0)
    s = generate_one(gen.with_ranges(ranges) if ranges else gen, s_img, size, pins)
    return Rendered(image=s.image, mask=s.mask, bboxes=[list(b) for b in s.bboxes], params=dict(s.params),
                    seed=s_img, sha256=sha256_bytes(encode_png(s.image)), meta=dict(s.meta))


def format_value(value: Any) -> str:
    """A parameter value as ``--set`` reads it back exactly (floats by ``repr``: shortest round trip)."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))
    return str(value)


def _range_text(ov: dict) -> str:
    if "range" in ov:
        return ":".join(format_value(v) for v in ov["range"])
    return ",".join(f"{k}:{format_value(float(w))}" for k, w in ov["choices"].items())


def set_list(gen, pins: dict, ranges: dict | None = None) -> list[str]:
    """``["name=value", "name=lo:hi", "name=a:2,b:1", ...]``: the ``--set`` items of these settings,
    in the generator's parameter order (a pin wins over a range of the same parameter)."""
    pins = gen.space.check_overrides(pins)
    ranges = check_ranges(gen, ranges)
    return [f"{n}={format_value(pins[n])}" if n in pins else f"{n}={_range_text(ranges[n])}"
            for n in gen.space.names if n in pins or n in ranges]


def profile(gen, pins: dict, ranges: dict | None = None) -> dict:
    """These settings as a validated ``--profile`` (pins as ``{value: v}``), ready for
    :func:`semgen.generators.procedural.profile.dump_profile`."""
    from ..generators.procedural.profile import PROFILE_VERSION, validate_profile

    pins = gen.space.check_overrides(pins)
    ranges = check_ranges(gen, ranges)
    own = {**{k: v for k, v in ranges.items() if k not in pins}, **{k: {"value": v} for k, v in pins.items()}}
    return validate_profile({"version": PROFILE_VERSION, "classes": {gen.name: own}}, where="settings")


def procedural_command(gen, pins: dict, ranges: dict | None = None, *, n: int, size: int, seed: int,
                       out: str | None = None, profile_path: str | None = None) -> str:
    """The ``semgen procedural`` command that makes ``n`` such images (image 0 is the one shown):
    the settings as ``--set`` items, or as ``--profile PROFILE_PATH`` when that is given."""
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise SemgenError(f"N must be a whole number, got {n!r}") from None
    if n < 1:
        raise SemgenError(f"N must be at least 1, got {n}")
    seed, size = check_seed_size(seed, size)
    argv = ["semgen", "procedural", "--class", gen.name, "--n", str(n), "--size", str(size), "--seed", str(seed)]
    if out:
        argv += ["--out", str(out)]
    if profile_path:
        profile(gen, pins, ranges)  # the same checks as the --set form
        argv += ["--profile", str(profile_path)]
    else:
        for item in set_list(gen, pins, ranges):
            argv += ["--set", item]
    return shlex.join(argv)


def parse_settings(text: str, gen=None) -> dict:
    """Settings from pasted text: a ``semgen procedural`` command, ``--set`` items, bare
    ``name=value`` (or ``name=lo:hi``, ``name=a:2,b:1``) items, or ``--profile FILE``.

    Returns ``{"class", "seed", "size", "pins", "ranges"}`` (``None`` where the text does not say);
    pins and ranges are checked against the generator named by ``--class`` (else ``gen``); a
    ``--set`` item wins over the profile, as on the command line.

    Raises
    ------
    SemgenError
        Text that does not split, an item without ``=``, an unknown parameter, a value or range
        outside its limits (the message names it and its limits), an unreadable profile.
    """
    from ..generators.procedural import create_generator
    from ..generators.procedural.params import split_sets
    from ..generators.procedural.profile import class_overrides, load_profile, split_overrides

    try:
        tokens = shlex.split(text or "", comments=True)
    except ValueError as e:
        raise SemgenError(f"cannot read the settings: {e}") from None
    found: dict = {"--class": None, "--seed": None, "--size": None, "--profile": None}
    items: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("semgen", "procedural"):
            i += 1
            continue
        if t in ("--class", "--seed", "--size", "--set", "--n", "--out", "--workers", "--shard", "--profile"):
            if i + 1 >= len(tokens):
                raise SemgenError(f"{t} needs a value")
            if t == "--set":
                items.append(tokens[i + 1])
            elif t in found:
                found[t] = tokens[i + 1]
            i += 2
            continue
        if t.startswith("--"):
            raise SemgenError(f"{t}: not a setting the playground reads (--class, --seed, --size, --set, --profile)")
        items.append(t)
        i += 1
    if found["--class"] is not None:
        gen = create_generator(found["--class"])
    if gen is None:
        raise SemgenError("no class given (--class C)")
    pins, ranges = {}, {}
    if found["--profile"] is not None:
        pins, ranges = split_overrides(class_overrides(load_profile(found["--profile"]), gen))
    set_pins, set_ranges = split_sets(items)
    set_ranges = check_ranges(gen, set_ranges)
    pins = {**{k: v for k, v in pins.items() if k not in set_ranges}, **gen.space.check_overrides(set_pins)}
    ranges = {**{k: v for k, v in check_ranges(gen, ranges).items() if k not in set_pins}, **set_ranges}
    out = {"class": gen.name if found["--class"] is not None else None, "seed": None, "size": None,
           "pins": pins, "ranges": ranges}
    if found["--seed"] is not None or found["--size"] is not None:
        s, z = check_seed_size(found["--seed"] or 0, found["--size"] or MIN_SIZE)
        out["seed"] = s if found["--seed"] is not None else None
        out["size"] = z if found["--size"] is not None else None
    return out
