"""Generator profiles: per-class sampling ranges, choice weights and pinned values, as data.

A profile is a YAML (or JSON) file::

    version: 1
    classes:
      bridge:                                   # a generator name, class label or alias
        bridge_width: {range: [0.5, 2.0]}       # numeric range (log params stay log-sampled)
        layout: {choices: {lines: 3, pads: 1}}  # choice weights (unnamed choices: weight 0)
        jpeg: {choices: {true: 1, false: 3}}    # a bool: its probability of True
        n_bridges: {value: 1}                   # pinned
    reference:                                  # optional: what `semgen tune` matched it to
      path: data/real/train
      sha256: ...                               # sha256 over the sorted file sha256s
      n_images: 240
      files: [...]                              # the sorted file sha256s (for leak checks)

:func:`load_profile` validates the schema with pydantic and every override against its
generator's parameter specs (unknown parameter, range outside the limits: a one-line
:class:`~semgen.errors.SemgenError`). :func:`canonical_json` is the form that is hashed and
recorded in ``dataset.json`` and in every record, so a record alone remakes its image.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import SemgenError

PROFILE_VERSION = 1

Scalar = Union[bool, int, float, str]


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid")
    range: List[float] = Field(min_length=2, max_length=2)


class _Choices(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choices: Dict[str, float] = Field(min_length=1)

    @field_validator("choices", mode="before")
    @classmethod
    def _keys_as_str(cls, v):
        # YAML reads `true:` and `1:` as bool / int keys; choices are matched by their text
        return {(str(k).lower() if isinstance(k, bool) else str(k)): w for k, w in v.items()} if isinstance(v, dict) else v


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Scalar


class Reference(BaseModel):
    """The real images a profile was tuned on."""

    model_config = ConfigDict(extra="forbid")
    path: Optional[str] = None
    sha256: str
    n_images: int = Field(ge=0)
    files: List[str] = Field(default_factory=list)


class ProfileModel(BaseModel):
    """The schema of a profile file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    version: int
    classes: Dict[str, Dict[str, Union[_Range, _Choices, _Value]]] = Field(default_factory=dict)
    reference: Optional[Reference] = None
    tune: Optional[Dict[str, Any]] = None  #: how it was tuned (trials, objective); informative only

    @field_validator("version")
    @classmethod
    def _version(cls, v):
        if v != PROFILE_VERSION:
            raise ValueError(f"unsupported profile version {v} (this semgen reads version {PROFILE_VERSION})")
        return v


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith(("_Range", "_Choices", "_Value")))
    return f"{loc}: {err['msg']}" if loc else err["msg"]


def validate_profile(data: Any, where: str = "profile") -> dict:
    """Check a parsed profile (schema and every override against its generator); return its
    canonical dict: classes keyed by generator name, parameters sorted, ranges as floats/ints.

    Examples
    --------
    >>> p = validate_profile({"version": 1, "classes": {"bridges": {"bridge_width": {"range": [1, 2]}}}})
    >>> p["classes"]
    {'bridge': {'bridge_width': {'range': [1.0, 2.0]}}}
    """
    from .registry import create_generator

    if not isinstance(data, dict):
        raise SemgenError(f"{where}: expected a mapping with 'version' and 'classes', got {type(data).__name__}")
    try:
        m = ProfileModel.model_validate(data)
    except ValidationError as e:
        raise SemgenError(f"{where}: {_first_error(e)}") from None
    classes: dict[str, dict] = {}
    for cls_name, params in m.classes.items():
        gen = create_generator(cls_name)  # unknown class: UnknownClassError, one line
        if gen.name in classes:
            raise SemgenError(f"{where}: class {gen.name} given twice ({cls_name})")
        ovs = {k: v.model_dump() for k, v in params.items()}
        classes[gen.name] = canonical_overrides(gen, ovs, f"{where} {gen.name}:")
    out: dict = {"version": m.version, "classes": dict(sorted(classes.items()))}
    if m.reference is not None:
        ref = m.reference.model_dump()
        ref["files"] = sorted(ref["files"])
        out["reference"] = ref
    if m.tune is not None:
        out["tune"] = m.tune
    return out


def canonical_overrides(gen, overrides: dict, where: str) -> dict:
    """``{param: {"range"|"choices"|"value": ...}}`` checked against ``gen``'s specs, in a
    canonical form (sorted, typed): what is hashed and recorded."""
    space = gen.space
    out: dict[str, dict] = {}
    for name in sorted(overrides):
        ov = overrides[name]
        space.check_name(name, where)
        spec = space[name]
        if "value" in ov:
            out[name] = {"value": _plain(spec.coerce(ov["value"]))}
            continue
        new = space.with_ranges({name: ov}, where)[name]  # validates (limits, choices, log)
        if "range" in ov:
            out[name] = {"range": [new.low, new.high]}
        elif spec.kind == "bool":
            out[name] = {"choices": {"true": float(new.default), "false": 1.0 - float(new.default)}}
        else:
            out[name] = {"choices": {str(c): float(w) for c, w in zip(new.choices, new.weights)}}
    return out


def _plain(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    return v


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """Canonical overrides -> ``(pins, ranges)`` as :meth:`Generator.with_ranges` and
    :func:`~.generation.generate_one` take them."""
    pins = {k: v["value"] for k, v in overrides.items() if "value" in v}
    ranges = {k: v for k, v in overrides.items() if "value" not in v}
    return pins, ranges


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, ASCII: the form that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def load_profile(path: str | os.PathLike) -> dict:
    """Read and validate a profile file (YAML or JSON); return its canonical dict.

    Raises :class:`SemgenError` (one line) on a missing file, bad YAML or an invalid profile.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise SemgenError(f"--profile {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise SemgenError(f"--profile {path}: not valid YAML{at}") from None
    return validate_profile(data, where=f"--profile {path}")


def dump_profile(profile: dict, path: str | os.PathLike) -> None:
    """Write a (validated) profile as YAML, atomically."""
    import yaml

    from ...imageio import write_bytes_atomic

    text = yaml.safe_dump(profile, sort_keys=False, default_flow_style=None, width=120)
    write_bytes_atomic(path, text.encode())


def class_overrides(profile: dict | None, gen) -> dict:
    """The canonical overrides a profile holds for generator ``gen`` ({} if none)."""
    if not profile:
        return {}
    return dict(profile.get("classes", {}).get(gen.name, {}))


def tuned_reference_files(root) -> dict[str, set[str]]:
    """``{profile sha256: reference file sha256s}`` of the tuned profiles a dataset dir's
    procedural runs used (from ``dataset.json``; {} for an ImageFolder or untuned runs).

    ``semgen ablate`` refuses a test set that shares an image with one of these references: a
    profile fitted to test images would leak them into the synthetic data.
    """
    from ...manifests import DatasetDir

    ds = DatasetDir(root)
    if not ds.info_path.exists():
        return {}
    out: dict[str, set[str]] = {}
    for cfg in (ds.read_info().get("configs") or {}).values():
        ref = cfg.get("profile_reference") if isinstance(cfg, dict) else None
        if ref and ref.get("files"):
            out.setdefault(str(cfg.get("profile_sha256")), set()).update(ref["files"])
    return out
