"""The two-stage cascade of a hierarchical model as ONNX graphs, and its average latency.

:func:`export_cascade_onnx` writes the two stages of a
:class:`~semgen.classifier.heads.HierClassifier` as separate graphs:

``model.gate.onnx``
    input ``image`` -> ``gate_logits [N, G]`` and ``features`` (the backbone part-way);
``model.rest.onnx``
    inputs ``features``, ``gate_logits`` -> ``logits [N, K]`` (the leaf log-probabilities, the
    same output as the one-graph ``model.onnx``).

A runtime runs the first for every image and the second only for images whose top gate output
is the defect one (:class:`OrtCascade`). At a clean fraction ``c`` (images the gate settles),
the average latency is ``t_gate + (1 - c) * t_rest`` (:func:`cascade_latency`).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..imageio import write_bytes_atomic

GATE_FILE, REST_FILE = "model.gate.onnx", "model.rest.onnx"


class _Gate(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        return self.m.forward_gate(x)


class _Rest(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, f, gate_logits):
        fl, ll = self.m.forward_rest(f)
        return self.m.combine(gate_logits, fl, ll)


def _export(module, args, names_in, names_out, path, metadata, opset):
    import onnx

    from .export import _set_metadata

    dyn = {n: {0: "batch"} for n in names_in + names_out}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        tmp_path = Path(tmp) / "stage.onnx"
        torch.onnx.export(module, args, str(tmp_path), dynamo=False, opset_version=opset, input_names=names_in,
                          output_names=names_out, dynamic_axes=dyn, do_constant_folding=True)
        m = onnx.load(str(tmp_path))
    _set_metadata(m, metadata)
    onnx.checker.check_model(m)
    write_bytes_atomic(path, m.SerializeToString())
    return Path(path)


def export_cascade_onnx(model, size: int, folder, *, metadata: dict | None = None) -> dict:
    """Write ``model.gate.onnx`` and ``model.rest.onnx`` (FP32) of a hierarchical model.

    Returns
    -------
    dict
        ``gate`` and ``rest``: the paths.
    """
    from .export import INPUT_NAME, OPSET, OUTPUT_NAME

    model = model.eval().to(memory_format=torch.contiguous_format)
    folder = Path(folder)
    h = model.hierarchy
    md = {**(metadata or {}), "cascade": {"gate": list(h.gate), "defect": h.defect,
                                          "defect_index": h.gate.index(h.defect) if h.defect in h.gate else None}}
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        gl, f = model.forward_gate(x)
    # wrappers in eval mode, or the exporter would leave the model in training mode (see export_onnx)
    gate = _export(_Gate(model).eval(), (x,), [INPUT_NAME], ["gate_logits", "features"], folder / GATE_FILE,
                   {**md, "stage": "gate"}, OPSET)
    rest = _export(_Rest(model).eval(), (f, gl), ["features", "gate_logits"], [OUTPUT_NAME], folder / REST_FILE,
                   {**md, "stage": "rest"}, OPSET)
    return {"gate": gate, "rest": rest}


class OrtCascade:
    """The cascade under onnxruntime: the gate graph for every image, the rest for the defective.

    Parameters
    ----------
    folder : path
        Holds ``model.gate.onnx`` and ``model.rest.onnx`` (from ``semgen export`` of a
        hierarchical run).
    """

    def __init__(self, folder, threads: int = 1):
        from .export import ort_session, read_metadata

        folder = Path(folder)
        self.gate_sess = ort_session(folder / GATE_FILE, threads)
        self.rest_sess = ort_session(folder / REST_FILE, threads)
        md = read_metadata(folder / GATE_FILE)
        self.classes, self.size = [str(c) for c in md["classes"]], int(md["size"])
        c = md["cascade"]
        self.gate_names, self.defect_index = list(c["gate"]), c["defect_index"]
        self.rest_images = 0  # images the second stage ran on

    def run(self, images: torch.Tensor) -> dict:
        """Like :meth:`HierClassifier.cascade` for uint8 images ``[N, S, S]`` (numpy arrays)."""
        from .export import INPUT_NAME

        x = images.unsqueeze(1).float().div(255.0).numpy()
        gl, f = self.gate_sess.run(None, {INPUT_NAME: x})
        g = _softmax(gl)
        n, k = len(x), len(self.classes)
        probs = np.full((n, k), np.nan, np.float32)
        for gi, name in enumerate(self.gate_names):
            if gi != self.defect_index:
                probs[:, self.classes.index(name)] = g[:, gi]
        resolved = (g.argmax(1) == self.defect_index) if self.defect_index is not None else np.zeros(n, bool)
        if resolved.any():
            self.rest_images += int(resolved.sum())
            lp = self.rest_sess.run(None, {"features": f[resolved], "gate_logits": gl[resolved]})[0]
            probs[resolved] = np.exp(lp)
        defect = g[:, self.defect_index] if self.defect_index is not None else np.zeros(n, np.float32)
        return {"probs": probs, "gate": g, "resolved": resolved, "defect_prob": defect}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def stage_latency_ms(folder, size: int, *, runs: int = 300, warmup: int = 30, threads: int = 1) -> dict:
    """Median per-image latency at batch 1 of each stage (``gate``, ``rest``) under onnxruntime."""
    from .export import INPUT_NAME, ort_session, time_calls

    folder = Path(folder)
    gs, rs = ort_session(folder / GATE_FILE, threads), ort_session(folder / REST_FILE, threads)
    x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    gl, f = gs.run(None, {INPUT_NAME: x})
    out = {}
    for name, fn in (("gate", lambda: gs.run(None, {INPUT_NAME: x})),
                     ("rest", lambda: rs.run(None, {"features": f, "gate_logits": gl}))):
        out[f"{name}_ms"] = float(np.median(time_calls(fn, runs=runs, warmup=warmup)) * 1e3)
    out.update(runs=runs, threads=threads, batch=1)
    return out


def cascade_latency(gate_ms: float, rest_ms: float, clean_fraction: float) -> float:
    """Average latency per image when a share ``clean_fraction`` of the images stops at the gate.

    Examples
    --------
    >>> cascade_latency(0.4, 0.6, 0.9)
    0.46
    """
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError(f"clean fraction must be in [0, 1], got {clean_fraction}")
    return round(gate_ms + (1.0 - clean_fraction) * rest_ms, 12)


def cascade_report(model, size: int, out: Path, md: dict, images: torch.Tensor, fp32_pred: np.ndarray,
                   latency_runs: int) -> dict:
    """The cascade stages of a hierarchical model for ``semgen export``, FP32: their
    files, latency on one thread, the share of ``images`` the gate settles and the cascade's top-1
    agreement with the one-graph FP32 model on them."""
    from .deploy import activation_peak, file_row

    paths = export_cascade_onnx(model, size, out, metadata=md)
    lat = stage_latency_ms(out, size, runs=latency_runs, threads=1)
    casc = OrtCascade(out, threads=1)
    r = casc.run(images)
    pred = np.nan_to_num(r["probs"], nan=-1.0).argmax(1)
    agree = float((pred == fp32_pred).mean()) if len(pred) else None
    settled = float(1 - r["resolved"].mean()) if len(pred) else None
    return {
        "gate_ms": lat["gate_ms"], "rest_ms": lat["rest_ms"], "settled_by_gate": settled,
        "average_ms_on_data": cascade_latency(lat["gate_ms"], lat["rest_ms"], settled) if settled is not None else None,
        "agreement_with_fp32": agree,
        "files": [file_row(paths[k], activations="float32", peak_elements=activation_peak(paths[k])["peak_elements"],
                           latency_ms=lat[f"{k}_ms"], agreement=agree) for k in ("gate", "rest")],
    }
