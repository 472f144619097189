"""Classify image files with a run dir / ``.pt`` checkpoint, ``model.onnx`` or ``model.int8.onnx``."""

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
        A run dir (uses ``best.pt``), a ``.pt`` checkpoint, or an exported ``.onnx`` file. The
        probabilities use the run's temperature (``calibration.json``, or ``semgen.temperature``
        in the ONNX metadata), so confidences are calibrated.
    """

    def __init__(self, model, *, threads: int | None = None):
        p = Path(model)
        if not p.exists():
            raise SemgenError(f"model {p} does not exist")
        self.path = p
        if p.suffix == ".onnx":
            from .export import ort_session, read_metadata

            try:
                meta = read_metadata(p)
            except Exception as e:  # noqa: BLE001 - protobuf, onnx and OS errors alike mean "not a model"
                raise SemgenError(f"{p} is not a readable ONNX model ({_first_line(e)})") from None
            if "classes" not in meta or "size" not in meta:
                raise SemgenError(f"{p} is not an ONNX file exported by 'semgen export' (no class metadata)")
            self.kind = "onnx-int8" if ".int8" in p.name else "onnx"
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
        else:
            from .calibrate import read_calibration
            from .evaluate import load_eval_model

            # a QAT run predicts with its fake-quant model, as its INT8 export will
            self._model, meta = load_eval_model(p)
            self.kind = "torch"
            cal = read_calibration(Path(meta["checkpoint"]).parent)
            self.temperature = float(cal["temperature"]) if cal else 1.0
            self.classes, self.size = meta["classes"], meta["size"]
            self._threads = threads

    def probs(self, images: torch.Tensor) -> np.ndarray:
        """Class probabilities ``[N, K]`` for uint8 images ``[N, size, size]``."""
        if self.kind == "torch":
            from .train import predict_probs, torch_threads

            from .calibrate import apply_temperature

            with torch_threads(self._threads):
                return apply_temperature(predict_probs(self._model, images).numpy(), self.temperature)
        from .export import ort_logits

        logits = ort_logits(self._sess, images) / self.temperature  # the run's calibration
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def _first_line(e: BaseException) -> str:
    """A library's exception as one short line (onnxruntime's messages run over several)."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:200]}" if msg else type(e).__name__


def predict_files(model, files, *, top_k: int = 1, threads: int | None = None) -> list[dict]:
    """Classify image files; unreadable ones come back with an ``error`` instead of a label.

    Returns
    -------
    list of dict
        ``file``, ``label``, ``confidence``, ``top`` (``[(label, p), ...]``) or ``file``, ``error``.
    """
    pred = Predictor(model, threads=threads)
    files = [str(f) for f in files]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imgs, ok, skipped = decode_images(files, pred.size)
    reasons = {s["file"]: s["reason"] for s in skipped}
    probs = pred.probs(torch.from_numpy(imgs)) if len(imgs) else np.zeros((0, len(pred.classes)))
    out, j = [], 0
    for f, good in zip(files, ok):
        if not good:
            out.append({"file": f, "error": reasons.get(f, "unreadable")})
            continue
        p = probs[j]
        j += 1
        order = np.argsort(-p, kind="stable")[:max(1, top_k)]
        out.append({"file": f, "label": pred.classes[order[0]], "confidence": float(p[order[0]]),
                    "top": [(pred.classes[i], float(p[i])) for i in order]})
    return out
