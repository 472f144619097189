"""The INT8 graph that ``semgen export`` keeps: quantisations tried in turn, the best one kept.

MobileNetV3's hard-swish and squeeze-excite layers are known to lose accuracy under post-training
quantisation. When INT8 loses more than the tolerance against FP32, :meth:`Int8Search.fix` tries
other calibrations, keeps layer groups in float (chosen by measuring each group's effect) and, last,
16-bit activations; every try is recorded (``export.json`` ``quantization.tries``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .metrics import confusion_matrix, metrics_from_confusion
from .quantize import CALIBRATIONS, layer_groups, preprocessed_nodes, quantize_int8

#: the scratch file every try writes (removed by :meth:`Int8Search.cleanup`)
TRY_NAME = ".model.int8.try.onnx"


def score(logits: np.ndarray, y: np.ndarray | None, k: int) -> dict:
    """Predictions of ``logits``, with accuracy and macro-F1 where labels ``y`` are known."""
    pred = logits.argmax(1)
    if y is None:
        return {"pred": pred}
    m = metrics_from_confusion(confusion_matrix(y, pred, k), [str(i) for i in range(k)])
    return {"pred": pred, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


@dataclass
class EvalSet:
    """The images FP32 and INT8 are compared on: ``--data``, else the calibration images."""

    images: torch.Tensor              #: uint8 [N, S, S]
    y: np.ndarray | None              #: labels (None where unknown)
    k: int                            #: classes the labels index
    source: str                       #: "data" | "calib"
    paths: list | None = None         #: the --data sources (None for calib)


@dataclass
class Int8Search:
    """Quantisations of the prepared FP32 graph ``pre``, judged on ``ev`` against FP32's ``s32``.

    ``best`` is ``(record, int8 bytes, logits, excluded nodes)`` of the best try so far; ``tries``
    the record of every try, in order.
    """

    pre: Path
    out: Path
    calib_images: torch.Tensor | None
    ev: EvalSet
    s32: dict
    metadata: dict
    tolerance: float
    max_tries: int
    threads: int = 1
    tries: list = field(default_factory=list)
    best: tuple | None = None
    qat_info: dict | None = None

    # -- judging ---------------------------------------------------------------------------------
    def ok(self, r: dict) -> bool:
        drop = r.get("accuracy_drop", 1 - r["agreement"])
        return drop <= self.tolerance + 1e-12

    def rank(self, r: dict) -> tuple:
        return (self.ok(r), -r.get("accuracy_drop", 0.0), r["agreement"], -r["excluded_nodes"])

    @property
    def good(self) -> bool:
        """Is the best try within the tolerance?"""
        return self.best is not None and self.ok(self.best[0])

    def _logits(self, path: Path) -> np.ndarray:
        from .export import ort_logits, ort_session

        return ort_logits(ort_session(path, self.threads), self.ev.images)

    # -- trying ----------------------------------------------------------------------------------
    def quantize(self, calibration: str, exclude: list, label: str, activations: str = "uint8") -> tuple:
        """One post-training quantisation, calibrated and evaluated (not recorded)."""
        path = self.out / TRY_NAME
        quantize_int8(self.pre, path, self.calib_images, calibration=calibration, nodes_to_exclude=exclude,
                      metadata=self.metadata, preprocessed=True, activations=activations)
        l8 = self._logits(path)
        s8 = score(l8, self.ev.y, self.ev.k)
        r = {"strategy": label, "calibration": calibration, "activations": activations, "excluded_nodes": len(exclude),
             "agreement": float((s8["pred"] == self.s32["pred"]).mean()), "bytes": path.stat().st_size}
        if self.ev.y is not None:
            r.update({"accuracy": s8["accuracy"], "macro_f1": s8["macro_f1"],
                      "accuracy_drop": self.s32["accuracy"] - s8["accuracy"]})
        return r, path.read_bytes(), l8, list(exclude)

    def attempt(self, calibration: str, exclude: list, label: str, group: str | None = None,
                activations: str = "uint8") -> tuple | None:
        """Run one quantisation if the budget allows; returns it (or None) and keeps the best."""
        if len(self.tries) >= self.max_tries:
            return None
        t = self.quantize(calibration, exclude, label, activations)
        if group:
            t[0]["group"] = group
        self.tries.append(t[0])
        if self.best is None or self.rank(t[0]) > self.rank(self.best[0]):
            self.best = t
        return t

    def qat(self, qmodel, size: int) -> None:
        """The QAT graph, judged against the run's own fake-quant model (what it was trained as)."""
        from .qat import export_qat_onnx

        ev = self.ev
        with torch.no_grad():
            lq = torch.cat([qmodel(ev.images[i:i + 64].unsqueeze(1).float() / 255.0)
                            for i in range(0, len(ev.images), 64)]).numpy()
        sq = score(lq, ev.y, ev.k)
        path = self.out / TRY_NAME
        export_qat_onnx(qmodel, size, path, metadata=self.metadata)
        l8 = self._logits(path)
        s8q = score(l8, ev.y, ev.k)
        r = {"strategy": "qat", "calibration": "qat (trained ranges)", "activations": "uint8", "excluded_nodes": 0,
             "agreement": float((s8q["pred"] == self.s32["pred"]).mean()), "bytes": path.stat().st_size,
             "agreement_with_fake_quant": float((s8q["pred"] == sq["pred"]).mean()),
             "max_abs_logit_diff_vs_fake_quant": float(np.abs(l8 - lq).max()) if len(lq) else 0.0}
        if ev.y is not None:
            r.update({"accuracy": s8q["accuracy"], "macro_f1": s8q["macro_f1"],
                      "fake_quant_accuracy": sq["accuracy"], "fake_quant_macro_f1": sq["macro_f1"],
                      "accuracy_drop": sq["accuracy"] - s8q["accuracy"]})
        else:
            r["accuracy_drop"] = 1.0 - r["agreement_with_fake_quant"]
        self.qat_info = {k: r[k] for k in r if k not in ("strategy", "calibration", "activations", "excluded_nodes")}
        self.tries.append(r)
        self.best = (r, path.read_bytes(), l8, [])

    def fix(self, allow_a16w8: bool) -> None:
        """The automatic fix, until a try is within the tolerance or the budget is spent."""
        # 1. Other calibrations: outliers in hard-swish activations stretch min-max ranges.
        for cal_name in ("percentile", "entropy"):
            self.attempt(cal_name, [], cal_name)
            if self.good:
                return
        # 2. Sensitivity: keep one group of layers in float at a time, then combine the helpful ones.
        base_cal = self.best[0]["calibration"] if self.best[0]["calibration"] in CALIBRATIONS else "minmax"
        groups = layer_groups(preprocessed_nodes(self.pre, prepared=True))
        gains = []
        for name, nodes in groups.items():
            t = self.attempt(base_cal, nodes, f"{base_cal}+float:{name}", name)
            if t is None or self.good:
                break
            gains.append((self.rank(t[0]), name))
        # 3. 16-bit activations, INT8 weights (same size): the fix when the error is spread over
        #    the activations of the whole network rather than sitting in a few layers.
        if allow_a16w8 and not self.good:
            self.attempt(base_cal, [], f"{base_cal}+a16w8", activations="uint16")
        gains.sort(reverse=True)
        chosen: list[str] = []
        for _, name in gains:
            if self.good:
                break
            chosen.append(name)
            if len(chosen) < 2:
                continue
            nodes = sorted({n for c in chosen for n in groups[c]})
            if self.attempt(base_cal, nodes, f"{base_cal}+float:{'+'.join(chosen)}", "+".join(chosen)) is None:
                break

    def cleanup(self) -> None:
        """Remove the scratch files (the try and the prepared graph)."""
        (self.out / TRY_NAME).unlink(missing_ok=True)
        self.pre.unlink(missing_ok=True)
