"""Captions built from manifest records, and caption dropout for classifier-free guidance.

A caption is a comma-separated list of short phrases, always in this order::

    <style>, <view>, <layout / orientation>, pitch <P> nm, <noise> noise, <class phrase>

for example ``"real SEM micrograph, top-down, vertical lines, pitch 64 nm, low noise, bridge
defect"``. Phrases whose field a record lacks are left out.

- style: ``real SEM micrograph`` for records whose ``source`` is ``real`` (or that an experiment
  marks real), ``simulated SEM image`` for everything else (procedural, diffusion, refined).
- view: ``top-down``, ``cross-section`` or ``tilted`` (record ``meta.view``, ``params.view`` or ``view``).
- layout / orientation: ``vertical lines``, ``horizontal lines``, ``contact array``, ``pads``,
  ``logic``, ... from ``meta.layout`` and ``meta.orientation`` (``lines`` layouts read as
  "<orientation> lines"; angles in degrees become vertical / horizontal / diagonal).
- pitch: ``meta.pitch_nm`` (or ``params.pitch_nm`` / ``params.pitch``), rounded to 8 nm so that
  captions stay few and the text-embedding cache small.
- noise: ``low`` / ``medium`` / ``high`` when a record says how noisy it is: ``meta.noise_level``
  if the generator states it; else, for the procedural SEM model, the relative noise at mid grey
  ``sqrt(0.5 / (dose * frames) + detector_sigma**2)`` binned by :data:`DOSE_NOISE_BINS`; else the
  first of ``params.noise_sigma`` / ``noise`` / ``shot_noise`` / ``noise_std`` (fraction of full
  scale, or grey levels if > 1) binned by :data:`NOISE_BINS`.
- class phrase: :data:`CLASS_PHRASES`.

During training :func:`drop_caption` removes each optional phrase with probability ``p_field`` (so
short prompts such as "bridge defect" are in-distribution) and the whole caption with probability
``p_drop`` (the empty caption is the unconditional branch of classifier-free guidance).
"""

from __future__ import annotations

import numpy as np

from ...errors import SemgenError
from ...taxonomy import ALIASES, CLASS_PHRASES, CLASSES, canonical

REAL_STYLE = "real SEM micrograph"
SIM_STYLE = "simulated SEM image"
#: What refinement's classifier-free guidance moves away from: the empty caption, or the record's own
#: caption in the simulated style (guidance then pushes along the simulated -> real style direction).
NEGATIVES = ("empty", "simulated")


#: Upper bounds of the "low" and "medium" noise levels, for noise given as a fraction of the signal
#: range (values > 1 are read as grey levels out of 255).
NOISE_BINS = (0.04, 0.10)
#: The same for records of the procedural SEM model (``params.dose``, ``frames``, ``detector_sigma``):
#: relative noise ``sqrt(0.5 / (dose * frames) + detector_sigma**2)`` at mid grey.
DOSE_NOISE_BINS = (0.07, 0.14)
_NOISE_KEYS = ("noise_sigma", "noise", "shot_noise", "noise_std", "gaussian_noise")
_PITCH_KEYS = ("pitch_nm", "pitch")


def _field(rec: dict, *keys):
    """First value among ``meta.<key>``, ``params.<key>``, ``<key>`` for the given keys."""
    meta = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
    params = rec.get("params") if isinstance(rec.get("params"), dict) else {}
    for key in keys:
        for src in (meta, params, rec):
            v = src.get(key)
            if v is not None and v != "":
                return v
    return None


def style_of(rec: dict) -> str:
    """The style phrase of a record: real for ``source == "real"``, simulated otherwise."""
    return REAL_STYLE if str(rec.get("source", "")).lower() == "real" else SIM_STYLE


def _orientation_word(o) -> str | None:
    if o is None:
        return None
    if isinstance(o, (int, float)):
        a = float(o) % 180.0
        if a < 15 or a > 165:
            return "horizontal"
        if 75 < a < 105:
            return "vertical"
        return "diagonal"
    o = str(o).strip().lower()
    return o or None


def layout_phrase(rec: dict) -> str | None:
    """``"vertical lines"``, ``"contact array"``, ... or None."""
    layout = _field(rec, "layout")
    orient = _orientation_word(_field(rec, "orientation"))
    if layout is None:
        return f"{orient} lines" if orient else None
    layout = str(layout).strip().lower().replace("_", " ")
    if layout in ("crosssection", "cross-section", "cross section", "tilt", "tilted"):
        # the view phrase already says it; a stack style ("interconnect") says more
        style = _field(rec, "style")
        return str(style).strip().lower().replace("_", " ") if isinstance(style, str) and style else None
    if layout in ("lines", "line", "line space", "line/space", "linespace"):
        return f"{orient} lines" if orient else "lines"
    if orient and orient not in layout:
        return f"{orient} {layout}"
    return layout


def pitch_phrase(rec: dict) -> str | None:
    p = _field(rec, *_PITCH_KEYS)
    try:
        p = float(p)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(p) or p <= 0:
        return None
    return f"pitch {int(max(8, round(p / 8.0) * 8))} nm"


def noise_phrase(rec: dict) -> str | None:
    lvl = _field(rec, "noise_level")
    if isinstance(lvl, str) and lvl.strip().lower() in ("low", "medium", "high"):
        return f"{lvl.strip().lower()} noise"
    dose = _field(rec, "dose")
    if dose is not None:  # the procedural SEM model: shot noise at mid grey plus detector noise
        try:
            frames = float(_field(rec, "frames") or 1)
            det = float(_field(rec, "detector_sigma") or 0.0)
            v = float(np.sqrt(0.5 / max(float(dose) * frames, 1e-6) + det * det))
        except (TypeError, ValueError):
            return None
        bins = DOSE_NOISE_BINS
    else:
        v = _field(rec, *_NOISE_KEYS)
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        if v > 1.0:
            v /= 255.0
        bins = NOISE_BINS
    if not np.isfinite(v) or v < 0:
        return None
    word = "low" if v < bins[0] else "medium" if v < bins[1] else "high"
    return f"{word} noise"


def caption_parts(rec: dict, *, style: str | None = None) -> list[str]:
    """The phrases of a record's caption in order; the last is always the class phrase."""
    label = canonical(rec["label"])
    view = _field(rec, "view")
    parts = [style or style_of(rec)]
    if view:
        parts.append(str(view).strip().lower())
    for phrase in (layout_phrase(rec), pitch_phrase(rec), noise_phrase(rec)):
        if phrase:
            parts.append(phrase)
    parts.append(CLASS_PHRASES[label])
    return parts


def build_caption(rec: dict, *, style: str | None = None) -> str:
    """The full caption of a manifest record (see the module docstring for the format).

    Parameters
    ----------
    rec : dict
        A manifest record (needs ``label``; uses ``source``, ``meta``, ``params`` where present).
    style : str, optional
        Override the style phrase, e.g. :data:`REAL_STYLE` to ask for the real look in refinement.
    """
    return ", ".join(caption_parts(rec, style=style))


def class_prompt(label: str, *, style: str = REAL_STYLE, view: str | None = None) -> str:
    """A short prompt for a class, e.g. ``"real SEM micrograph, bridge defect"``."""
    label = canonical(label)
    parts = [style] + ([view] if view else []) + [CLASS_PHRASES[label]]
    return ", ".join(parts)


def drop_caption(parts: list[str], rng: np.random.Generator, *, p_drop: float = 0.1,
                 p_field: float = 0.25) -> str:
    """Training-time caption: empty with probability ``p_drop``; else each phrase but the class
    phrase is kept with probability ``1 - p_field``."""
    if rng.random() < p_drop:
        return ""
    keep = rng.random(len(parts)) >= p_field
    keep[-1] = True
    return ", ".join(p for p, k in zip(parts, keep) if k)


def label_from_prompt(prompt: str) -> str:
    """The class a free-text prompt asks for (its class phrase, a class name or an alias).

    Raises :class:`SemgenError` if the prompt names no class or several.
    """
    text = prompt.lower()
    found = set()
    for label, phrase in CLASS_PHRASES.items():
        if phrase.lower() in text:
            found.add(label)
            text = text.replace(phrase.lower(), " ")  # its words name no further class
    # class names and aliases are looked for even after a phrase matched: "a bridge phrase and an
    # open" names two classes, and taking the first would label the images wrongly
    words = {w.strip(".,;:()") for w in text.replace("-", "_").split()}
    for w in words:
        if w in CLASSES:
            found.add(w)
        elif w in ALIASES:
            found.add(ALIASES[w])
    if "line edge roughness" in text:
        found.add("ler")
    if len(found) != 1:
        what = "no class" if not found else f"several classes ({', '.join(sorted(found))})"
        raise SemgenError(f"the prompt names {what}; give the label with --class "
                          f"(one of {', '.join(CLASSES)})")
    return found.pop()
