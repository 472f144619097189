"""The canonical defect classes and the aliases that resolve to them."""

from __future__ import annotations

import difflib

from .errors import UnknownClassError

#: Canonical labels, in a fixed order (class indices everywhere follow this order).
CLASSES: tuple[str, ...] = (
    "clean", "bridge", "open", "ler", "via", "crack", "particle", "cmp", "scratch", "other",
)

DESCRIPTIONS: dict[str, str] = {
    "clean": "defect-free patterns: lines, pads, contact arrays, cross-sections",
    "bridge": "material joining two neighbouring lines",
    "open": "a line broken or pinched (necking)",
    "ler": "strongly rough / wiggling line edges",
    "via": "missing, malformed, voided or misplaced vias and contacts",
    "crack": "cracks in films, bumps and interconnects",
    "particle": "a foreign particle on the pattern",
    "cmp": "CMP scratches, chatter marks, residue, dishing / erosion",
    "scratch": "long straight or curved scratches across patterns",
    "other": "anything else: collapse, residue, tilted views, mixed defects",
}

#: Caption phrases (diffusion prompts) that differ from the default ``"<class> defect"``.
_PHRASES: dict[str, str] = {
    "clean": "clean pattern, no defect",
    "open": "open defect, broken line",
    "ler": "line edge roughness defect",
    "cmp": "CMP defect",
}

#: The phrase that names each class in a caption (``"bridge defect"``); a new class gets
#: ``"<class> defect"`` without touching the captions. Trained diffusion models depend on these words.
CLASS_PHRASES: dict[str, str] = {c: _PHRASES.get(c, f"{c} defect") for c in CLASSES}

ALIASES: dict[str, str] = {
    "bridges": "bridge", "bridging": "bridge", "short": "bridge", "shorts": "bridge",
    "microbridge": "bridge", "micro_bridge": "bridge",
    "opens": "open", "gap": "open", "gaps": "open", "break": "open", "broken": "open",
    "pinch": "open", "necking": "open", "line_break": "open",
    "line_edge_roughness": "ler", "lwr": "ler", "roughness": "ler", "rough": "ler",
    "vias": "via", "malformed_via": "via", "malformed_vias": "via", "contact": "via",
    "contacts": "via", "missing_via": "via", "via_void": "via",
    "cracks": "crack", "cracking": "crack",
    "particles": "particle", "foreign_material": "particle", "contamination": "particle",
    "fm": "particle",
    "cmp_scratch": "cmp", "cmp_defect": "cmp", "cmp_defects": "cmp", "polish": "cmp",
    "scratches": "scratch",
    "normal": "clean", "good": "clean", "ok": "clean", "none": "clean", "no_defect": "clean",
    "defect_free": "clean",
    "others": "other", "unknown": "other", "misc": "other",
}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def canonical(name: str) -> str:
    """Return the canonical label for ``name`` (a label or an alias, any case).

    Raises
    ------
    UnknownClassError
        If ``name`` is neither; the message lists the valid classes and the closest match.
    """
    key = _key(str(name))
    if key in CLASSES:
        return key
    if key in ALIASES:
        return ALIASES[key]
    known = list(CLASSES) + list(ALIASES)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownClassError(
        f"unknown class '{name}'.{hint} Valid classes: {', '.join(CLASSES)}"
    )


def class_index(name: str) -> int:
    """Index of a (possibly aliased) class in :data:`CLASSES`."""
    return CLASSES.index(canonical(name))
