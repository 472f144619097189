"""The settings of ``semgen curate`` as one validated object (see :mod:`semgen.configs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Optional, Union

from pydantic import Field

from ..configs import Config, Finite, Flag, Int, PathStr, PositiveInt
from ..imageio import MAX_PIXELS
from .dedup import HASH_RADIUS, LEAK_RMS_FLOOR, MAX_LOCAL, MAX_RMS, NOISE_RATIO, PHASH_RADIUS, RMS_FLOOR, NearDupParams

NonNegative = Annotated[Finite, Field(ge=0)]


class CurateConfig(Config):
    """What :func:`~semgen.curation.curate.curate` does.

    Its :meth:`settings` are recorded in the output's ``dataset.json`` (``configs.curate``), and a
    second run into the same ``--out`` with other settings is refused.

    Parameters
    ----------
    input : path
        The dataset dir to curate (only read).
    out : path
        The new dataset dir of the kept images.
    reference : path, optional
        Dataset dir (or ImageFolder) whose per-class metric distribution defines "typical".
    config : path, optional
        YAML/JSON with ``sanity`` thresholds, ``z_max`` and explicit ``bands``.
    against : path, optional
        A test set (dataset dir or ImageFolder): every near-duplicate of one of its images is dropped.
    per_class : int, optional
        Keep at most this many (the best scored) per class.
    workers : int
        Analysis processes.
    cache : bool or path
        True: the default cache file (:func:`~.cache.default_cache_path`); False: none; a path: that file.
    hash_radius, phash_radius, max_local, noise_ratio, rms_floor, leak_rms_floor, max_rms
        The near-duplicate thresholds (:class:`~.dedup.NearDupParams`; ``phash_radius=-1``: no pHash).
    z_max : float, optional
        Robust z beyond which a metric is atypical (default: the ``config`` file's, else 6).
    allow_16bit, max_pixels
        Rescale 16-bit inputs instead of rejecting them; larger images are rejected as too_large.
    dihedral : bool
        Also match the 8 rotations / flips of each test image in the leakage check.
    strict : bool
        Raise :class:`~semgen.errors.StrictFailure` (holding the result) if any input image is
        unreadable or any manifest line makes no image, after writing everything.
    progress : bool
        Show progress bars on stderr (only when it is a terminal).

    Examples
    --------
    >>> cfg = CurateConfig(input="data/proc", out="data/proc-curated", per_class=100)
    >>> cfg.hash_radius, cfg.cache
    (10, True)
    >>> CurateConfig.from_json(cfg.to_json()) == cfg
    True
    """

    flags = {"input": "INPUT", "dihedral": "--no-dihedral", "cache": "--cache / --no-cache",
             "progress": "--no-progress"}
    #: settings that change how a run goes, not what it decides (left out of :meth:`settings`)
    RUN_ONLY: ClassVar[tuple] = ("out", "workers", "cache", "max_pixels", "strict", "progress")

    input: PathStr
    out: PathStr
    reference: Optional[PathStr] = None
    config: Optional[PathStr] = None
    against: Optional[PathStr] = None
    per_class: Optional[PositiveInt] = None
    workers: PositiveInt = 1
    cache: Union[Flag, PathStr] = True
    hash_radius: Annotated[Int, Field(ge=0)] = HASH_RADIUS
    phash_radius: Annotated[Int, Field(ge=-1)] = PHASH_RADIUS
    max_local: NonNegative = MAX_LOCAL
    noise_ratio: NonNegative = NOISE_RATIO
    rms_floor: NonNegative = RMS_FLOOR
    leak_rms_floor: NonNegative = LEAK_RMS_FLOOR
    max_rms: NonNegative = MAX_RMS
    z_max: Optional[Annotated[Finite, Field(gt=0)]] = None
    allow_16bit: Flag = False
    max_pixels: PositiveInt = MAX_PIXELS
    dihedral: Flag = True
    strict: Flag = False
    progress: Flag = True

    def settings(self) -> dict:
        """What decides the output, as plain JSON with absolute paths (``dataset.json`` records it)."""
        d = {k: v for k, v in self.to_dict().items() if k not in self.RUN_ONLY}
        for k in ("input", "reference", "config", "against"):
            if d[k] is not None:
                d[k] = str(Path(d[k]).resolve())
        return d

    def near_dup_params(self) -> NearDupParams:
        """The near-duplicate thresholds as :mod:`.dedup` takes them."""
        return NearDupParams(**{k: getattr(self, k) for k in NearDupParams.__dataclass_fields__})
