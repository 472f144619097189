"""The settings of ``semgen train`` as one validated object (see :mod:`semgen.configs`)."""

from __future__ import annotations

import os
from typing import Annotated, Any, Optional

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer

from ..configs import Config, Flag, Int, Number, Paths, PathStr
from ..errors import SemgenError
from .augment import AugmentConfig
from .distill import DistillConfig
from .qat import QATConfig


def _source(v: Any):
    if isinstance(v, (tuple, list)) and len(v) == 2 and not isinstance(v[1], (str, os.PathLike, tuple, list)):
        if isinstance(v[0], bool) or not isinstance(v[0], (str, os.PathLike)) or not os.fspath(v[0]):
            raise ValueError("must be DIR, DIR=WEIGHT or (DIR, WEIGHT)")
        return (os.fspath(v[0]), v[1])  # the weight is checked (and made a float) where the data loads
    if isinstance(v, bool) or not isinstance(v, (str, os.PathLike)) or not os.fspath(v):
        raise ValueError("must be DIR, DIR=WEIGHT or (DIR, WEIGHT)")
    return os.fspath(v)


def _sources(v: Any) -> tuple:
    """One source or several (as :func:`semgen.classifier.train._as_list` reads them) -> a tuple."""
    if isinstance(v, (tuple, list)) and len(v) == 2 and isinstance(v[1], (int, float)) and not isinstance(v[1], bool):
        v = [v]
    items = list(v) if isinstance(v, (tuple, list)) else [v]
    if not items:
        raise ValueError("must be one or more dataset dirs")
    return tuple(_source(x) for x in items)


def _init(v: Any):
    if v is None or isinstance(v, dict):  # a dict: already resolved (semgen.classifier.init.resolve_init)
        return v
    if isinstance(v, bool) or not isinstance(v, (str, os.PathLike)):
        raise ValueError("must be scratch, imagenet, semgen or a checkpoint path")
    return os.fspath(v)


def _heads(v: Any):
    from .hierarchy import Hierarchy

    if v is None or isinstance(v, (bool, dict)):
        return v
    if isinstance(v, Hierarchy):
        return v.to_dict()
    if isinstance(v, (str, os.PathLike)) and os.fspath(v):
        return os.fspath(v)
    raise ValueError("must be plain, hierarchical, a hierarchy file or mapping")


def _nested(cls):
    """A field holding the config ``cls`` (an instance passes unchanged; a dict, as read back from
    JSON, is validated into one; its error says which setting of ``cls`` was wrong)."""

    def validate(v):
        if v is None or isinstance(v, cls):
            return v
        if isinstance(v, dict):
            try:
                return cls(**v)
            except SemgenError as e:
                raise ValueError(f"is not a {cls.__name__}: {e}") from None
        raise ValueError(f"must be a {cls.__name__}")

    return Annotated[Any, BeforeValidator(validate),
                     PlainSerializer(lambda v: None if v is None else v.to_dict(), return_type=Any)]


def _qat(v: Any):
    if v is True:
        return QATConfig()
    if v is False:
        return None
    return v


class TrainConfig(Config):
    """What :func:`~semgen.classifier.train.train_classifier` does; its settings (the parameters
    of that function, documented there), validated.

    The run records its ``request`` from these values exactly as before configs, so a finished
    run made with keywords matches the same settings given as a config (and the reverse).

    Examples
    --------
    >>> cfg = TrainConfig(data="data/train", out="runs/a", epochs=5)
    >>> cfg.data, cfg.lr, cfg.val_fraction
    (('data/train',), 0.002, 0.2)
    >>> TrainConfig.from_json(cfg.to_json()) == cfg
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    flags = {"data": "DATA", "batch_size": "--batch", "num_threads": "--threads", "distill": "--teacher",
             "heads": "--heads / --hierarchy", "progress": "--no-progress", "augment": "augment"}

    data: Annotated[tuple, BeforeValidator(_sources)]
    out: PathStr
    arch: Optional[str] = None
    size: Annotated[Int, Field(ge=32, le=1024)] = 128
    epochs: Annotated[Int, Field(ge=1)] = 30
    batch_size: Annotated[Int, Field(ge=2)] = 64
    lr: Annotated[Number, Field(gt=0, lt=10)] = 2e-3
    seed: Annotated[Int, Field(ge=0)] = 0
    val: Optional[Paths] = None
    init: Annotated[Any, BeforeValidator(_init)] = None
    head_only_epochs: Annotated[Int, Field(ge=0)] = 0
    classes: Optional[tuple[str, ...]] = None
    patience: Annotated[Int, Field(ge=0)] = 10
    mixup: Annotated[Number, Field(ge=0)] = 0.0
    label_smoothing: Annotated[Number, Field(ge=0, lt=1)] = 0.1
    weight_decay: Annotated[Number, Field(ge=0)] = 0.05
    warmup_epochs: Annotated[Number, Field(ge=0)] = 1.0
    val_fraction: Annotated[Number, Field(ge=0, lt=1)] = 0.2
    augment: _nested(AugmentConfig) = None
    min_epoch_images: Annotated[Int, Field(ge=0)] = 1024
    progress: Flag = True
    num_threads: Optional[Annotated[Int, Field(ge=0)]] = None
    overwrite: Flag = False
    drop_rate: Annotated[Number, Field(ge=0, lt=1)] = 0.2
    min_epochs: Optional[Annotated[Int, Field(ge=0)]] = None
    distill: _nested(DistillConfig) = None
    qat: Annotated[_nested(QATConfig), BeforeValidator(_qat)] = None
    heads: Annotated[Any, BeforeValidator(_heads)] = None
    device: str = "auto"
    precision: str = "auto"

    def kwargs(self) -> dict:
        """The settings as :func:`~semgen.classifier.train.train_classifier`'s keywords (plain lists)."""
        kw = {name: getattr(self, name) for name in type(self).model_fields}
        kw["data"] = list(self.data)
        kw["classes"] = list(self.classes) if self.classes is not None else None
        kw["val"] = list(self.val) if self.val is not None else None
        return kw
