"""``semgen pretrain``: train a classifier backbone on procedural images streamed from workers.

Worker processes make the images of :mod:`semgen.pretrain.stream` (a pure function of the master
seed and the sample number); the trainer takes them in order, in batches. The network learns the
fine labels and regression targets of :mod:`semgen.pretrain.labels`. A run dir holds:

``state-STEP/``        the resumable state: ``model.safetensors``, ``optimizer.safetensors``, ``state.json``
``LATEST``             the name of the newest complete state dir (written last, atomically)
``model.safetensors``  the classifier (backbone + fine-label head) with ``config.json``: the one
                       checkpoint layout (:mod:`semgen.classifier.checkpoint`), so the run dir
                       is an init (``semgen train --init RUN_DIR``) and can be bundled
                       (with ``--data``, ``config.json``'s ``task_classes`` lists the pool's
                       classes: what ``semgen evaluate`` / ``predict`` choose among by default)
``train_log.jsonl``    loss, accuracy, images/s per logging interval

Nothing is ever unpickled on resume: the state is safetensors plus JSON. Batch ``b`` is made of
samples ``[b * B, (b + 1) * B)`` and dropout's random stream is seeded per step, so a run stopped at
any saved step and resumed ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BeforeValidator, Field, model_validator
from torch import nn

from .. import __version__
from ..classifier.checkpoint import save_checkpoint
from ..classifier.models import DEFAULT_ARCH, SemClassifier, create_model, get_arch
from ..classifier.train import optimizer_step, warmup_cosine
from ..configs import Config, Int, Number
from ..devices import compute
from ..errors import SemgenError
from ..manifests import JsonlAppender, current_command
from ..parallel import ordered_map
from ..run_state import has_states, latest_state, save_state, truncate_log
from .labels import LABEL_KINDS, TargetSpace
from .stream import StreamJob, stream_key

STATE_FORMAT = "semgen-pretrain-state"
STATE_VERSION = 1


def _arch(v):
    from ..classifier.models import list_archs

    try:
        get_arch(v)
    except (SemgenError, TypeError):
        raise ValueError(f"must be one of {', '.join(list_archs())}") from None
    return v


def _labels(v):
    if v not in LABEL_KINDS:
        raise ValueError(f"must be one of {', '.join(LABEL_KINDS)}")
    return v


def _path_items(v, what: str):
    """One path or a list of them -> a list (None stays None); anything else: ``must be {what}``."""
    if v is None:
        return None
    items = [v] if isinstance(v, (str, os.PathLike)) else v
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, (str, os.PathLike)) for x in items):
        raise ValueError(f"must be {what}")
    return list(items)


def _data(v):
    """``DIR[=W]`` each -> ``ABSOLUTE_DIR=W`` (the run records where its data was, and its weight)."""
    from ..classifier.data import parse_data_arg

    items = _path_items(v, "dataset dirs (DIR[=WEIGHT] each)")
    if items is None:
        return None
    try:
        src = [parse_data_arg(d) for d in items]
    except SemgenError as e:
        raise ValueError(f"is not DIR[=WEIGHT]: {e}") from None
    return tuple(f"{Path(x.path).resolve()}={x.weight:g}" for x in src) or None


def _teachers(v):
    """Teacher run dirs / checkpoints / ensembles -> their absolute paths (each must resolve)."""
    from ..classifier.distill import resolve_teacher

    items = _path_items(v, "run dirs (RUN each)")
    if items is None:
        return None
    for t in items:
        try:
            resolve_teacher(t)
        except SemgenError as e:
            raise ValueError(str(e).removeprefix("--teacher").lstrip(" :")) from None
    return tuple(str(Path(t).resolve()) for t in items) or None


def _profile(v):
    """A profile file (YAML / JSON) or its canonical JSON -> the canonical JSON of what makes the
    images (``version`` and ``classes``): recorded in the run, so it resumes and remakes without
    the file (a changed file under the same name is another run)."""
    import json

    from ..generators.procedural.profile import canonical_json, load_profile, validate_profile

    if v is None:
        return None
    if not isinstance(v, (str, os.PathLike)):
        raise ValueError("must be a profile file (FILE.yaml)")
    try:
        if isinstance(v, str) and v.lstrip().startswith("{"):
            prof = validate_profile(json.loads(v), where="--profile")
        else:
            prof = load_profile(v)
    except (SemgenError, json.JSONDecodeError) as e:
        raise ValueError(str(e).removeprefix("--profile").lstrip(" :")) from None  # the flag is said once
    return canonical_json({"version": prof["version"], "classes": prof["classes"]})


#: A fraction in [0, 1).
_Fraction = Annotated[Number, Field(ge=0, lt=1)]


class PretrainConfig(Config):
    """What a pretraining run learns from and how; every field that changes its weights.

    A :class:`~semgen.configs.Config`: validated when made (a bad value is a one-line
    :class:`SemgenError` naming its flag), frozen, and recorded as :meth:`to_dict` in the run's
    ``state.json`` (``config``) and ``config.json`` (``pretrain``), the field order and the values
    as given (an int stays an int), so a run resumes only with the same settings.

    Parameters
    ----------
    arch : str
        Classifier architecture (:data:`semgen.classifier.models.ARCHS`).
    init : str, optional
        Starting weights: ``scratch`` (None), ``imagenet``, ``semgen`` or a checkpoint / run dir.
    generators : list of str, optional
        Procedural generators to stream (default: all registered).
    labels : {"fine", "coarse"}
        Fine labels from the generator parameters, or only the generators' classes.
    aux_weight : float
        Weight of the regression loss on the parameter targets (0 = no auxiliary head).
    size : int
        Image side in pixels.
    images : int
        Samples to train on in all (the schedule's length).
    batch_size, lr, weight_decay, warmup, label_smoothing, drop_rate, seed
        Optimisation (AdamW, linear warm-up over the ``warmup`` fraction of steps, cosine decay).
    data : list of str, optional
        Dataset dirs or ImageFolders (``DIR[=WEIGHT]``, real or synthetic) mixed into every batch,
        kept as ``ABSOLUTE_DIR=WEIGHT``. They carry only their class, so their loss is the
        likelihood of the class: the summed probability of its fine labels. Every class in them
        needs a generator in the stream.
    data_fraction : float
        Share of each batch drawn from ``data`` (class-balanced, with the classifier's augmentation).
    profile : str, optional
        A ``semgen procedural --profile`` file (e.g. from ``semgen tune``): its per-class ranges,
        weights and pins are the stream's sampling ranges. Kept as the canonical JSON of its
        classes; a run without one records no ``profile`` key (as before profiles existed).
    teachers : list of path, optional
        Runs (``semgen pretrain`` runs with the same fine labels, or ensembles of them) whose
        softened fine-label predictions on every batch the network also learns: the loss is
        ``(1 - distill_weight) * CE + distill_weight * T^2 * KL(teachers_T || student_T)`` plus the
        regression term (:mod:`semgen.classifier.distill`). A small arch can so learn what a large
        one (from ImageNet, then pretrained here) knows of the same images. Kept as absolute
        paths; their weights' sha256 are part of the run's settings (a retrained teacher is
        another run). A run without teachers records none of these three keys.
    distill_temperature, distill_weight : float
        Softening temperature T (> 0) and the soft term's share in [0, 1].

    Examples
    --------
    >>> cfg = PretrainConfig(arch="mobilenetv3_small_050", images=640, batch_size=32)
    >>> cfg.steps, cfg.to_dict()["lr"]
    (20, 0.002)
    >>> PretrainConfig(size=8)
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: --size must be >= 32, got 8 (PretrainConfig.size)
    """

    flags = {"batch_size": "--batch", "generators": "--generators", "data": "--data", "profile": "--profile",
             "teachers": "--teacher"}

    arch: Annotated[str, BeforeValidator(_arch)] = DEFAULT_ARCH
    init: Optional[str] = None
    generators: Optional[tuple[str, ...]] = None
    labels: Annotated[str, BeforeValidator(_labels)] = "fine"
    aux_weight: Annotated[Number, Field(ge=0, le=100)] = 1.0
    size: Annotated[Int, Field(ge=32, le=512)] = 128
    images: Annotated[Int, Field(ge=1, le=10**10)] = 100_000
    batch_size: Annotated[Int, Field(ge=2, le=4096)] = 64
    lr: Annotated[Number, Field(gt=0, lt=1)] = 2e-3
    weight_decay: _Fraction = 0.05
    warmup: _Fraction = 0.03
    label_smoothing: _Fraction = 0.1
    drop_rate: _Fraction = 0.2
    seed: Annotated[Int, Field(ge=0, lt=2**63)] = 0
    data: Annotated[Optional[tuple[str, ...]], BeforeValidator(_data)] = None
    data_fraction: Number = 0.25
    profile: Annotated[Optional[str], BeforeValidator(_profile)] = None
    teachers: Annotated[Optional[tuple[str, ...]], BeforeValidator(_teachers)] = None
    distill_temperature: Annotated[Number, Field(gt=0, le=100)] = 4.0
    distill_weight: Annotated[Number, Field(ge=0, le=1)] = 0.7

    def to_dict(self) -> dict:
        d = super().to_dict()
        if d.get("profile") is None:  # runs without a profile keep the settings (and resume) they had
            d.pop("profile", None)
        if not d.get("teachers"):  # likewise without teachers
            for k in ("teachers", "distill_temperature", "distill_weight"):
                d.pop(k, None)
        return d

    def distill_config(self):
        """The :class:`~semgen.classifier.distill.DistillConfig` of the teachers, or None."""
        from ..classifier.distill import DistillConfig

        return DistillConfig(self.teachers, self.distill_temperature, self.distill_weight) if self.teachers else None

    @model_validator(mode="after")
    def _fraction_with_data(self):
        if self.data and not 0 < self.data_fraction < 1:  # without data the share is unused
            raise ValueError(f"--data-fraction must be in (0, 1), got {self.data_fraction}")
        return self

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.images / self.batch_size))


class PretrainNet(nn.Module):
    """A :class:`SemClassifier` over fine labels plus a regression head on its pooled features."""

    def __init__(self, arch: str, n_fine: int, n_reg: int, *, drop_rate: float = 0.2):
        super().__init__()
        self.classifier: SemClassifier = create_model(arch, n_fine, drop_rate=0.0)
        self.classifier.net.drop_rate = 0.0  # dropout is applied here, to the class branch only
        self.drop_rate = float(drop_rate)
        net = self.classifier.net
        net.eval()
        with torch.no_grad():
            dim = net.forward_head(net.forward_features(torch.zeros(1, 1, 64, 64)), pre_logits=True).shape[1]
        net.train()
        self.aux = nn.Linear(dim, n_reg) if n_reg else None

    def forward(self, x: torch.Tensor):
        c = self.classifier
        f = c.net.forward_head(c.net.forward_features((x - c.mean) / c.std), pre_logits=True)
        logits = c.net.get_classifier()(F.dropout(f, self.drop_rate, self.training))
        return logits, (self.aux(f) if self.aux is not None else None)


class SameStreamWarning(UserWarning):
    """``--init`` is a pretraining run that streamed with the same ``--seed``: the same scenes again."""


class ThreadCountWarning(UserWarning):
    """A run continues with another torch thread count than it began with: on the CPU the sums of
    a step are split differently, so the weights are not the bytes of an uninterrupted run."""


def _warn_same_stream(cfg: PretrainConfig) -> None:
    """Warn when continuing from a pretraining run of the same seed.

    The stream is a pure function of the seed (:mod:`.stream`), so such a run sees the first
    scenes of its init again: a second epoch, not new data. Measured in docs/results.md: a
    second 76,800-sample cycle with the same seed lowered the real-test figure.
    """
    if not cfg.init or cfg.init in ("imagenet", "semgen"):
        return
    p = Path(cfg.init)
    conf = (p if p.is_dir() else p.parent) / "config.json"
    try:
        prev = json.loads(conf.read_text()).get("pretrain") or {}
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(prev, dict) and stream_key(prev) == stream_key(cfg.to_dict()):
        n = min(int(prev.get("images", 0) or 0), int(cfg.images))
        warnings.warn(f"--init {cfg.init} was pretrained with the same --seed {cfg.seed}: the first {n:,} samples "
                      "are the same scenes again (a second epoch, not new data); pass another --seed for new "
                      "ones", SameStreamWarning, stacklevel=3)


def _apply_init(model: SemClassifier, init: str | None) -> dict | None:
    """Load ``init`` into ``model`` through the classifier's one init API."""
    if init in (None, "", "scratch"):
        return None
    from ..classifier.init import apply_init

    return apply_init(model, init)


# -- the run ---------------------------------------------------------------------------------------

def _export(out: Path, model: PretrainNet, cfg: PretrainConfig, space: TargetSpace, step: int, info: dict) -> None:
    """The classifier part as the run dir's checkpoint (``model.safetensors`` + ``config.json``)."""
    meta = {"pretrain": cfg.to_dict(), "step": step, "images_seen": step * cfg.batch_size,
            "semgen_version": __version__, **info}
    save_checkpoint(out, model.classifier, classes=space.fine_names, size=cfg.size, epoch=step, config=meta)


def pretrain(out, config: PretrainConfig | None = None, *, workers: int = 1, threads: int | None = None,
             save_every: int = 200, log_every: int = 20, stop_after: int | None = None,
             progress: bool = True, chunk: int = 8, device: str = "auto", precision: str = "auto") -> dict:
    """Pretrain (or resume pretraining) into run dir ``out``.

    Parameters
    ----------
    out : path
        Run dir; re-running with the same config resumes from its newest state.
    config : PretrainConfig
    workers : int
        Generator processes; 0 generates in this process, between steps.
    threads : int, optional
        Torch threads (default: the cores left after ``workers``, at least 1).
    save_every : int
        Save a resumable state every this many steps (and at the end).
    log_every : int
        Steps per ``train_log.jsonl`` line.
    stop_after : int, optional
        Stop (after saving) once this many steps are done in all; the schedule is unchanged, so
        running again continues it.
    device, precision : str
        Where to train and in what precision (:mod:`semgen.devices`; ``auto``: the GPU if there is
        one, with bf16 autocast; the CPU in fp32). Recorded in ``config.json`` and each state, but
        not part of the run's settings: a run may be resumed on another device. On the CPU the
        weights are exactly those of earlier versions; on a GPU reproducibility is best effort.

    Returns
    -------
    dict
        ``run_dir``, ``step``, ``steps``, ``images_seen``, ``done``, ``images_per_s``, ``loss``,
        ``fine_accuracy`` (of the last interval), ``n_fine``, ``n_reg``.
    """
    cfg = config if config is not None else PretrainConfig()  # validated when made
    comp = compute(device, precision)
    out = Path(out)
    if workers < 0:
        raise SemgenError(f"--workers must be 0 (in this process) or more, got {workers}")
    if save_every < 1 or log_every < 1:
        raise SemgenError("--save-every and --log-every must be at least 1")
    if out.exists() and not out.is_dir():
        raise SemgenError(f"--out {out} exists and is not a directory")
    space = TargetSpace.build(cfg.generators, labels=cfg.labels)
    request = cfg.to_dict()  # what state.json holds: a resumed run must ask for the same
    distill = cfg.distill_config()
    if distill is not None:  # the teachers' weights are settings too: a retrained teacher is another run
        request["teacher_sha256"] = [t["sha256"] for t in distill.request()["teachers"]]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SemgenError(f"cannot create --out {out}: {e.strerror}") from None

    found = latest_state(out, fmt=STATE_FORMAT, version=STATE_VERSION)
    if found is None and has_states(out):
        raise SemgenError(f"{out} holds no readable pretraining state; choose another --out")
    if found is not None and found.state.get("config") != request:
        raise SemgenError(f"{out} holds a pretraining run with other settings; choose another --out "
                          "(or re-run with the settings in its state.json)")
    gens = {n: f"{g.name}@{g.version}" for n, g in
            zip(space.generators, StreamJob(space, seed=cfg.seed, size=cfg.size, profile=cfg.profile).generators())}
    # The stream is a function of the generator versions: resuming across a version bump would
    # silently train the rest of the run on other images than the same command gave before.
    old_gens = found.state.get("generators") if found is not None else None
    if old_gens is not None and old_gens != gens:
        changed = ", ".join(f"{old_gens.get(n)} -> {v}" for n, v in gens.items() if old_gens.get(n) != v)
        raise SemgenError(f"{out} was pretrained on other generator versions ({changed}); finish it with "
                          "the semgen that started it, or choose another --out")

    if found is None:
        _warn_same_stream(cfg)

    nthreads = threads or max(1, (os.cpu_count() or 1) - workers)
    torch.set_num_threads(int(nthreads))
    torch.manual_seed(cfg.seed)
    model = PretrainNet(cfg.arch, len(space.fine_names), len(space.reg_names) if cfg.aux_weight > 0 else 0,
                        drop_rate=cfg.drop_rate)
    init_info = None if found is not None else _apply_init(model.classifier, cfg.init)
    model = model.to(memory_format=torch.channels_last).to(comp.device)
    scaler = comp.grad_scaler()
    distiller = None
    if distill is not None:
        from ..classifier.distill import Distiller

        distiller = Distiller(distill, space.fine_names, comp.device)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps = cfg.steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, max(1, int(cfg.warmup * steps))))
    step = 0
    if found is not None:
        found.restore(model, opt, sched, scaler)
        step = found.step
        init_info = found.state.get("init")
        began = found.state.get("num_threads")
        if comp.device.type == "cpu" and began is not None and int(began) != int(nthreads):
            warnings.warn(f"{out} ran with {began} torch threads and continues with {nthreads}: its weights "
                          f"will not be the bytes of an uninterrupted run (pass --threads {began} for those)",
                          ThreadCountWarning, stacklevel=2)
    # what every state and config.json record of this run; the thread count among them: on the CPU it
    # changes the last bits of every step (same seed and thread count, same bytes; 1 and 2 threads differ)
    extras = {"init": init_info, "generators": gens, "num_threads": int(nthreads), **comp.record()}
    info = {"config": request, "targets": space.to_dict(), "command": current_command(),
            "semgen_version": __version__, "torch": torch.__version__, **extras}
    log_path = out / "train_log.jsonl"
    truncate_log(log_path, step)
    stop = steps if stop_after is None else min(steps, int(stop_after))
    B = cfg.batch_size
    mix = _MixedIn(cfg, space, progress) if cfg.data else None
    exported = dict(extras)  # config.json's extras
    if mix:  # the pool's classes: what evaluate / predict choose among by default (the stream has more)
        exported["task_classes"] = list(mix.set.classes)
    Bs = B - (mix.n if mix else 0)  # streamed samples per step
    chunk = max(1, math.gcd(Bs, int(chunk)))
    job = StreamJob(space, seed=cfg.seed, size=cfg.size, profile=cfg.profile)
    spans = ((s * Bs + c, chunk) for s in range(step, stop) for c in range(0, Bs, chunk))
    per_step = Bs // chunk

    from ..progress import progress_bar

    bar = progress_bar(total=stop, initial=step, desc=f"pretrain {cfg.arch}", unit="step", enabled=progress)
    t_start = time.perf_counter()
    t_int, n_int, loss_int, lc_int, lr_int, corr_int, kd_int = time.perf_counter(), 0, 0.0, 0.0, 0.0, 0, 0.0
    last = {}
    model.train()
    with JsonlAppender(log_path) as log:
        parts = []
        # ordered_map runs in this process for workers <= 1: one worker process needs a real pool
        stream = ordered_map(job, spans, workers=workers, force_pool=workers >= 1, window=max(4, 2 * per_step),
                             preload=["semgen.pretrain.stream"]) if step < stop else iter(())
        for part in stream:
            parts.append(part)
            if len(parts) < per_step:
                continue
            x = torch.from_numpy(np.concatenate([p["images"] for p in parts])).unsqueeze(1).float().div_(255)
            y = torch.from_numpy(np.concatenate([p["fine"] for p in parts]))
            reg = torch.from_numpy(np.concatenate([p["reg"] for p in parts]))
            rmask = torch.from_numpy(np.concatenate([p["reg_mask"] for p in parts]))
            parts = []
            if mix is not None:
                xm, ym = mix.batch(step)
                x = torch.cat([x, xm])
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout's stream: a function of the step
            x = x.contiguous(memory_format=torch.channels_last)
            x, y, reg, rmask = (t.to(comp.device) for t in (x, y, reg, rmask))  # no-ops on the CPU
            with comp.autocast():
                logits, pred = model(x)
                loss = F.cross_entropy(logits[:Bs], y, label_smoothing=cfg.label_smoothing, reduction="sum")
                if mix is not None:
                    loss = loss + mix.loss(logits[Bs:], ym)
                loss = loss / B
                loss_kd = None
                if distiller is not None:  # the teachers label the whole batch, mixed-in images too
                    loss_kd = distiller.soft_loss(logits, x)
                    loss = (1 - distill.weight) * loss + distill.weight * loss_kd
                pred = pred[:Bs] if pred is not None else None
                logits = logits[:Bs]
                loss_r = torch.zeros((), device=comp.device)
                if pred is not None and rmask.any():
                    m = rmask.float()
                    loss_r = ((pred - reg) ** 2 * m).sum() / m.sum()
                    loss = loss + cfg.aux_weight * loss_r
            optimizer_step(loss, opt, sched, scaler=scaler, what="pretraining", at=f"step {step}")
            step += 1
            n_int += len(y)
            loss_int += float(loss.detach()) * len(y)
            lc_int += float(loss_r.detach()) * len(y)
            corr_int += int((logits.detach().argmax(1) == y).sum())
            if loss_kd is not None:
                kd_int += float(loss_kd.detach()) * len(y)
            lr_int = opt.param_groups[0]["lr"]
            bar.update(1)
            if step % log_every == 0 or step == stop:
                dt = time.perf_counter() - t_int
                ips = n_int / dt if dt > 0 else None
                last = {"step": step, "images_seen": step * B, "loss": loss_int / n_int,
                        "loss_reg": lc_int / n_int, "fine_accuracy": corr_int / n_int, "lr": lr_int,
                        "images_per_s": ips, "eta_s": (stop - step) * B / ips if ips else None,
                        **({"loss_kd": kd_int / n_int} if distiller is not None else {})}
                log.append(last)
                bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{last['fine_accuracy']:.2f}",
                                ips=f"{ips or 0:.0f}")
                t_int, n_int, loss_int, lc_int, corr_int, kd_int = time.perf_counter(), 0, 0.0, 0.0, 0, 0.0
            if step % save_every == 0 or step == stop:
                save_state(out, step, model, opt, sched, info, fmt=STATE_FORMAT, version=STATE_VERSION, scaler=scaler)
                _export(out, model, cfg, space, step, exported)
    bar.close()
    if not (out / "LATEST").exists():  # nothing to do (already done) but nothing saved either
        save_state(out, step, model, opt, sched, info, fmt=STATE_FORMAT, version=STATE_VERSION, scaler=scaler)
        _export(out, model, cfg, space, step, exported)
    took = time.perf_counter() - t_start
    return {"run_dir": str(out), "step": step, "steps": steps, "images_seen": step * B, "done": step >= steps,
            "images_per_s": last.get("images_per_s"), "loss": last.get("loss"),
            "fine_accuracy": last.get("fine_accuracy"), "n_fine": len(space.fine_names),
            "n_reg": len(space.reg_names), "seconds": took}


class _MixedIn:
    """Images of ``--data`` dirs mixed into every batch, learned through their class only."""

    def __init__(self, cfg: PretrainConfig, space: TargetSpace, progress: bool):
        from ..classifier.augment import AugmentConfig
        from ..classifier.data import load_image_set, sampling_weights

        self.set = load_image_set(list(cfg.data), size=cfg.size, progress=progress)
        coarse = space.coarse_of()
        member = torch.tensor([[c == f for f in coarse] for c in self.set.classes])
        lost = [c for c, row in zip(self.set.classes, member) if not row.any()]
        if lost:
            raise SemgenError(f"--data has classes with no generator in the stream: {', '.join(lost)}; "
                              f"streamed: {', '.join(dict.fromkeys(coarse))}")
        self.member = member
        self.probs = sampling_weights(self.set)
        self.n = max(1, round(cfg.data_fraction * cfg.batch_size))
        if self.n >= cfg.batch_size:
            raise SemgenError("--data-fraction leaves no streamed image in a batch; lower it or raise --batch")
        self.seed = cfg.seed
        self.augment = AugmentConfig()

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [n, 1, S, S] float, class ids [n])`` of ``step`` (a function of seed and step)."""
        from ..classifier.augment import augment_batch

        g = torch.Generator().manual_seed(self.seed * 7_919 + step + 1)
        idx = torch.multinomial(self.probs, self.n, replacement=True, generator=g)
        return augment_batch(self.set.images[idx], self.augment, g), self.set.labels[idx]

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of each image's class: log of its fine labels' total probability."""
        logp = F.log_softmax(logits, 1)
        member = self.member[y].to(logits.device)  # the labels stay on the CPU with the images
        return -torch.logsumexp(logp.masked_fill(~member, float("-inf")), 1).sum()
