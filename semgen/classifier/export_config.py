"""The settings of ``semgen export`` as one validated object (see :mod:`semgen.configs`)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from ..configs import Config, Finite, Flag, Int, Paths, PathStr, PositiveInt


class ExportConfig(Config):
    """What :func:`~semgen.classifier.export.export_run` does; written to ``export.json`` as ``config``.

    Parameters
    ----------
    run_dir : path
        Run dir of ``semgen train`` (its best epoch) or a checkpoint.
    calib : path(s), optional
        Images for INT8 calibration (dataset dir / ImageFolder; labels unused); at most
        ``calib_max`` are drawn (``seed``). Required unless the run is QAT-trained.
    data : path(s), optional
        Labelled images on which FP32 and INT8 are compared (accuracy, macro-F1, agreement).
        Without it the comparison runs on the calibration images.
    out : path, optional
        Where to write (default: the run dir).
    tolerance : float
        Largest accepted INT8 accuracy loss (0.01 = 1 point); beyond it the automatic fix runs.
        Negative forces every strategy (tests).
    calib_max, latency_runs, threads, max_tries : int
        Calibration images drawn, timed runs per latency, onnxruntime threads, and the most
        quantisations the automatic fix may run.
    auto_fix, allow_a16w8 : bool
        Run the automatic fix; let it use 16-bit activations (INT8 weights, same size; accurate,
        but several times slower on CPU).
    qat : bool or None
        None: a QAT-trained run is exported from its QAT model, any other by post-training
        quantisation. True: require the QAT model. False: post-training even for a QAT run.

    Examples
    --------
    >>> cfg = ExportConfig(run_dir="runs/a", calib="data/train", calib_max=64)
    >>> cfg.calib, cfg.tolerance
    (('data/train',), 0.01)
    >>> ExportConfig.from_json(cfg.to_json()) == cfg
    True
    """

    flags = {"run_dir": "RUN_DIR", "auto_fix": "--no-auto-fix", "allow_a16w8": "--no-a16w8", "qat": "--qat / --ptq"}

    run_dir: PathStr
    calib: Optional[Paths] = None
    data: Optional[Paths] = None
    out: Optional[PathStr] = None
    tolerance: Finite = 0.01
    calib_max: PositiveInt = 512
    seed: Annotated[Int, Field(ge=0)] = 0
    latency_runs: PositiveInt = 300
    threads: PositiveInt = 1
    auto_fix: Flag = True
    max_tries: PositiveInt = 12
    allow_a16w8: Flag = True
    progress: Flag = False
    qat: Optional[Flag] = None
