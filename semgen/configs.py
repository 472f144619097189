"""Config objects: the settings of one long command as a validated, frozen, JSON-able value.

:class:`Config` is the pydantic base of every config object:

- :class:`~semgen.classifier.train_config.TrainConfig` (``semgen train``) and the settings it nests,
  :class:`~semgen.classifier.augment.AugmentConfig`, :class:`~semgen.classifier.distill.DistillConfig`
  (``--teacher``) and :class:`~semgen.classifier.qat.QATConfig` (``--qat``);
- :class:`~semgen.classifier.export_config.ExportConfig` (``semgen export``);
- :class:`~semgen.curation.curate_config.CurateConfig` (``semgen curate``);
- :class:`~semgen.pretrain.train.PretrainConfig` (``semgen pretrain``);
- :class:`~semgen.ablation.config.AblationConfig` (``semgen ablate``; with its ``Arm``, ``Init`` and
  ``Source``), which :func:`~semgen.ablation.config.build_config` makes from YAML, preset and flags;
- the diffusion :class:`~semgen.generators.diffusion.train.TrainConfig` (``semgen diffuse train``).

The library function takes the config, the CLI builds it from its flags, and the run writes it as
plain JSON where it records its settings, so ``Config.from_json(cfg.to_json()) == cfg``. What a run
records keeps its bytes: fields in their order, numbers as given (:data:`Number` keeps an int an
int), so runs and cached cells made before a config moved here are still found. A bad value is one
line naming its flag and field, never a traceback, from the constructor as from :meth:`Config.make`::

    --calib-max must be a positive integer, got 0 (ExportConfig.calib_max)

Positional values fill the fields in order (``DistillConfig(["runs/t"], 2.0)``), as the
dataclasses these configs replaced allowed.

The field types below (:data:`PositiveInt`, :data:`Int`, :data:`Finite`, :data:`Number`, :data:`Flag`,
:data:`PathStr`, :data:`Paths`, :data:`PathList`) carry the sentence that such a message uses.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import SemgenError


def _positive_int(v: Any) -> int:
    try:
        ok = not isinstance(v, bool) and int(v) == v and v >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:  # True is an int to Python, and 2.5 would truncate: both are mistakes here
        raise ValueError("must be a positive integer")
    return int(v)


def _finite(v: Any) -> float:
    try:
        ok = not isinstance(v, (bool, str)) and math.isfinite(float(v))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:  # nan compares False with everything: a nan threshold silently disables its check
        raise ValueError("must be a finite number")
    return float(v)


def _path(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, os.PathLike)) or not os.fspath(v):
        raise ValueError("must be a path")
    return str(os.fspath(v))


def _paths(v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, (str, os.PathLike)) else v
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("must be one or more paths")
    return tuple(_path(x) for x in items)


def _path_list(v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, (str, os.PathLike)) else v
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be a list of paths")
    return tuple(_path(x) for x in items)


def _number(v: Any) -> int | float:
    try:
        ok = not isinstance(v, (bool, str)) and math.isfinite(float(v))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError("must be a finite number")
    # an int stays an int: a run records its settings as given, and 1 and 1.0 are other bytes in JSON
    return v if isinstance(v, (int, float)) else float(v)


def _int(v: Any) -> int:
    try:
        ok = not isinstance(v, (bool, str)) and int(v) == v
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError("must be an integer")
    return int(v)


#: An integer >= 1 (a bool or a fraction is refused, not truncated).
PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
#: An integer (not a bool, not a fraction); bounds go in ``Field(ge=...)``.
Int = Annotated[int, BeforeValidator(_int)]
#: A finite float (nan and inf are refused); bounds go in ``Field(ge=...)``.
Finite = Annotated[float, BeforeValidator(_finite)]
#: A finite number kept as given (an int stays an int, so a recorded setting keeps its bytes).
Number = Annotated[Union[int, float], BeforeValidator(_number)]
#: True or False, and nothing that merely converts to one ("no" is not False).
Flag = Annotated[bool, Field(strict=True)]
#: A path, kept as the text it was given (``os.PathLike`` accepted), so the JSON is plain.
PathStr = Annotated[str, BeforeValidator(_path)]
#: One path or several (``DIR`` or ``DIR=WEIGHT`` each), as a tuple of text.
Paths = Annotated[tuple[str, ...], BeforeValidator(_paths)]
#: Zero or more paths, as a tuple of text.
PathList = Annotated[tuple[str, ...], BeforeValidator(_path_list)]

#: pydantic's own error types, in the words of the messages above
_PHRASES = {
    "missing": "is required", "extra_forbidden": "is not a setting", "bool_type": "must be true or false",
    "bool_parsing": "must be true or false", "int_type": "must be an integer", "int_parsing": "must be an integer",
    "float_type": "must be a number", "float_parsing": "must be a number", "string_type": "must be text",
}

_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


class Config(BaseModel):
    """Base of the config objects: frozen, no unknown field, a one-line error for a bad value.

    Examples
    --------
    >>> class Demo(Config):
    ...     runs: PositiveInt = 3
    >>> Demo.make(runs=0)
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: --runs must be a positive integer, got 0 (Demo.runs)
    >>> Demo.from_json(Demo(runs=5).to_json()) == Demo(runs=5)
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: field -> the command-line flag that sets it, where that is not ``--field-name``
    flags: ClassVar[dict] = {}

    def __init__(self, *args, **values):
        # Positional values fill the fields in order, as the dataclasses these configs replaced
        # did (``DistillConfig(teachers, 2.0)``); a bad value is the one-line error of :meth:`make`.
        if args:
            names = list(type(self).model_fields)
            if len(args) > len(names):
                raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional values")
            for name, v in zip(names, args):
                if name in values:
                    raise TypeError(f"{type(self).__name__} got two values for {name}")
                values[name] = v
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise SemgenError(type(self).describe(e)) from None

    @classmethod
    def flag(cls, field: str) -> str:
        """The command-line flag of ``field`` (what a user typed, so what an error names)."""
        return cls.flags.get(field) or "--" + field.replace("_", "-")

    @classmethod
    def make(cls, **values):
        """Validate ``values`` into a config; a bad one raises a one-line :class:`SemgenError`
        (as the constructor does: ``make`` names that in a call that builds from flags)."""
        return cls(**values)

    @classmethod
    def coerce(cls, first, **values):
        """The config of a library call that takes a config or, as before configs, keywords.

        ``first`` is a ``cls`` (then no other value may be given) or the value of the first field
        (the input); ``None`` values are left out, so a keyword's default is the field's.
        """
        if isinstance(first, cls):
            extra = sorted(k for k, v in values.items() if v is not None)
            if extra:
                raise TypeError(f"a {cls.__name__} was given; set {', '.join(extra)} in it instead")
            return first
        return cls.make(**{next(iter(cls.model_fields)): first},
                        **{k: v for k, v in values.items() if v is not None})

    @classmethod
    def from_json(cls, text: str | bytes):
        """The config that :meth:`to_json` wrote (validated again)."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as e:
            raise SemgenError(cls.describe(e)) from None

    def to_json(self) -> str:
        """Plain JSON of every field (paths as text, tuples as lists)."""
        return self.model_dump_json(indent=2)

    def to_dict(self) -> dict:
        """The JSON form as a dict (what a run records next to its other settings)."""
        return self.model_dump(mode="json")

    @classmethod
    def describe(cls, e: ValidationError) -> str:
        """The first error of ``e`` as ``FLAG must be ..., got VALUE (Class.field)``."""
        err = e.errors(include_url=False)[0]
        field = ".".join(str(x) for x in err["loc"][:1]) or "?"
        if err["type"] == "value_error":
            what = str(err["ctx"]["error"])
            if not err["loc"]:  # a check across fields says itself which flags it concerns
                return f"{what} ({cls.__name__})"
        elif err["type"] in _BOUNDS:
            what = f"must be {_BOUNDS[err['type']][0]} {err['ctx'][_BOUNDS[err['type']][1]]}"
        else:
            what = _PHRASES.get(err["type"], err["msg"][:1].lower() + err["msg"][1:])
        value = err.get("input")
        # paths as the text a user typed, not PosixPath('...')
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, (list, tuple)):
            value = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        got = (f", got {value}" if isinstance(value, (int, float)) else f", got {value!r}")
        if err["type"] in ("missing", "extra_forbidden"):
            got = ""
        return f"{cls.flag(field)} {what}{got} ({cls.__name__}.{field})"
