"""Evaluation of a trained run: metrics, bootstrap CIs, confusion matrix plot, reject option."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import SemgenError
from ..imageio import write_bytes_atomic
from ..manifests.ops import check_writable_dir
from .checkpoint import load_run
from .data import load_image_set
from .calibrate import (apply_temperature, coverage_precision, plot_coverage_precision, read_calibration,
                        rejected_mask, threshold_for_precision)
from .metrics import bootstrap_ci, confusion_matrix, metrics_from_confusion
from .train import predict_probs, torch_threads
from .tta import check_tta, tta_probs


def evaluate_probs(y_true, probs, classes: list[str], *, model_classes: list[str] | None = None,
                   reject_below: float | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics of predicted probabilities against true labels.

    Parameters
    ----------
    y_true : int array (N,)
        Indices into ``classes``.
    probs : float array (N, K_model)
        Class probabilities; column ``j`` is ``classes[j]`` (the model's classes come first in
        ``classes``; further entries are test classes the model lacks).
    reject_below : float, optional
        Predictions with top probability under this map to ``other``; both figures are reported.
        1.0 rejects every prediction, 0 none.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    classes = list(classes)
    model_classes = list(model_classes or classes[:probs.shape[1]])
    y_pred = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    conf = probs.max(1) if len(probs) else np.zeros(0)
    res = _block(y_true, y_pred, classes, n_boot, seed)
    absent = {c: int((y_true == i).sum()) for i, c in enumerate(classes)
              if c not in model_classes and (y_true == i).any()}
    res.update({
        "classes": classes, "model_classes": model_classes, "absent_from_model": absent,
        "y_true": y_true.tolist(), "y_pred": y_pred.tolist(), "confidence": [round(float(c), 6) for c in conf],
    })
    if reject_below is not None:
        if not (0.0 <= reject_below <= 1.0):
            raise SemgenError(f"--reject-below must be a probability in [0, 1], got {reject_below}")
        cls_r = list(classes)
        if "other" not in cls_r:
            cls_r.append("other")
        other = cls_r.index("other")
        rejected = rejected_mask(conf, reject_below)
        y_rej = np.where(rejected, other, y_pred)
        after = _block(y_true, y_rej, cls_r, n_boot, seed)
        kept = ~rejected
        res["reject"] = {
            "threshold": float(reject_below), "rejected": int(rejected.sum()),
            "rejected_fraction": float(rejected.mean()) if len(rejected) else 0.0,
            "classes": cls_r,
            "accuracy_on_accepted": float((y_pred[kept] == y_true[kept]).mean()) if kept.any() else None,
            "rejected_were_wrong": int((y_pred[rejected] != y_true[rejected]).sum()),
            "rejected_were_right": int((y_pred[rejected] == y_true[rejected]).sum()),
            "before": {k: res[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")},
            "after": after, "y_pred": y_rej.tolist(),
        }
    return res


def _block(y_true, y_pred, classes, n_boot, seed) -> dict:
    cm = confusion_matrix(y_true, y_pred, len(classes))
    m = metrics_from_confusion(cm, classes)
    m["ci"] = bootstrap_ci(y_true, y_pred, len(classes), n_boot=n_boot, seed=seed)
    m["confusion"] = cm.tolist()
    return m


def plot_confusion(cm, classes: list[str], path, *, title: str = "") -> None:
    """Save a confusion matrix: counts in the cells, colours normalised per true class (recall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    k = len(classes)
    side = max(4.5, 0.62 * k + 2.2)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), dpi=120)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), [f"{c} ({int(n)})" for c, n in zip(classes, rows[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (images)")
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=9,
                        color="white" if norm[i, j] > 0.55 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def load_eval_model(run_dir, which: str | None = None):
    """The model a run deploys: the fake-quant model of a QAT run, else the checkpoint's (an
    ensemble folder: its members', averaged)."""
    from .ensemble import is_ensemble, load_ensemble
    from .qat import checkpoint_is_qat, load_qat_run

    if is_ensemble(run_dir):
        return load_ensemble(run_dir)
    if checkpoint_is_qat(run_dir, which):
        return load_qat_run(run_dir, which=which)
    return load_run(run_dir, which=which)


class RepeatedRecordWarning(UserWarning):
    """The same image listed more than once in the evaluation data; it counts once."""


#: Most bootstrap resamples ``evaluate`` draws (each costs a pass over the predictions).
MAX_N_BOOT = 1_000_000


def _once_each(s):
    """``s`` with each (image file, label) once: a record listed twice in a manifest is one test image.

    Counting it twice weighted that image double in every metric and interval (issue 14). Repeats
    are dropped with a :class:`RepeatedRecordWarning`; the first occurrence stays, in order.
    """
    keep, repeats, seen = [], [], set()
    for i, (f, y) in enumerate(zip(s.files, s.labels.tolist())):
        key = (os.path.realpath(f), y)
        (repeats if key in seen else keep).append(i)
        seen.add(key)
    if not repeats:
        return s
    warnings.warn(f"{len(repeats)} repeated record(s) in the evaluation data counted once "
                  f"(first: {s.files[repeats[0]]})", RepeatedRecordWarning, stacklevel=3)
    return dataclasses.replace(s.subset(keep), skipped=s.skipped, dropped_labels=s.dropped_labels)


def evaluate_run(run_dir, data, *, reject_below: float | str | None = None, target_precision: float | None = None,
                 calibrated: bool = True, n_boot: int = 1000, seed: int = 0,
                 write: bool = True, out_name: str = "metrics.json", batch_size: int = 128,
                 progress: bool = False, num_threads: int | None = None, which: str | None = None,
                 device: str = "auto", precision: str = "auto", tta: str = "none",
                 classes: list[str] | None = None) -> dict:
    """Evaluate a run's best checkpoint (or an ensemble folder, :mod:`.ensemble`, or an ONNX file of
    ``semgen export``) on ``data`` (dataset dir(s) or ImageFolder tree(s)).

    Writes ``RUN_DIR/metrics.json`` (``out_name``) and ``confusion.png`` when ``write``. Images of
    classes the model lacks count as errors and are listed under ``absent_from_model``. An ONNX file
    (``model.int8.onnx``: what a device runs) is scored through onnxruntime with the temperature in
    its metadata; its figures go beside it, the file's stem added to ``out_name``
    (``metrics_model.int8.json``), so the run's own ``metrics.json`` is kept.

    Parameters
    ----------
    reject_below : float, "auto" or None
        Map predictions whose (calibrated) confidence is under this to ``other``. ``"auto"``: the
        lowest threshold at which the run's validation images reach ``target_precision`` on the
        accepted ones (from ``calibration.json``); writes ``coverage_precision.png``.
    calibrated : bool
        Use the run's temperature (``calibration.json``) on the probabilities; runs without one
        (trained before it existed) use T = 1.
    n_boot : int
        Bootstrap resamples for the confidence intervals, at most :data:`MAX_N_BOOT`; 0 leaves
        the intervals out (``ci`` is empty), for callers that need only the point figures.
    device, precision : str
        Where the model runs and in what precision (:mod:`semgen.devices`; ``auto``: the GPU with
        bf16 autocast if there is one, else the CPU in fp32); recorded as ``compute`` in the result.
    tta : {"none", "flips", "d4"}
        Test-time augmentation (:mod:`semgen.classifier.tta`): average the probabilities over the
        image's flipped and turned views; recorded as ``tta`` in the result.
    classes : list of str, optional
        The task's classes, a subset of the model's: the model predicts among these only (its
        probabilities of the others dropped and the rest renormalised). For a model that knows more
        classes than the task, e.g. a ``semgen pretrain`` run that mixed in a real pool (``--data``):
        that pool's classes, never the test set's. Default: the classes such a run (or an ensemble
        of them) records, else all; ``["all"]``: all. Recorded as ``restricted_to``.
    """
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or not 0 <= n_boot <= MAX_N_BOOT:
        raise SemgenError(f"--n-boot must be an integer in [1, {MAX_N_BOOT:,}], got {n_boot}")
    auto = isinstance(reject_below, str)
    if auto and reject_below != "auto":
        raise SemgenError(f"--reject-below must be a probability in [0, 1] or 'auto', got {reject_below!r}")
    if auto and target_precision is None:
        raise SemgenError("--reject-below auto needs --target-precision P (e.g. 0.9)")
    if target_precision is not None and not auto:
        raise SemgenError("--target-precision only goes with --reject-below auto")
    if not auto and reject_below is not None and not (0.0 <= reject_below <= 1.0):
        raise SemgenError(f"--reject-below must be a probability in [0, 1], got {reject_below}")
    from ..devices import compute

    tta = check_tta(tta)
    onnx_file = Path(run_dir).suffix == ".onnx"
    if onnx_file:
        if auto:
            raise SemgenError("--reject-below auto reads a run dir's validation calibration; pass the run dir, "
                              f"not {Path(run_dir).name}")
        model, meta = _onnx_predictor(run_dir, num_threads, device, precision, tta)
        comp = model.compute
        # beside the run's own files, named for the file: model.onnx and model.int8.onnx keep theirs
        out_name = str(Path(out_name).with_name(f"{Path(out_name).stem}_{Path(run_dir).stem}.json"))
    else:
        comp = compute(device, precision)  # before the model and images load: a missing GPU fails at once
        model, meta = load_eval_model(run_dir, which=which)
        if meta.get("qat") and comp.precision != "fp32":
            comp = compute(comp.device, "fp32")  # a QAT model's fake quantisers run in fp32, as it trained
    run = Path(meta["run_dir"])
    if write:  # before the images are read and the model run: a read-only run dir used to end in a traceback
        check_writable_dir((run / out_name).parent,
                           "the run dir" if Path(out_name).parent == Path(".") else "--out-name's folder")
    cal = read_calibration(run) if calibrated and not onnx_file else None
    temperature = float(cal["temperature"]) if cal else 1.0
    if onnx_file:  # the file carries its temperature (semgen.temperature); the Predictor applies it
        model.temperature = temperature = model.temperature if calibrated else 1.0
    chosen = None
    if auto:
        if not cal or not cal.get("val_confidence"):
            raise SemgenError(f"{run} has no validation calibration (calibration.json); --reject-below auto "
                              "needs a run trained by this semgen with a validation split")
        chosen = threshold_for_precision(cal["val_confidence"], cal["val_correct"], target_precision)
        reject_below = chosen["threshold"]
    from ..pretrain.labels import chosen_task, classes_of, fold_to_classes, is_fine, restrict_to_classes, task_classes

    # a `semgen pretrain` run with fine labels (bridge/lines/vertical/micro) is scored on the classes
    # of a labelled test set: its fine probabilities summed per class (synthetic-only accuracy)
    classes = chosen_task(classes, (meta.get("config") or {}).get("task_classes"))
    fine = is_fine(meta["classes"])
    model_classes = classes_of(meta["classes"]) if fine else meta["classes"]
    all_classes = model_classes
    if classes is not None:  # checked before the images load and the model runs
        model_classes = task_classes(all_classes, classes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="leaving out images of classes")
        s = load_image_set(data, size=meta["size"], classes=model_classes, allow_unknown=True, progress=progress)
    s = _once_each(s)
    if onnx_file:
        probs = model.probs(s.images)  # onnxruntime, the file's temperature, the views of tta
    else:
        with torch_threads(num_threads):
            model = model.to(comp.device)
            # each view calibrated, then averaged: the mean of calibrated probabilities stays calibrated-ish,
            # and it is what Predictor (torch or ONNX) does
            probs = tta_probs(lambda x: apply_temperature(predict_probs(model, x, batch_size=batch_size,
                                                                        compute=comp).numpy(), temperature),
                              s.images, tta)
    if fine and not onnx_file:  # a Predictor has folded them already
        probs = fold_to_classes(probs, meta["classes"])[0]
    if classes is not None:
        probs = restrict_to_classes(probs, all_classes, classes)[0]
    res = evaluate_probs(s.labels.numpy(), probs, s.classes, model_classes=model_classes,
                         reject_below=reject_below, n_boot=n_boot, seed=seed)
    if fine:
        res["folded_from_fine_labels"] = len(meta["classes"])
    if classes is not None:
        res["restricted_to"] = model_classes
    res = {"run_dir": str(run_dir), "checkpoint": meta["checkpoint"], "epoch": meta["epoch"],
           "data": [str(src.path) for src in s.sources], "skipped_images": s.skipped,
           "files": s.files, "temperature": temperature, "qat": bool(meta.get("qat")), "compute": comp.record(),
           "tta": tta, **res}
    if chosen is not None:
        acc = res["reject"]["accuracy_on_accepted"]
        res["reject"]["auto"] = {**chosen, "chosen_on": "validation",
                                 "precision_on_data": acc, "coverage_on_data": 1 - res["reject"]["rejected_fraction"]}
    if write:
        run = Path(meta["run_dir"])
        stem = Path(out_name).stem
        png = "confusion.png" if stem == "metrics" else f"{stem}_confusion.png"
        title = f"{meta['arch']} on {', '.join(Path(p).name for p in res['data'])}: acc {res['accuracy']:.3f}, macro-F1 {res['macro_f1']:.3f}"
        plot_confusion(res["confusion"], res["classes"], run / png, title=title)
        res["confusion_png"] = str(run / png)
        if reject_below is not None:
            rp = png.replace(".png", "_reject.png")
            r = res["reject"]
            plot_confusion(r["after"]["confusion"], r["classes"], run / rp,
                           title=f"reject below {reject_below}: acc {r['after']['accuracy']:.3f}, "
                                 f"macro-F1 {r['after']['macro_f1']:.3f}")
            r["confusion_png"] = str(run / rp)
            # coverage / precision on these images (and on validation, where auto chooses)
            ok = np.asarray(res["y_pred"]) == np.asarray(res["y_true"])
            curves = {f"{', '.join(Path(p).name for p in res['data'])}": coverage_precision(res["confidence"], ok)}
            if cal and cal.get("val_confidence"):
                curves["validation"] = coverage_precision(cal["val_confidence"], cal["val_correct"])
            marks = {f"threshold {r['threshold']:.3f}": (1 - r["rejected_fraction"],
                                                        r["accuracy_on_accepted"] or 0.0)}
            cp = png.replace("confusion.png", "coverage_precision.png")
            plot_coverage_precision(curves, run / cp, marks=marks,
                                    title=f"T = {temperature:.3f}" + (f", target precision {target_precision}"
                                                                      if auto else ""))
            r["coverage_precision_png"] = str(run / cp)
        res["metrics_file"] = str(run / out_name)
        write_bytes_atomic(run / out_name, (json.dumps(res, indent=1) + "\n").encode())
    return res


def _onnx_predictor(path, num_threads, device, precision, tta):
    """An exported ONNX file as (its :class:`~.predict.Predictor`, the ``meta`` that evaluation reads)."""
    from .predict import Predictor

    # every class of the file: evaluate_run restricts to the task itself
    pred = Predictor(path, threads=num_threads or 1, device=device, precision=precision, tta=tta, classes=["all"])
    p = Path(path)
    return pred, {"classes": pred.fine_classes or pred.classes, "size": pred.size, "run_dir": str(p.parent),
                  "checkpoint": str(p), "epoch": None, "qat": False,
                  "arch": f"{pred.metadata.get('arch', '?')} ({p.name})",
                  "config": {"task_classes": pred.metadata.get("task_classes")}}
