"""Knowledge distillation: a student learns the softened predictions of one or more teachers.

The loss on a labelled batch is ``(1 - weight) * CE(student, hard labels) + weight * T^2 *
KL(teacher_T || student_T)`` (Hinton et al.; ``T^2`` keeps the soft gradients on the scale of the
hard ones when T changes). Several teachers: their softened probabilities are averaged. A
*transfer set* (``--transfer DIR[=W]``) adds unlabelled images that only the teachers label: its
batches contribute only the soft term. ``--transfer stream:SEED[=W]`` makes them on the fly
instead: procedural images of every generator from the stream of ``semgen pretrain --seed SEED``,
new ones in every batch, so a long distillation never shows the student the same transfer image
twice (function matching on fresh images; Beyer et al., "Knowledge distillation: a good teacher is
patient and consistent", 2022).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from ..configs import Config, Number, PathList
from ..errors import SemgenError
from ..imageio import sha256_file


class DistillConfig(Config):
    """Options of ``semgen train --teacher`` (a :class:`~semgen.configs.Config`).

    Attributes
    ----------
    teachers : list of path
        Run dirs or checkpoints of ``semgen train`` / ``semgen pretrain`` (any arch and input size;
        plain or hierarchical heads).
    temperature : float
        Softening temperature T of teacher and student (``--distill-temperature``, default 4).
    weight : float
        Share of the soft (KL) term in the loss of labelled batches (``--distill-weight``, default 0.7).
    transfer : list of ``"DIR[=W]"`` or ``"stream:SEED[=W]"``
        Unlabelled images for the soft term only. W (default 1) is the number of transfer batches
        per labelled batch this source adds (0.5: one every other step); sources mix by W.
        ``stream:SEED``: procedural images made on the fly (:func:`transfer_stream`).
    teacher_tta : {"none", "flips", "d4"}
        The teachers' probabilities averaged over these views of the student's batch
        (``--teacher-tta``, :mod:`semgen.classifier.tta`): the student learns the teachers'
        test-time-augmented prediction of the image it sees. One teacher pass per view.

    Examples
    --------
    >>> DistillConfig(["runs/teacher"], temperature=2).temperature
    2
    >>> DistillConfig(["runs/teacher"], weight=1.5)
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: --distill-weight must be <= 1, got 1.5 (DistillConfig.weight)
    """

    flags = {"teachers": "--teacher", "temperature": "--distill-temperature", "weight": "--distill-weight",
             "teacher_tta": "--teacher-tta"}

    teachers: PathList = ()
    temperature: Annotated[Number, Field(gt=0)] = 4.0
    weight: Annotated[Number, Field(ge=0, le=1)] = 0.7
    transfer: PathList = ()
    teacher_tta: str = "none"

    @field_validator("teacher_tta", mode="before")
    @classmethod
    def _tta(cls, v):
        from .tta import check_tta

        return check_tta(v)

    @model_validator(mode="after")
    def _transfer_needs_teacher(self):
        if self.transfer and not self.teachers:
            raise ValueError("--transfer needs --teacher (only a teacher can label the transfer images)")
        streams = [t for t in self.transfer if transfer_stream(t) is not None]  # a bad stream spec fails here
        if len(streams) > 1:
            raise ValueError(f"--transfer takes one stream, got {', '.join(streams)}")
        return self

    def to_dict(self) -> dict:
        d = super().to_dict()
        if d.get("teacher_tta") == "none":  # runs from before the setting keep the records (and resume) they had
            d.pop("teacher_tta")
        return d

    def request(self) -> dict:
        """JSON record for the run's request: teachers by resolved checkpoint and its sha256 (a
        retrained teacher under the same path is another run)."""
        teachers = []
        for t in self.teachers:
            p = resolve_teacher(t)
            teachers.append({"path": str(p.resolve()), "sha256": sha256_file(p)})
        # the views only when there are several: a run's request from before the option is unchanged
        return {"teachers": teachers, "temperature": float(self.temperature), "weight": float(self.weight),
                "transfer": [str(x) for x in self.transfer],
                **({"teacher_tta": self.teacher_tta} if self.teacher_tta != "none" else {})}


STREAM_PREFIX = "stream:"


def transfer_stream(spec) -> tuple[int, float] | None:
    """``(seed, W)`` of a ``stream:SEED[=W]`` transfer source, or None for a folder (``DIR[=W]``).

    Examples
    --------
    >>> transfer_stream("stream:3=0.5"), transfer_stream("stream:0"), transfer_stream("out/transfer=2")
    ((3, 0.5), (0, 1.0), None)
    >>> transfer_stream("stream:x")
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: --transfer stream:x: expected stream:SEED[=W], SEED an integer in [0, 2^63), W > 0
    """
    s = str(spec)
    if not s.startswith(STREAM_PREFIX):
        return None
    seed, eq, w = s[len(STREAM_PREFIX):].partition("=")
    try:
        seed_i, weight = int(seed), float(w) if eq else 1.0
    except ValueError:
        seed_i, weight = -1, 0.0
    if not (0 <= seed_i < 2**63) or not (weight > 0 and weight < float("inf")):
        raise SemgenError(f"--transfer {s}: expected stream:SEED[=W], SEED an integer in [0, 2^63), W > 0")
    return seed_i, weight


class TransferStream:
    """Unlabelled procedural images on the fly: batch ``k`` of a run is samples ``[k*B, (k+1)*B)`` of
    the ``semgen pretrain`` stream of ``seed`` (every default generator, at the student's size),
    so a run's transfer images are a function of the seed and the batch number alone."""

    def __init__(self, seed: int, size: int):
        from ..pretrain.labels import TargetSpace
        from ..pretrain.stream import StreamJob

        self.job = StreamJob(TargetSpace.build(None), seed=seed, size=size)
        self.seed, self.size, self.made = int(seed), int(size), 0

    def next(self, n: int) -> torch.Tensor:
        """The next ``n`` images, uint8 ``[n, S, S]``."""
        images = self.job((self.made, n))["images"]
        self.made += n
        return torch.from_numpy(images)

    def info(self) -> dict:
        return {"seed": self.seed, "size": self.size,
                "generators": {n: f"{g.name}@{g.version}" for n, g in zip(self.job.space.generators,
                                                                           self.job.generators())}}


def resolve_teacher(t) -> Path:
    """A teacher's weights file, or the ``ensemble.json`` of an ensemble folder (its sha256 names
    the members' weights)."""
    from .checkpoint import resolve_checkpoint
    from .ensemble import ensemble_file, is_ensemble

    if is_ensemble(t):
        return ensemble_file(t)
    try:
        return resolve_checkpoint(t)
    except SemgenError as e:
        raise SemgenError(f"--teacher {t}: {e}") from None


class Teacher:
    """A loaded teacher: eval-mode model, its classes mapped onto the student's, its input size.

    The student's classes must be the teacher's, in any order, or some of them: the teacher then
    predicts among the student's only (its other classes' probabilities dropped, the rest
    renormalised, as ``semgen evaluate --classes`` scores it). A teacher with fine labels (a
    ``semgen pretrain`` run, or an ensemble of them) teaching a student of plain classes gives
    each class the sum of its fine labels' probabilities, as ``semgen evaluate`` folds them: a
    pretraining run that mixed in the real pool teaches a student of that pool directly.
    Raises a one-line :class:`SemgenError` when the student has a class the teacher lacks.
    """

    def __init__(self, path, student_classes: list[str], device=None):
        from ..pretrain.labels import fold_matrix, is_fine
        from .checkpoint import load_run

        p = resolve_teacher(path)
        self.model, meta = load_run(p)
        self.path, self.size, self.arch = str(path), int(meta["size"]), meta["arch"]
        tc = list(meta["classes"])
        self.fold = None  # [C, K]: 0 where fine label k is of class c, -inf elsewhere (logsumexp per class)
        if is_fine(tc) and not is_fine(student_classes):
            fold, tc = fold_matrix(tc)
            self.fold = torch.from_numpy(np.where(fold.T > 0, 0.0, -np.inf)).float()
        if len(set(student_classes)) != len(student_classes) or not set(student_classes) <= set(tc):
            raise SemgenError(f"--teacher {path} has {_classes_said(tc)} but the student has "
                              f"{_classes_said(student_classes)}; distillation needs the teacher's classes "
                              "or some of them")
        self.restricted = len(tc) != len(student_classes)
        self.order = torch.tensor([tc.index(c) for c in student_classes])
        for q in self.model.parameters():
            q.requires_grad_(False)
        self.calls = 0  # images seen (tests check the transfer set reaches the teacher)
        self.session = None
        self.to(device if device is not None else "cpu")

    def to(self, device, *, runtime: str | None = None) -> "Teacher":
        """Run on ``device``; returns self.

        ``runtime`` is ``"onnxruntime"`` (the CPU only) or ``"torch"``; by default ONNX Runtime on
        the CPU and PyTorch elsewhere. On the CPU the teacher's forward passes are most of a
        distilled step, and ONNX Runtime's graph (batch norm folded, fused kernels) ran an
        EfficientNet-Lite0 about 3x faster than PyTorch (5-7 against 18-20 ms per image at 128 px,
        1 thread); the logits agree to about 2e-5. PyTorch runs it channels-last, as the student
        trains (on a GPU; on the CPU when asked).
        """
        device = torch.device(device)
        runtime = runtime or ("onnxruntime" if device.type == "cpu" else "torch")
        if runtime not in ("onnxruntime", "torch") or (runtime == "onnxruntime" and device.type != "cpu"):
            raise SemgenError(f"teacher runtime {runtime!r} on {device.type}: use torch, or onnxruntime on the CPU")
        self.model.to(device)
        self.order = self.order.to(device)
        self.fold = None if self.fold is None else self.fold.to(device)
        if runtime == "onnxruntime":
            if self.session is None:
                self.session = _ort_teacher(self.model, self.size)
                self._input = self.session.get_inputs()[0].name
        else:
            self.session = None
            self.model.to(memory_format=torch.channels_last)
        return self

    def log_probs(self, x: torch.Tensor, temperature: float) -> torch.Tensor:
        """Softened log-probabilities ``[N, K]`` (student class order) for float ``[N, 1, S, S]``."""
        self.calls += len(x)
        with torch.inference_mode():
            if x.shape[-1] != self.size or x.shape[-2] != self.size:
                # the teacher sees the student's (augmented) batch at its own input size
                x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False,
                                  antialias=x.shape[-1] > self.size)
            if self.session is not None:
                logits = torch.from_numpy(self.session.run(None, {self._input: x.float().contiguous().numpy()})[0])
            else:
                logits = self.model(x.contiguous(memory_format=torch.channels_last)).float()
            if self.fold is not None:  # each class's log-probability (up to a constant): logsumexp of its fine logits
                logits = torch.logsumexp(logits[:, None, :] + self.fold, dim=2)
            # the student's classes only; log_softmax renormalises among them
            out = F.log_softmax(logits[:, self.order] / temperature, dim=1)
        return out.clone()  # a plain tensor: the soft loss's backward keeps it


def _ort_teacher(model, size: int):
    """An ONNX Runtime session of ``model`` (exported at ``size``), with torch's thread count."""
    import tempfile

    from .export import export_onnx, ort_session

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, size, Path(tmp) / "teacher.onnx")
        # no spinning between calls: the student's own step runs on the same cores right after
        return ort_session(path, threads=torch.get_num_threads(), spinning=False)


def _classes_said(classes: list[str], most: int = 12) -> str:
    """``classes [a, b, c]``, or for a long list (a pretraining run's fine labels) its size and first few."""
    if len(classes) <= most:
        return f"classes [{', '.join(classes)}]"
    return f"{len(classes)} classes [{', '.join(classes[:4])}, ...]"


class Distiller:
    """The teachers of a run and the soft loss against them."""

    def __init__(self, cfg: DistillConfig, student_classes: list[str], device=None):
        self.cfg = cfg
        self.teachers = [Teacher(t, student_classes, device) for t in cfg.teachers]

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """Softened teacher probabilities ``[N, K]``, averaged over the teachers and the views of
        ``cfg.teacher_tta`` (each view an exact pixel permutation of ``x``, :mod:`.tta`)."""
        from .tta import tta_views

        views = tta_views(x, self.cfg.teacher_tta) if self.cfg.teacher_tta != "none" else [x]
        return torch.stack([t.log_probs(v, self.cfg.temperature).exp() for t in self.teachers for v in views]).mean(0)

    def soft_loss(self, student_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``T^2 * KL(teachers_T || student_T)``, mean over the batch."""
        t = self.cfg.temperature
        p = self.targets(x)
        logq = F.log_softmax(student_logits.float() / t, dim=1)
        kl = (p * (torch.log(p.clamp_min(1e-12)) - logq)).sum(1).mean()
        return kl * (t * t)

    def info(self) -> list[dict]:
        return [{"path": t.path, "arch": t.arch, "size": t.size,
                 **({"folded_from_fine_labels": True} if t.fold is not None else {}),
                 **({"restricted_to_student_classes": True} if t.restricted else {})} for t in self.teachers]


def transfer_schedule(steps: int, share: float) -> list[bool]:
    """Which of an epoch's steps are transfer batches: ``round(steps * share)`` of them, spread
    evenly between the ``steps`` labelled ones (labelled first)."""
    n_t = int(round(steps * share))
    out = []
    for i in range(steps):
        out.append(False)
        out += [True] * (int((i + 1) * n_t / steps) - int(i * n_t / steps))
    return out
