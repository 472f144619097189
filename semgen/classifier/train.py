"""Training: class-balanced sampling, batch augmentation, AdamW + warmup/cosine, early stopping."""

from __future__ import annotations

import json
import math
import platform
import shutil
import sys
import time
import contextlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..devices import Compute, compute
from ..errors import SemgenError
from ..imageio import write_bytes_atomic
from ..manifests import JsonlAppender, current_command, lock_dir
from .augment import AugmentConfig, augment_batch, mix_images, mixup as mixup_batch, to_float
from .checkpoint import LAST, WEIGHTS, clear_checkpoints, model_config, save_checkpoint
from .data import load_image_set, parse_data_arg, sampling_weights, stratified_split
from .metrics import confusion_matrix, metrics_from_confusion
from .init import apply_init, resolve_init
from .models import create_model
from .calibrate import calibrate_run
from .distill import DistillConfig, Distiller, TransferStream, transfer_schedule, transfer_stream
from .qat import QATConfig, to_qat
from ..run_state import has_states, latest_state, save_state, truncate_log

#: Fewest images drawn per epoch: tiny real sets (a few hundred images) still get enough
#: optimiser steps per epoch for early stopping to be meaningful.
MIN_EPOCH_IMAGES = 1024


@contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` intra-op threads (restored afterwards); None leaves torch's setting."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def predict_probs(model, images: torch.Tensor, *, batch_size: int = 128, channels_last: bool = True,
                  compute: Compute | None = None) -> torch.Tensor:
    """Softmax probabilities ``[N, K]`` (on the CPU) for uint8 images ``[N, S, S]`` (no augmentation).

    The batches go to the model's device; ``compute`` (:func:`semgen.devices.compute`) adds its
    autocast (mixed precision on a GPU; nothing on the CPU).

    The model is changed in place: put in eval mode and, with ``channels_last``, its weights into
    the channels-last layout (the same values; converted once, so that repeated calls, as in
    ``semgen predict`` batch after batch, do not pay for it again). A training loop that goes on
    afterwards sets ``model.train()`` itself, as it does every epoch.
    """
    model.eval()
    if channels_last:
        # weights and inputs both channels-last: a loaded (NCHW) EfficientNet-Lite0 fed channels-last
        # inputs ran no faster than NCHW; converted too, 1.5x faster on the CPU (128 px)
        model.to(memory_format=torch.channels_last)
    dev = next(model.parameters()).device
    amp = compute.autocast if compute is not None else contextlib.nullcontext
    out = []
    for i in range(0, len(images), batch_size):
        x = to_float(images[i:i + batch_size]).to(dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp():
            logits = model(x)
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    k = model.num_classes
    return torch.cat(out) if out else torch.zeros(0, k)


def _as_list(data) -> list:
    """One source (a path, ``"DIR=W"`` or a ``(path, weight)`` pair) or several -> a list."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], (int, float)):
        return [data]
    if isinstance(data, (list, tuple)):
        return list(data)
    return [data]


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _write_json(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def warmup_cosine(total: int, warmup: int, floor: float = 0.01):
    """The LR multiplier as a function of the step (for ``LambdaLR``): linear warm-up over ``warmup``
    steps, then a cosine decay to ``floor`` at step ``total``."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def optimizer_step(loss: torch.Tensor, opt, sched, *, scaler=None, what: str = "training", at: str = "") -> None:
    """One optimiser step on ``loss``: refuse a non-finite loss, then zero the gradients, back-propagate,
    step the optimiser and the LR schedule. Shared by ``semgen train`` and ``semgen pretrain``.

    ``scaler`` (a ``torch.amp.GradScaler``, fp16 on a GPU; :meth:`semgen.devices.Compute.grad_scaler`)
    scales the loss so fp16 gradients do not underflow; without one (CPU, fp32, bf16) the step is
    the plain ``backward(); step()``, so CPU weights keep their bytes. A non-finite loss raises
    ``SemgenError("{what} diverged (loss L) at {at}; lower --lr")``.
    """
    if not torch.isfinite(loss):
        raise SemgenError(f"{what} diverged (loss {loss.item()}) at {at}; lower --lr")
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)  # skipped when the scaled gradients overflowed; the scale then shrinks
        scaler.update()
    sched.step()


def train_classifier(data, out=None, **settings) -> dict:
    """Train a classifier and write a run dir.

    ``train_classifier(config)`` takes a :class:`~semgen.classifier.train_config.TrainConfig`;
    ``train_classifier(data, out, **settings)`` builds the same config from keywords (a bad value
    is then the same one-line :class:`SemgenError`); keywords given with a config replace its
    settings (``functools.partial(train_classifier, epochs=3)`` holds for either form).

    Parameters
    ----------
    data : path, ``"DIR=WEIGHT"``, ``(path, weight)`` or a list of them
        Dataset dirs or ImageFolder trees, mixed by weight (classes balanced within each).
    out : path
        The run dir: the best epoch as ``model.safetensors`` + ``config.json`` (which also holds the
        run's settings; :mod:`semgen.classifier.checkpoint`), the last epoch in ``last/``,
        ``train_log.jsonl``, ``summary.json``, ``calibration.json``. A finished run of the same
        settings is returned as it is; an unfinished one continues after its last saved epoch
        (``resume/``, :mod:`semgen.run_state`) and ends as an uninterrupted run would have.
    arch : str
        A name of :data:`semgen.classifier.models.ARCHS` (default: the ``--init`` checkpoint's,
        ``efficientnet_lite0`` for ``init="imagenet"``, else ``mobilenetv3_small_100``).
    val : path, optional
        Validation data for early stopping on macro-F1; default a stratified ``val_fraction`` split
        of ``data`` drawn with ``seed``.
    init : None, "scratch", "imagenet", "semgen" or path
        Where the model starts (:mod:`semgen.classifier.init`): random, ImageNet weights (the
        ``semgen[imagenet]`` extra), the bundled SEM backbone, or a checkpoint / run dir. Only a
        checkpoint with the same classes brings its head; otherwise only the backbone is loaded.
        ``config.json`` records the init (``init``: kind, weights file, sha256, tensors loaded).
    head_only_epochs : int
        Train only the final classifier for this many epochs first (backbone frozen, in eval mode).
    classes : list of str, optional
        Class order; default the labels present in ``data`` in taxonomy order.
    patience, min_epochs : int
        Stop after ``patience`` epochs without a better validation macro-F1, but never before
        ``min_epochs`` (default half of ``epochs``: from-scratch models on small sets improve slowly
        and a small validation split is noisy early on).
    min_epoch_images : int
        An epoch draws ``max(len(train), min_epoch_images)`` images (class-balanced, with replacement).
    distill : DistillConfig, optional
        Teachers (``--teacher``), temperature, soft-loss weight and transfer set
        (:mod:`semgen.classifier.distill`).
    qat : QATConfig or bool, optional
        Quantisation-aware training in the last epochs (:mod:`semgen.classifier.qat`); the best
        epoch is then a QAT checkpoint that ``semgen export`` exports with 8-bit activations.
    heads : None, "hierarchical", path, dict or Hierarchy
        None: one linear head. Otherwise hierarchical heads (:mod:`semgen.classifier.heads`): a
        gate, defect families and leaves, trained with the weighted head loss; "hierarchical" uses
        the default hierarchy (:mod:`semgen.classifier.hierarchy`), a path a YAML / JSON file.
    device, precision : str
        Where to train (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and in what precision (``auto``:
        fp32 on the CPU, bf16 / fp16 autocast on a GPU); :mod:`semgen.devices`. Recorded in
        ``config.json`` (``device``, ``device_name``, ``precision``); not part of the request, so a
        finished run is the same run on any device. Batches are drawn and augmented on the CPU
        with the run's generator, so only the arithmetic moves; on a GPU, weights are
        reproducible only as far as its kernels are.

    At the end, a temperature is fitted on the validation split (``calibration.json``,
    :mod:`semgen.classifier.calibrate`).

    Returns
    -------
    dict
        ``run_dir``, ``best_epoch``, ``best_val_macro_f1``, ``best_val_accuracy``, ``epochs_run``,
        ``images_per_s``, ``classes``, ``n_train``, ``n_val``, ``seconds``, ``skipped``.
    """
    from .train_config import TrainConfig

    if isinstance(data, TrainConfig):  # keywords given with a config replace its settings (validated again)
        given = {k: v for k, v in {"out": out, **settings}.items() if v is not None}
        cfg = TrainConfig.make(**{**{k: getattr(data, k) for k in TrainConfig.model_fields}, **given}) if given else data
    else:
        cfg = TrainConfig.coerce(data, out=out, **settings)
    return _train(**cfg.kwargs())


def _train(
    data, out, *, arch: str | None = None, size: int = 128, epochs: int = 30, batch_size: int = 64,
    lr: float = 2e-3, seed: int = 0, val=None, init=None, head_only_epochs: int = 0, classes=None,
    patience: int = 10, mixup: float = 0.0, label_smoothing: float = 0.1, weight_decay: float = 0.05,
    warmup_epochs: float = 1.0, val_fraction: float = 0.2, augment: AugmentConfig | None = None,
    min_epoch_images: int = MIN_EPOCH_IMAGES, progress: bool = True, num_threads: int | None = None,
    overwrite: bool = False, drop_rate: float = 0.2, min_epochs: int | None = None,
    distill: DistillConfig | None = None, qat: QATConfig | bool | None = None, heads=None,
    device: str = "auto", precision: str = "auto",
) -> dict:
    """The run of :func:`train_classifier` from its validated settings."""
    out = Path(out)
    if epochs < 1:
        raise SemgenError(f"--epochs must be at least 1, got {epochs}")
    if batch_size < 2:
        raise SemgenError(f"--batch must be at least 2, got {batch_size}")
    if not (0 < lr < 10):
        raise SemgenError(f"--lr must be a positive learning rate, got {lr}")
    if size < 32 or size > 1024:
        raise SemgenError(f"--size must be between 32 and 1024, got {size}")
    if mixup < 0:
        raise SemgenError(f"--mixup must be >= 0, got {mixup}")
    if head_only_epochs < 0:
        raise SemgenError(f"--head-only-epochs must be >= 0, got {head_only_epochs}")
    augment = augment if augment is not None else AugmentConfig()
    distill = distill if distill is not None and distill.teachers else None  # validated: no transfer without one
    qat = QATConfig() if qat is True else (qat or None)
    min_epochs = epochs // 2 if min_epochs is None else int(min_epochs)
    hier = _hierarchy(heads)
    sources = [parse_data_arg(d) for d in _as_list(data)]
    # before any data loads: --device cuda without a GPU fails at once. QAT trains in fp32: its fake
    # quantisers already model the 8-bit arithmetic, and their ranges come from fp32 activations.
    comp = compute(device, "fp32" if qat is not None and precision in (None, "auto") else precision)
    if qat is not None and comp.precision != "fp32":
        raise SemgenError(f"--qat trains in fp32 (fake quantisation); drop --precision {precision} or use fp32")
    dev = comp.device

    # Validated before any data loads: a missing extra or bundled backbone fails in a second.
    init_spec = resolve_init(init, arch)
    arch = init_spec["arch"]
    if head_only_epochs and init_spec["kind"] == "scratch":
        raise SemgenError("--head-only-epochs needs --init (weights to take the backbone from)")
    qat_start = None
    if qat is not None:
        # a trained classifier is fine-tuned in QAT throughout; otherwise an FP32 phase comes first
        # (a network with its BatchNorm folded does not train well from scratch)
        qat_epochs = qat.epochs if qat.epochs is not None else (
            epochs if init_spec["kind"] == "checkpoint" else max(1, round(0.3 * epochs)))
        if not 1 <= qat_epochs <= epochs:
            raise SemgenError(f"--qat-epochs must be between 1 and --epochs ({epochs}), got {qat_epochs}")
        qat_start = epochs - qat_epochs + 1
        if head_only_epochs >= qat_start:
            raise SemgenError(f"--head-only-epochs {head_only_epochs} overlaps the QAT phase (epochs {qat_start}-"
                              f"{epochs}); lower it or --qat-epochs")

    request = {
        "data": [{"path": str(s.path.resolve()), "weight": s.weight} for s in sources],
        "val": [str(Path(v).resolve()) for v in _as_list(val)] if val is not None else None,
        "arch": arch, "size": size, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
        "init": init_spec["key"],
        "head_only_epochs": head_only_epochs, "classes": list(classes) if classes else None,
        "patience": patience, "mixup": mixup, "label_smoothing": label_smoothing,
        "weight_decay": weight_decay, "warmup_epochs": warmup_epochs, "val_fraction": val_fraction,
        "augment": augment.to_dict(), "min_epoch_images": min_epoch_images, "drop_rate": drop_rate,
        "min_epochs": min_epochs,
    }
    # Only present when used, so the requests of earlier runs stay as they were.
    if distill is not None:
        request["distill"] = distill.request()  # checks that every teacher exists, before any loading
    if qat is not None:
        request["qat"] = {**qat.to_dict(), "epochs": qat_epochs}
    if hier is not None:
        request["heads"] = hier.to_dict()
    if init_spec["kind"] in ("imagenet", "semgen"):
        # Named weights can change under the same name (a new package or bundled backbone): a
        # finished run only counts as the same run for the same bytes. Absent for other inits, so
        # the requests of existing runs stay as they were.
        request["init_sha256"] = init_spec["sha256"]
    request = json.loads(json.dumps(request, default=_json_default))  # as config.json and a state record it
    if out.exists() and not out.is_dir():
        raise SemgenError(f"--out {out} exists and is not a directory")
    if (out / "summary.json").exists() and not overwrite:
        old = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {}
        if old.get("request") == request:
            return json.loads((out / "summary.json").read_text())  # same finished run: nothing to redo
        raise SemgenError(f"{out} already holds a finished run with other settings; "
                          "choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    with lock_dir(out), torch_threads(num_threads):  # one run per --out: two would interleave their log
        found = _unfinished(out, request, overwrite)
        if found is None:
            for stale in ("summary.json", "train_log.jsonl"):
                (out / stale).unlink(missing_ok=True)
            clear_checkpoints(out)  # a run started anew: no weights of an earlier one may stand in for its best
            shutil.rmtree(out / RESUME, ignore_errors=True)
        else:  # epochs logged after the last saved state are run (and logged) again
            truncate_log(out / "train_log.jsonl", found.step, key="epoch")
        t_load = time.perf_counter()
        full = load_image_set(sources, size=size, classes=classes, progress=progress)
        if len(full.classes) < 2:
            raise SemgenError(f"training needs at least 2 classes; the data has only {full.classes}")
        if val is not None:
            train_set = full
            val_set = load_image_set(_as_list(val), size=size, classes=full.classes, progress=progress)
            split = {"kind": "given", "path": [str(v) for v in _as_list(val)]}
        else:
            tr_idx, va_idx = stratified_split(full.labels, val_fraction, seed)
            train_set, val_set = full.subset(tr_idx), full.subset(va_idx)
            split = {"kind": "stratified", "fraction": val_fraction, "seed": seed,
                     "val_files": val_set.files}
        load_s = time.perf_counter() - t_load
        cls = full.classes
        k = len(cls)

        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = (create_model(arch, k, drop_rate=drop_rate) if hier is None
                 else create_model(arch, k, drop_rate=drop_rate, heads=hier, classes=cls))
        init_info = apply_init(model, init_spec, classes=cls)
        model = model.to(memory_format=torch.channels_last).to(dev)
        scaler = comp.grad_scaler()

        distiller = Distiller(distill, cls, dev) if distill is not None and distill.teachers else None
        transfer = _Transfer.load(distill, size, progress)

        n_train = len(train_set)
        steps = max(1, math.ceil(max(n_train, min_epoch_images) / batch_size))
        # labelled (False) and transfer (True) batches of one epoch
        schedule = transfer_schedule(steps, transfer.share) if transfer is not None else [False] * steps
        total_steps = len(schedule) * (epochs if qat_start is None else qat_start - 1)
        head_params = {id(p) for p in model.head_parameters()}
        opt, sched = _optimizer(model, lr, weight_decay, max(1, total_steps), int(round(warmup_epochs * len(schedule))))
        probs = sampling_weights(train_set)

        config = {
            **model_config(arch, cls, size, heads=None if hier is None else model.hierarchy.to_dict()),
            "request": request,
            "classes": cls, "arch": arch, "size": size, "command": current_command(),
            "semgen_version": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "num_threads": torch.get_num_threads(), "steps_per_epoch": steps,
            "train": {"n": n_train, "class_counts": train_set.class_counts(),
                      "sources": [{"path": str(s.path), "weight": s.weight, "kind": s.kind} for s in full.sources]},
            "val": {"n": len(val_set), "class_counts": val_set.class_counts()}, "split": split,
            "skipped_images": full.skipped + (val_set.skipped if val is not None else []),
            "dropped_labels": full.dropped_labels, "init": init_info, "load_seconds": round(load_s, 3),
            **comp.record(),
        }
        if distiller is not None:
            config["distill"] = {"teachers": distiller.info(), "transfer_n": transfer.n if transfer is not None
                                 else 0, "transfer_batches_per_epoch": sum(schedule),
                                 **({"transfer_stream": transfer.stream.info()}
                                    if transfer is not None and transfer.stream is not None else {})}
        if qat_start is not None:
            config["qat"] = {"start_epoch": qat_start, "epochs": epochs - qat_start + 1}
        _write_json(out / "config.json", config)

        from ..progress import progress_bar

        best = (-1.0, -math.inf)
        best_epoch, best_metrics, bad, epochs_run = 0, {}, 0, 0
        train_time, train_images = 0.0, 0
        t0 = time.perf_counter()
        lr_q = None if qat_start is None else (qat.lr if qat.lr is not None else (lr if qat_start == 1 else lr / 10))
        qat_steps = None if qat_start is None else len(schedule) * (epochs - qat_start + 1)
        ckmeta = {}
        if found is not None:
            if qat_start is not None and found.step >= qat_start:  # the state is of the fake-quantised model
                model, opt, sched = _qat_model(model, qat, dev, lr_q, weight_decay, qat_steps, len(schedule))
                head_params = {id(p) for p in model.head_parameters()}
            found.restore(model, opt, sched, scaler)
            g.set_state(found.extra["generator"])
            torch.set_rng_state(found.extra["torch_rng"])  # dropout
            if dev.type == "cuda" and "cuda_rng" in found.extra:
                torch.cuda.set_rng_state(found.extra["cuda_rng"], dev)
            st = found.state
            if transfer is not None and transfer.stream is not None:
                transfer.stream.made = int(st["transfer_made"])
            best, best_epoch, best_metrics, bad = tuple(st["best"]), st["best_epoch"], st["best_metrics"], st["bad"]
            train_time, train_images, epochs_run = st["train_seconds"], st["train_images"], found.step
            ckmeta = best_metrics
            t0 -= st["seconds"]
            print(f"semgen train: resuming {out} after epoch {found.step} of {epochs}", file=sys.stderr)
        bar = progress_bar(range(epochs_run + 1, epochs + 1), desc=f"train {arch}", unit="epoch",
                           enabled=progress)
        with JsonlAppender(out / "train_log.jsonl") as log:
            for epoch in bar:
                if qat_start is not None and epoch == qat_start:
                    model, opt, sched = _start_qat(model, qat, out, train_set, probs, augment, g, batch_size,
                                                   lr_q, qat_start > 1, weight_decay, qat_steps, len(schedule), dev)
                    head_params = {id(p) for p in model.head_parameters()}
                    best, bad = (-1.0, -math.inf), 0  # the best epoch must be a QAT model
                head_only = epoch <= head_only_epochs
                for p in model.parameters():
                    p.requires_grad_(not head_only or id(p) in head_params)
                # Frozen backbone: eval mode keeps its BatchNorm statistics as loaded.
                model.train(not head_only)
                te = time.perf_counter()
                idx_all = torch.multinomial(probs, steps * batch_size, replacement=True, generator=g)
                loss_sum, correct, seen = 0.0, 0, 0
                kd_sum, kd_n, n_transfer = 0.0, 0, 0
                s = 0
                for is_transfer in schedule:
                    if is_transfer:
                        # unlabelled: only the teachers' soft targets (with --mixup, of mixed images:
                        # function matching, as on the labelled batches)
                        x = mix_images(augment_batch(transfer.draw(batch_size, g), augment, g), mixup, g)
                        x = x.contiguous(memory_format=torch.channels_last).to(dev)
                        with comp.autocast():
                            loss = distiller.cfg.weight * distiller.soft_loss(model(x), x)
                        optimizer_step(loss, opt, sched, scaler=scaler, at=f"epoch {epoch}")
                        kd_sum += loss.item() / max(distiller.cfg.weight, 1e-12) * len(x)
                        kd_n += len(x)
                        n_transfer += len(x)
                        continue
                    idx = idx_all[s * batch_size:(s + 1) * batch_size]
                    s += 1
                    x = augment_batch(train_set.images[idx], augment, g)
                    y = train_set.labels[idx]
                    soft = F.one_hot(y, k).float() * (1 - label_smoothing) + label_smoothing / k
                    x, soft = mixup_batch(x, soft, mixup, g)
                    x = x.contiguous(memory_format=torch.channels_last)
                    x, y, soft = x.to(dev), y.to(dev), soft.to(dev)  # no-ops on the CPU
                    with comp.autocast():
                        if hier is None:
                            logits = model(x)
                            loss = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
                        else:  # the leaf log-probabilities stand for the logits (softmax gives them back)
                            out_h = model.forward_heads(x)
                            logits = out_h["log_probs"]
                            loss = model.head_loss(out_h, soft)
                        if distiller is not None:
                            kd = distiller.soft_loss(logits, x)
                            loss = (1 - distiller.cfg.weight) * loss + distiller.cfg.weight * kd
                            kd_sum += kd.item() * len(y)
                            kd_n += len(y)
                    optimizer_step(loss, opt, sched, scaler=scaler, at=f"epoch {epoch}")
                    loss_sum += loss.item() * len(y)
                    correct += int((logits.detach().argmax(1) == y).sum())
                    seen += len(y)
                dt = time.perf_counter() - te
                train_time += dt
                train_images += seen
                rec = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                       "train_acc": correct / seen, "head_only": head_only, "images_per_s": seen / dt,
                       "train_seconds": dt}
                if distiller is not None:
                    rec.update({"soft_loss": kd_sum / max(kd_n, 1), "transfer_images": n_transfer})
                if qat_start is not None:
                    rec["qat"] = epoch >= qat_start
                if len(val_set):
                    vp = predict_probs(model, val_set.images, compute=comp)
                    vl = float(F.nll_loss(torch.log(vp.clamp_min(1e-12)), val_set.labels))
                    m = metrics_from_confusion(confusion_matrix(val_set.labels.numpy(), vp.argmax(1).numpy(), k), cls)
                    rec.update({"val_loss": vl, "val_acc": m["accuracy"], "val_macro_f1": m["macro_f1"]})
                    score = (round(m["macro_f1"], 6), -vl)
                else:  # no validation images at all: the last epoch is the best one
                    score = (0.0, float(epoch))
                    m = {}
                improved = score > best
                rec["best"] = improved
                rec["seconds"] = time.perf_counter() - te
                log.append(rec)
                epochs_run = epoch
                ckmeta = {k2: rec[k2] for k2 in ("val_acc", "val_macro_f1", "val_loss") if k2 in rec}
                if improved:
                    best, best_epoch, bad = score, epoch, 0
                    best_metrics = ckmeta
                    # the run dir itself is the best epoch's checkpoint (its config.json is written)
                    save_checkpoint(out, model, classes=cls, size=size, epoch=epoch, metrics=ckmeta)
                else:
                    bad += 1
                bar.set_postfix(loss=f"{rec['train_loss']:.3f}", f1=f"{rec.get('val_macro_f1', float('nan')):.3f}")
                if (len(val_set) and bad >= patience and epoch > head_only_epochs and epoch >= min_epochs
                        and (qat_start is None or epoch >= qat_start)):  # never stop before the QAT phase
                    break
                if epoch < epochs:  # what a killed run continues from (the same command again)
                    _save_train_state(out, epoch, model, opt, sched, scaler, g, dev, {
                        "request": request, "best": list(best), "best_epoch": best_epoch,
                        "best_metrics": best_metrics, "bad": bad, "train_seconds": train_time,
                        "train_images": train_images, "seconds": time.perf_counter() - t0,
                        "transfer_made": transfer.stream.made if transfer is not None and transfer.stream is not None
                        else 0})
        save_checkpoint(out / LAST, model, classes=cls, size=size, epoch=epochs_run, metrics=ckmeta, config={})
        calibration = _calibrate(out, val_set, cls, qat_start is not None, comp)

    summary = {
        "run_dir": str(out), "arch": arch, "classes": cls, "best_epoch": best_epoch,
        "best_val_macro_f1": best_metrics.get("val_macro_f1"), "best_val_accuracy": best_metrics.get("val_acc"),
        "epochs_run": epochs_run, "images_per_s": train_images / train_time if train_time else None,
        "n_train": n_train, "n_val": len(val_set), "seconds": time.perf_counter() - t0,
        "skipped": len(config["skipped_images"]), "temperature": calibration["temperature"],
    }
    if qat_start is not None:
        summary["qat"] = True
    if found is not None:  # only then: the summaries of uninterrupted runs keep their keys
        summary["resumed_after_epoch"] = found.step
    _write_json(out / "summary.json", summary)
    shutil.rmtree(out / RESUME, ignore_errors=True)  # finished: the states are only for continuing
    return summary


def _hierarchy(heads):
    """None for one linear head, else the :class:`Hierarchy` that ``heads`` names."""
    if heads is None or heads is False or heads == "plain":
        return None
    from .hierarchy import load_hierarchy

    return load_hierarchy(None if heads in (True, "hierarchical") else heads)


def _optimizer(model, lr: float, weight_decay: float, total: int, warmup: int):
    """AdamW without weight decay on norms / biases, warm-up then cosine decay."""
    head = {id(p) for p in model.head_parameters()}
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and id(p) not in head]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 and id(p) not in head]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay},
         {"params": no_decay, "weight_decay": 0.0},
         {"params": model.head_parameters(), "weight_decay": weight_decay}], lr=lr)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))


class _Transfer:
    """The transfer set: folders (images in memory, drawn by weight) and at most one stream of
    procedural images made on the fly (``stream:SEED``); :meth:`draw` gives one batch."""

    def __init__(self, images, probs, stream: TransferStream | None, stream_weight: float, share: float):
        self.images, self.probs, self.stream, self.share = images, probs, stream, share
        # which source a batch comes from, by weight (only drawn when there are two kinds)
        self.kinds = torch.tensor([share - stream_weight, stream_weight], dtype=torch.float64)

    @classmethod
    def load(cls, distill, size: int, progress: bool) -> "_Transfer | None":
        if distill is None or not distill.transfer:
            return None
        streams = [(t, transfer_stream(t)) for t in distill.transfer]
        dirs = [parse_data_arg(t) for t, st in streams if st is None]
        seed_w = next((st for _, st in streams if st is not None), None)
        images = probs = None
        if dirs:
            ts = load_image_set(dirs, size=size, classes=None, progress=progress)
            if not len(ts):
                raise SemgenError(f"--transfer {', '.join(str(s.path) for s in dirs)}: no readable images")
            w = torch.tensor([s.weight for s in ts.sources], dtype=torch.float64)
            n = torch.bincount(ts.source, minlength=len(w)).double().clamp_min(1)
            images, probs = ts.images, (w / n)[ts.source]
        stream = TransferStream(seed_w[0], size) if seed_w else None
        sw = seed_w[1] if seed_w else 0.0
        return cls(images, probs, stream, sw, float(sum(s.weight for s in dirs)) + sw)

    @property
    def n(self) -> int:
        """Images in the transfer folders (the stream's are not counted)."""
        return len(self.images) if self.images is not None else 0

    def draw(self, n: int, g: torch.Generator) -> torch.Tensor:
        """``n`` transfer images, uint8 ``[n, S, S]`` (folders alone: the draw of every earlier version)."""
        from_stream = self.stream is not None and (
            self.images is None or bool(torch.multinomial(self.kinds, 1, generator=g)[0] == 1))
        if from_stream:
            return self.stream.next(n)
        return self.images[torch.multinomial(self.probs, n, replacement=True, generator=g)]


def _qat_model(model, qat: QATConfig, device: torch.device, lr_q: float, weight_decay: float, total: int,
               steps: int):
    """The fake-quantised model of ``model`` (folded), and its fresh optimiser and schedule."""
    model = to_qat(model.to(memory_format=torch.contiguous_format), momentum=qat.momentum,
                   weight_bits=qat.weight_bits)
    model = model.to(memory_format=torch.channels_last).to(device)
    return (model, *_optimizer(model, lr_q, weight_decay, max(1, total), max(1, steps // 10)))


def _start_qat(model, qat: QATConfig, out: Path, train_set, probs, augment, g, batch_size: int, lr_q: float,
               from_best: bool, weight_decay: float, total: int, steps: int, device: torch.device):
    """Enter the QAT phase: start from the best FP32 epoch (if there was an FP32 phase), fold and
    fake-quantise, set the quantiser ranges on a few training batches, and a fresh optimiser.

    The best FP32 weights are first copied to ``resume/qat-start.safetensors`` and read from there:
    the QAT epochs overwrite the run dir's weights, and a run that continues from a state before
    the QAT phase (its newest state torn) must start QAT from the same weights as the first time.
    """
    from safetensors.torch import load_file

    if from_best and (out / WEIGHTS).exists():
        start = out / RESUME / QAT_START
        if not start.exists():
            start.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(start, (out / WEIGHTS).read_bytes())
        model.load_state_dict(load_file(str(start)))
    model, opt, sched = _qat_model(model, qat, device, lr_q, weight_decay, total, steps)
    model.train()
    with torch.no_grad():  # ranges from real batches before the first step moves the weights
        for _ in range(max(0, qat.calib_batches)):
            idx = torch.multinomial(probs, batch_size, replacement=True, generator=g)
            model(augment_batch(train_set.images[idx], augment, g).contiguous(memory_format=torch.channels_last)
                  .to(device))
    return model, opt, sched


#: the run dir's folder of resumable states (``state-EPOCH/``, :mod:`semgen.run_state`); removed when
#: the run finishes
RESUME = "resume"
#: in ``resume/``: the best FP32 weights, where the QAT phase starts from
QAT_START = "qat-start.safetensors"
STATE_FORMAT = "semgen-train-state"


def _unfinished(out: Path, request: dict, overwrite: bool):
    """The newest state of an unfinished run of the same request in ``out``, else None (start anew)."""
    if overwrite or not has_states(out / RESUME):
        return None
    found = latest_state(out / RESUME, fmt=STATE_FORMAT)
    if found is None:
        print(f"semgen train: {out / RESUME} holds no readable state; starting anew", file=sys.stderr)
    elif found.state.get("request") != request:
        print(f"semgen train: {out} holds an unfinished run with other settings; starting anew", file=sys.stderr)
        found = None
    return found


def _save_train_state(out: Path, epoch: int, model, opt, sched, scaler, g: torch.Generator, dev, info: dict) -> None:
    """The state after ``epoch``: weights, optimiser, schedule, and the random streams that the next
    epoch draws from (batches and augmentation: ``g``; dropout: torch's global generator)."""
    extra = {"generator": g.get_state(), "torch_rng": torch.get_rng_state()}
    if dev.type == "cuda":
        extra["cuda_rng"] = torch.cuda.get_rng_state(dev)
    save_state(out / RESUME, epoch, model, opt, sched, info, fmt=STATE_FORMAT, scaler=scaler, extra=extra)


def _calibrate(out: Path, val_set, classes, qat: bool, comp: Compute | None = None) -> dict:
    """Temperature scaling of the best checkpoint on the validation split."""
    from .checkpoint import load_run
    from .qat import load_qat_run

    if not len(val_set):
        return calibrate_run(out, np.zeros((0, len(classes))), np.zeros(0, np.int64), classes)
    model, _ = (load_qat_run if qat else load_run)(out)
    if comp is not None:
        model.to(comp.device)
    vp = predict_probs(model, val_set.images, compute=comp).numpy()
    return calibrate_run(out, vp, val_set.labels.numpy(), classes)
