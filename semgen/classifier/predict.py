"""Classify image files with a run dir / checkpoint, ``model.onnx`` or ``model.int8.onnx``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import SemgenError
from .data import decode_images


class Predictor:
    """A loaded model of any of the three kinds, with its classes and input size.

    Parameters
    ----------
    model : path
        A run dir or checkpoint folder (``model.safetensors``; ``best.pt`` of an earlier version),
        a checkpoint file, or an exported ``.onnx`` file. The
        probabilities use the run's temperature (``calibration.json``, or ``semgen.temperature``
        in the ONNX metadata), so confidences are calibrated.
    cascade : bool
        Prepare :meth:`cascade` (a hierarchical run dir, or an ONNX file of one with the cascade
        stages ``model.gate.onnx`` / ``model.rest.onnx`` beside it).
    tta : {"none", "flips", "d4"}
        Test-time augmentation (:mod:`semgen.classifier.tta`): :meth:`probs` averages the
        calibrated probabilities of the image's flipped and turned views (``d4``: 8 views, 8x the time).
    device, precision : str
        Where a run dir's model runs (:mod:`semgen.devices`; ``auto``: the GPU with bf16 autocast if
        there is one, else the CPU in fp32). ONNX files and the cascade always run on the CPU
        (onnxruntime; the cascade is an edge-latency path): ``cpu`` or ``auto`` only.
    fine : bool
        A ``semgen pretrain`` run predicts fine labels (``bridge/lines/vertical/micro``). By default
        their probabilities are summed per class (:func:`semgen.pretrain.labels.fold_to_classes`),
        as ``semgen evaluate`` scores such a run; ``fine=True`` keeps the fine labels.
    classes : list of str, optional
        The task's classes, some of the model's: predict among these only
        (:func:`semgen.pretrain.labels.restrict_to_classes`), as ``semgen evaluate --classes``.
        Default: the classes the model records (a pretraining run that mixed in a real pool, an
        ensemble of such runs, or their ONNX files), else all; ``["all"]``: all.
    """

    def __init__(self, model, *, threads: int | None = None, cascade: bool = False, device: str = "auto",
                 precision: str = "auto", tta: str = "none", fine: bool = False,
                 classes: list[str] | None = None):
        from ..devices import compute
        from .tta import check_tta

        self.tta = check_tta(tta)
        if cascade and self.tta != "none":
            raise SemgenError("--cascade and --tta do not combine (the cascade is the edge-latency path); use one")
        p = Path(model)
        cpu_only = "--cascade" if cascade else ("ONNX models (onnxruntime)" if p.suffix == ".onnx" else None)
        if cpu_only and str(device or "auto").lower() not in ("auto", "cpu"):
            raise SemgenError(f"--device {device}: {cpu_only} run on the CPU; use --device cpu or auto")
        self.compute = compute("cpu" if cpu_only else device, precision)
        if not p.exists():
            raise SemgenError(f"model {p} does not exist")
        self.path = p
        self._cascade = None
        if p.suffix == ".onnx":
            from .export import ort_session, read_metadata

            try:
                meta = read_metadata(p)
            except Exception as e:  # noqa: BLE001 - protobuf, onnx and OS errors alike mean "not a model"
                raise SemgenError(f"{p} is not a readable ONNX model ({_first_line(e)})") from None
            if "classes" not in meta or "size" not in meta:
                raise SemgenError(f"{p} is not an ONNX file exported by 'semgen export' (no class metadata)")
            self.kind = "onnx-int8" if ".int8" in p.name else "onnx"
            self.metadata = meta  # the file's semgen.* metadata (arch, classes, size, temperature)
            try:
                self.classes, self.size = [str(c) for c in meta["classes"]], int(meta["size"])
                self.temperature = float(meta.get("temperature", 1.0))
                if not self.classes or self.size < 1 or not np.isfinite(self.temperature) or self.temperature <= 0:
                    raise ValueError("empty classes, a size < 1 or a bad temperature")
            except (TypeError, ValueError) as e:
                raise SemgenError(f"{p} has broken semgen metadata ({_first_line(e)})") from None
            try:
                self._sess = ort_session(p, threads or 1)
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a bad graph
                raise SemgenError(f"{p} cannot be loaded by onnxruntime ({_first_line(e)})") from None
            if cascade and self.kind == "onnx-int8":
                raise SemgenError(f"--cascade runs the FP32 stages (model.gate.onnx / model.rest.onnx; no INT8 "
                                  f"stages are exported): pass model.onnx or the run dir, not {p.name}")
            if cascade:
                from .cascade import GATE_FILE, REST_FILE, OrtCascade

                if not (p.parent / GATE_FILE).is_file() or not (p.parent / REST_FILE).is_file():
                    raise SemgenError(f"--cascade: no {GATE_FILE} / {REST_FILE} beside {p}; 'semgen export' writes "
                                      "them for a run trained with --heads hierarchical")
                self._cascade = OrtCascade(p.parent, threads or 1)
        else:
            from .calibrate import read_calibration
            from .evaluate import load_eval_model

            # a QAT run predicts with its fake-quant model, as its INT8 export will
            self._model, meta = load_eval_model(p)
            if meta.get("qat") and self.compute.precision != "fp32":
                self.compute = compute(self.compute.device, "fp32")  # fake quantisers run in fp32, as trained
            self._model.to(self.compute.device)
            self.kind = "torch"
            cal = read_calibration(Path(meta["run_dir"]))
            self.temperature = float(cal["temperature"]) if cal else 1.0
            self.classes, self.size = meta["classes"], meta["size"]
            self._threads = threads
            if cascade:
                if not hasattr(self._model, "cascade"):
                    raise SemgenError(f"--cascade needs a run trained with --heads hierarchical; {p} has one head")
                self._cascade = self._model
        from ..pretrain.labels import chosen_task, classes_of, is_fine, task_classes

        if not (cascade or fine):  # the classes its model records (a real pool mixed into pretraining)
            recorded = meta if self.kind != "torch" else (meta.get("config") or {})  # ONNX metadata, or the run's
            classes = chosen_task(classes, recorded.get("task_classes"))
        elif classes is not None:
            classes = chosen_task(classes, None)

        self.fine_classes = None  # the model's own fine labels, when they are folded into classes
        if not fine and is_fine(self.classes):
            self.fine_classes, self.classes = list(self.classes), classes_of(self.classes)
        self.model_classes = None  # all the model's classes, when the task's are fewer
        if classes is not None:
            if cascade or fine:
                raise SemgenError("--classes does not combine with --cascade or --fine")
            self.model_classes = list(self.classes)
            self.classes = task_classes(self.classes, classes)

    def probs(self, images: torch.Tensor) -> np.ndarray:
        """Class probabilities ``[N, K]`` for uint8 images ``[N, size, size]`` (averaged over the
        views of ``tta``; a fine-label model's folded into :attr:`classes`)."""
        from ..pretrain.labels import fold_to_classes, restrict_to_classes
        from .tta import tta_probs

        p = tta_probs(self._probs, images, self.tta)
        p = p if self.fine_classes is None else fold_to_classes(p, self.fine_classes)[0]
        return p if self.model_classes is None else restrict_to_classes(p, self.model_classes, self.classes)[0]

    def _probs(self, images: torch.Tensor) -> np.ndarray:
        if self.kind == "torch":
            from .train import predict_probs, torch_threads

            from .calibrate import apply_temperature

            with torch_threads(self._threads):
                probs = predict_probs(self._model, images, compute=self.compute).numpy()
            return apply_temperature(probs, self.temperature)
        from .export import ort_logits

        logits = ort_logits(self._sess, images) / self.temperature  # the run's calibration
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


    def cascade(self, images: torch.Tensor) -> dict:
        """The gate for every image, the rest only for those it calls defective.

        Returns the model's own probabilities (no temperature: where the gate settles an image,
        the defect classes' share is known only in sum): ``probs`` ``[N, K]`` (NaN for the defect
        classes of settled images), ``gate``, ``resolved`` and ``defect_prob``
        (:meth:`semgen.classifier.heads.HierClassifier.cascade`).
        """
        if self._cascade is None:
            raise SemgenError("this Predictor was not made with cascade=True")
        if self.kind != "torch":
            return self._cascade.run(images)
        from .augment import to_float
        from .train import torch_threads

        with torch_threads(self._threads):
            r = self._cascade.cascade(to_float(images))
        return {k: v.numpy() for k, v in r.items()}


def _first_line(e: BaseException) -> str:
    """A library's exception as one short line (onnxruntime's messages run over several)."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:200]}" if msg else type(e).__name__


def expand_inputs(paths) -> list[tuple[str, str | None]]:
    """``(file, None)`` for each image to classify, or ``(path, reason)`` for an input that gives none.

    A file stays as given (decoding says later whether it is an image). A folder gives every image
    file under it, sorted (a dataset dir: the images its manifest lists), through the one data-source
    layer (:func:`semgen.manifests.iter_source`); a folder without one is reported, not skipped
    silently.

    Examples
    --------
    >>> expand_inputs(["a.png"])
    [('a.png', None)]
    """
    from ..manifests import iter_source

    out: list[tuple[str, str | None]] = []
    for f in paths:
        if Path(f).is_dir():
            found = [str(it.path) for it in iter_source(f, labels=False, what="folder")]
            out += [(x, None) for x in found] or [(str(f), "a folder with no image file in it")]
        else:
            out.append((str(f), None))
    return out


def predict_files(model, files, *, top_k: int = 1, threads: int | None = None, cascade: bool = False,
                  progress: bool = False, device: str = "auto", precision: str = "auto",
                  tta: str = "none", fine: bool = False, classes: list[str] | None = None) -> list[dict]:
    """Classify image files, and the images under folders (:func:`expand_inputs`), in order; unreadable
    ones (and folders without an image) come back with an ``error`` instead of a label.

    With ``cascade`` (a hierarchical model), each image runs the gate and only images it calls
    defective run the rest; an image the gate settles has the gate's classes and ``defect`` (the
    defect classes' total) in ``top``, and ``stage`` says where it stopped (``gate`` / ``rest``).
    ``progress`` shows a decoding bar on stderr when it is a terminal. ``device`` / ``precision`` /
    ``tta`` / ``fine`` / ``classes``: see :class:`Predictor`.

    Returns
    -------
    list of dict
        ``file``, ``label``, ``confidence``, ``top`` (``[(label, p), ...]``) or ``file``, ``error``.
    """
    pred = Predictor(model, threads=threads, cascade=cascade, device=device, precision=precision, tta=tta,
                     fine=fine, classes=classes)
    inputs = expand_inputs(files)
    not_images = dict(x for x in inputs if x[1])
    files = [f for f, why in inputs if not why]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imgs, ok, skipped = decode_images(files, pred.size, progress=progress)
    reasons = {s["file"]: s["reason"] for s in skipped}
    stage = None
    if not len(imgs):
        probs = np.zeros((0, len(pred.classes)))
    elif cascade:
        r = pred.cascade(torch.from_numpy(imgs))
        probs, stage, defect = r["probs"], r["resolved"], r["defect_prob"]
    else:
        probs = pred.probs(torch.from_numpy(imgs))
    out, j = [], 0
    for f, good in zip(files, ok):
        if not good:
            out.append({"file": f, "error": reasons.get(f, "unreadable")})
            continue
        p = probs[j]
        names = list(pred.classes)
        if stage is not None and not stage[j]:  # settled by the gate: its classes, and the defect total
            known = ~np.isnan(p)
            names = [c for c, k in zip(names, known) if k] + ["defect"]
            p = np.r_[p[known], defect[j]]
        order = np.argsort(-p, kind="stable")[:max(1, top_k)]
        rec = {"file": f, "label": names[order[0]], "confidence": float(p[order[0]]),
               "top": [(names[i], float(p[i])) for i in order]}
        if stage is not None:
            rec["stage"] = "rest" if stage[j] else "gate"
        j += 1
        out.append(rec)
    done = iter(out)  # back in the order of the inputs, an empty folder where it was named
    return [{"file": f, "error": not_images[f]} if why else next(done) for f, why in inputs]
