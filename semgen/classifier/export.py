"""ONNX export: FP32, INT8 (onnxruntime static QDQ quantisation), a C header, and their figures.

:func:`export_run` takes an :class:`~.export_config.ExportConfig`. When INT8 loses more than its
``tolerance`` against FP32, the search of :mod:`.int8_search` tries other calibrations, keeps layer
groups in float and, last, 16-bit activations; ``export.json`` records every try and the config.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import SemgenError
from ..imageio import write_bytes_atomic
from ..manifests.ops import check_writable_dir
from .checkpoint import load_run
from .data import load_image_set
from .deploy import ACTIVATION_BYTES, activation_peak, file_row, input_quantization, write_c_header
from .export_config import ExportConfig
from .int8_search import EvalSet, Int8Search, score
from .quantize import prepare_for_quantization
from .registry import get_arch

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
#: The second output of a hierarchical model's graph: the gate's probabilities.
GATE_NAME = "gate"


class _WithGate(torch.nn.Module):
    """A hierarchical model as one graph: leaf log-probabilities (``logits``) and gate probabilities."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        h = self.m.forward_heads(x)
        return h["log_probs"], torch.softmax(h["gate"], 1)


# --------------------------------------------------------------------------------------------
# FP32
def export_onnx(model, size: int, path, *, opset: int = OPSET, metadata: dict | None = None) -> Path:
    """Export a classifier to one ONNX file (dynamic batch; input float ``[N,1,S,S]`` in [0,1]).

    Output ``logits`` ``[N, K]``; a hierarchical model's are its leaf log-probabilities (softmax
    gives the leaf probabilities back) and it has a second output, ``gate`` ``[N, G]`` (the
    gate's probabilities).
    """
    import onnx

    from .padding import fold_pads_into_convs, with_constant_same_padding

    path = Path(path)
    # a copy whose TF "SAME" pads are constants for this input size: no Shape / Pad chain per conv
    model = with_constant_same_padding(model.eval()).to(memory_format=torch.contiguous_format)
    hier = getattr(model, "hierarchy", None) is not None
    # the wrapper in eval mode: the exporter restores the mode it finds, and a wrapper left in training
    # mode would put the model back into it (BatchNorm statistics then drift on the next batch)
    module, outputs = (_WithGate(model).eval(), [OUTPUT_NAME, GATE_NAME]) if hier else (model, [OUTPUT_NAME])
    with torch.random.fork_rng(devices=[]):  # a dummy input that leaves the caller's random stream alone
        x = torch.rand(1, 1, size, size)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        tmp_path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            module, (x,), str(tmp_path), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=outputs, dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *outputs]},
            do_constant_folding=True,
        )
        m = onnx.load(str(tmp_path))
    fold_pads_into_convs(m)  # the one-sided "SAME" pads go into the convs: no Pad node runs in float
    _set_metadata(m, metadata or {})
    onnx.checker.check_model(m)
    write_bytes_atomic(path, m.SerializeToString())
    return path


def _set_metadata(m, metadata: dict) -> None:
    del m.metadata_props[:]
    for k, v in metadata.items():
        p = m.metadata_props.add()
        p.key = f"semgen.{k}"
        p.value = v if isinstance(v, str) else json.dumps(v)


def read_metadata(path) -> dict:
    """The ``semgen.*`` metadata of an exported ONNX file (classes, size, arch)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    out = {}
    for p in m.metadata_props:
        if p.key.startswith("semgen."):
            try:
                out[p.key[7:]] = json.loads(p.value)
            except ValueError:
                out[p.key[7:]] = p.value
    return out


def compact_names(m) -> None:
    """Rename internal tensors and drop node names / doc strings: the graph's strings are a large
    part of a small quantised file and mean nothing to a runtime."""
    g = m.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    mapping: dict[str, str] = {}

    def new(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:
            mapping[name] = f"t{len(mapping)}"
        return mapping[name]

    for init in g.initializer:
        init.name = new(init.name)
    for n in g.node:
        n.name = ""
        n.doc_string = ""
        for i, v in enumerate(n.input):
            n.input[i] = new(v)
        for i, v in enumerate(n.output):
            n.output[i] = new(v)
    for vi in g.value_info:
        vi.name = new(vi.name)
    del g.value_info[:]
    m.doc_string = ""
    g.doc_string = ""


# --------------------------------------------------------------------------------------------
# Running ONNX models
def ort_session(path, threads: int = 1, *, spinning: bool = True):
    """A CPU ONNX Runtime session; ``spinning=False``: its threads sleep between calls instead of
    spinning (for sessions that share the cores with other work between calls)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_logits(sess, images: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Logits for uint8 images ``[N, S, S]``."""
    out = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].unsqueeze(1).float().div(255.0).numpy()
        out.append(sess.run(None, {INPUT_NAME: x})[0])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def latency_ms(path, size: int, *, runs: int = 300, warmup: int = 30, threads: int = 1) -> dict:
    """Per-image latency at batch 1 (median and 90th percentile of ``runs`` timed calls)."""
    sess = ort_session(path, threads)
    x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    t = time_calls(lambda: sess.run(None, {INPUT_NAME: x}), runs=runs, warmup=warmup)
    return {"median_ms": float(np.median(t) * 1e3), "p90_ms": float(np.quantile(t, 0.9) * 1e3),
            "runs": runs, "threads": threads, "batch": 1}


def time_calls(fn, *, runs: int, warmup: int) -> np.ndarray:
    """Seconds taken by each of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    t = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    return t


# --------------------------------------------------------------------------------------------
def export_run(run_dir, calib=None, **kwargs) -> dict:
    """Export a run: ``model.onnx``, ``model.int8.onnx``, ``model_int8.h`` and ``export.json``.

    Parameters
    ----------
    run_dir : ExportConfig or path
        The settings (:class:`~.export_config.ExportConfig`); or, the keyword form, the run dir,
        with ``calib`` and the other fields of the config as keywords.

    Returns
    -------
    dict
        What ``export.json`` holds: figures of each file, every quantisation tried, and ``config``
        (the settings as plain JSON).

    Notes
    -----
    A QAT-trained run is exported from its QAT model unless ``qat=False``. Its INT8 graph is
    compared with the run's own fake-quant model; only if it loses more than ``tolerance``
    against it does the post-training fix (:class:`~.int8_search.Int8Search`) run (needs
    ``calib``), A16W8 last.

    Examples
    --------
    >>> export_run(ExportConfig(run_dir="runs/a", calib="data/train"))  # doctest: +SKIP
    """
    cfg = ExportConfig.coerce(run_dir, calib=calib, **kwargs)
    use_qat = _use_qat(cfg)
    model, meta = load_run(cfg.run_dir)
    out = Path(cfg.out) if cfg.out is not None else Path(meta["run_dir"])
    check_writable_dir(out)  # a file or read-only --out: one line, before any image is read
    out.mkdir(parents=True, exist_ok=True)
    md = _metadata(meta, use_qat)
    cal, calib_images, ev = _images(cfg, meta)

    fp32 = export_onnx(model, meta["size"], out / "model.onnx", metadata=md)
    with torch.no_grad():
        t_logits = model(ev.images[:64].unsqueeze(1).float() / 255.0).numpy()
    l32 = ort_logits(ort_session(fp32, cfg.threads), ev.images)
    max_diff = float(np.abs(l32[:64] - t_logits).max())
    s32 = score(l32, ev.y, ev.k)

    search = Int8Search(prepare_for_quantization(fp32, out / ".model.pre.onnx"), out, calib_images, ev, s32, md,
                        tolerance=cfg.tolerance, max_tries=cfg.max_tries, threads=cfg.threads)
    _search_int8(search, cfg, use_qat, meta["size"])
    search.cleanup()
    chosen_r, int8_bytes, l8, excluded = search.best
    write_bytes_atomic(out / "model.int8.onnx", int8_bytes)
    s8 = score(l8, ev.y, ev.k)
    peak = activation_peak(fp32)["peak_elements"]
    header = _write_header(out, meta, int8_bytes, chosen_r["activations"], peak)

    res = _report(cfg, meta, md, ev, cal, calib_images, fp32, out / "model.int8.onnx", header, s32, s8, peak,
                  chosen_r, max_diff)
    res["quantization"] = {
        "format": "QDQ", "weights": "int8 per-channel", "activations": f"{chosen_r['activations']} per-tensor",
        "int8_opset": _opset(int8_bytes),
        "calibration": chosen_r["calibration"], "strategy": chosen_r["strategy"],
        "nodes_kept_float": excluded, "tolerance": cfg.tolerance,
        "auto_fixed": len(search.tries) > 1, "tries": search.tries, "qat": search.qat_info,
        "note": _quant_note(chosen_r, use_qat),
    }
    res["machine"] = {"cpu": platform.processor() or platform.machine(), "onnxruntime": _ort_version(),
                      "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if ev.y is not None:
        res["accuracy_drop"] = s32["accuracy"] - s8["accuracy"]
    if meta.get("heads") is not None:
        from .cascade import cascade_report

        res["cascade"] = cascade_report(model, meta["size"], out, md, ev.images, s32["pred"], cfg.latency_runs)
        res["files"] += res["cascade"].pop("files")
    res["config"] = cfg.to_dict()
    write_bytes_atomic(out / "export.json", (json.dumps(res, indent=2) + "\n").encode())
    return res


def _use_qat(cfg: ExportConfig) -> bool:
    """Export from the QAT model? Checked before anything is loaded (one-line errors)."""
    from .qat import checkpoint_is_qat

    is_qat_run = checkpoint_is_qat(cfg.run_dir)
    if cfg.qat and not is_qat_run:
        raise SemgenError(f"{cfg.run_dir} was not QAT-trained, so there is no QAT model to export; train it with "
                          "'semgen train --qat' (e.g. --init RUN --qat) or export without --qat")
    use_qat = is_qat_run if cfg.qat is None else cfg.qat
    if cfg.calib is None and not use_qat:
        raise SemgenError("--calib is required: post-training INT8 needs calibration images")
    if cfg.calib is None and cfg.data is None:
        raise SemgenError("a QAT export without --calib needs --data (images to compare INT8 with FP32 on)")
    return use_qat


def _metadata(meta: dict, use_qat: bool) -> dict:
    """The ``semgen.*`` metadata of the exported graphs (what predict reads back)."""
    from .calibrate import read_calibration

    size = meta["size"]
    md = {"classes": meta["classes"], "size": size, "arch": meta["arch"],
          "input": f"float32 [N,1,{size},{size}] = gray/255; normalisation inside the model",
          "checkpoint": Path(meta["checkpoint"]).name}
    if use_qat:
        md["qat"] = True
    task = (meta.get("config") or {}).get("task_classes")
    if task:  # a pretraining run that mixed in a real pool: predict chooses among its classes by default
        md["task_classes"] = list(task)
    cal_rec = read_calibration(Path(meta["run_dir"]))
    if cal_rec:
        md["temperature"] = float(cal_rec["temperature"])  # predict applies it to the logits
    return md


def _images(cfg: ExportConfig, meta: dict) -> tuple:
    """(calibration set, the calibration images drawn, the :class:`EvalSet`)."""
    size, classes = meta["size"], meta["classes"]
    cal = calib_images = order = None
    if cfg.calib is not None:
        cal = load_image_set(list(cfg.calib), size=size, progress=cfg.progress, classes=None)
        order = np.sort(np.random.default_rng(cfg.seed).permutation(len(cal))[:cfg.calib_max])
        calib_images = cal.images[torch.as_tensor(order)]
        if not len(calib_images):
            raise SemgenError(f"--calib {' '.join(cfg.calib)}: no image could be read for calibration")
    if cfg.data is not None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="leaving out images of classes")
            ev = load_image_set(list(cfg.data), size=size, classes=classes, allow_unknown=True, progress=cfg.progress)
        return cal, calib_images, EvalSet(ev.images, ev.labels.numpy(), len(ev.classes), "data",
                                          [str(s.path) for s in ev.sources])
    y = None
    if set(cal.classes) <= set(classes):  # calibration images with the model's labels: accuracy too
        idx = {c: i for i, c in enumerate(classes)}
        y = np.array([idx[cal.classes[j]] for j in cal.labels[torch.as_tensor(order)].tolist()])
    return cal, calib_images, EvalSet(calib_images, y, len(classes), "calib")


def _search_int8(search: Int8Search, cfg: ExportConfig, use_qat: bool, size: int) -> None:
    """QAT graph and / or min-max, then the automatic fix while the best is beyond the tolerance."""
    auto_fix = cfg.auto_fix
    if use_qat:
        from .qat import load_qat_run

        search.qat(load_qat_run(cfg.run_dir)[0], size)
        if not search.good:
            if auto_fix and search.calib_images is not None:
                warnings.warn(f"the QAT INT8 graph loses {search.best[0]['accuracy_drop']:.3f} against its fake-quant "
                              f"model (tolerance {cfg.tolerance}); trying post-training quantisation as well",
                              stacklevel=3)
            else:
                auto_fix = False  # nothing else to try: keep the QAT graph and say what it lost
    if not use_qat or (auto_fix and not search.good):
        search.attempt("minmax", [], "minmax")
    if auto_fix and not search.good:
        search.fix(cfg.allow_a16w8)


def _write_header(out: Path, meta: dict, int8_bytes: bytes, act8: str, peak: int) -> Path:
    """``model_int8.h``: the INT8 graph as a C array, with what a firmware needs to run it."""
    size, classes, k = meta["size"], meta["classes"], len(meta["classes"])
    spec = get_arch(meta["arch"])
    outputs = (f"Output '{OUTPUT_NAME}': leaf log-probabilities [1,{k}] (softmax gives the class probabilities); "
               f"output '{GATE_NAME}': gate probabilities [1,{len(meta['heads']['gate'])}] "
               f"({', '.join(meta['heads']['gate'])})" if meta.get("heads") is not None
               else f"Output '{OUTPUT_NAME}': logits [1,{k}]")
    return write_c_header(
        int8_bytes, out / "model_int8.h",
        comment=(f"semgen INT8 classifier ({meta['arch']}), ONNX QDQ (int8 weights, {act8} "
                 f"activations, opset {_opset(int8_bytes)}), {len(int8_bytes)} bytes.\n"
                 f"Input '{INPUT_NAME}': float32 [1,1,{size},{size}], gray/255. {outputs}.\n"
                 f"Classes: {', '.join(classes)}"),
        classes=classes, size=size, mean=spec.mean, std=spec.std, arena_bytes=peak * ACTIVATION_BYTES[act8],
        input_quant=input_quantization(out / "model.int8.onnx", INPUT_NAME))


def _report(cfg: ExportConfig, meta: dict, md: dict, ev: EvalSet, cal, calib_images, fp32: Path, int8: Path,
            header: Path, s32: dict, s8: dict, peak: int, chosen_r: dict, max_diff: float) -> dict:
    """Figures of each file (size, accuracy, latency, RAM / flash): the body of ``export.json``."""
    size, act8, threads, runs = meta["size"], chosen_r["activations"], cfg.threads, cfg.latency_runs

    def figs(path, s, lat):
        d = {"file": Path(path).name, "bytes": Path(path).stat().st_size, "latency": lat}
        if ev.y is not None:
            d.update({"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]})
        return d

    lat32 = latency_ms(fp32, size, runs=runs, threads=threads)
    lat8 = latency_ms(int8, size, runs=runs, threads=threads)
    one = (lambda path, lat: lat if threads == 1 else latency_ms(path, size, runs=runs, threads=1))
    agree8 = float((s8["pred"] == s32["pred"]).mean())
    ms8 = one(int8, lat8)["median_ms"]
    files = [file_row(fp32, activations="float32", peak_elements=peak, latency_ms=one(fp32, lat32)["median_ms"],
                      agreement=1.0),
             file_row(int8, activations=act8, peak_elements=peak, latency_ms=ms8, agreement=agree8),
             file_row(header, activations=act8, peak_elements=peak, latency_ms=ms8, agreement=agree8,
                      flash_bytes=int8.stat().st_size)]
    return {
        "run_dir": cfg.run_dir, "arch": meta["arch"], "classes": meta["classes"], "size": size, "opset": OPSET,
        "input": md["input"], "evaluated_on": ev.source, "data": ev.paths,
        "n_eval": int(len(ev.images)), "calib": [str(s.path) for s in cal.sources] if cal is not None else None,
        "n_calib": int(len(calib_images)) if calib_images is not None else 0,
        "fp32": figs(fp32, s32, lat32),
        "int8": figs(int8, s8, lat8),
        "top1_agreement": agree8,
        "fp32_vs_torch_max_abs_diff": max_diff,
        "c_header": {"file": header.name, "bytes": header.stat().st_size, "symbol": "semgen_model_int8",
                     "tensor_arena_bytes": peak * ACTIVATION_BYTES[act8]},
        "files": files,
    }


def _quant_note(r: dict, use_qat: bool) -> str:
    """One line on what the INT8 file is, saying so when it is a fallback."""
    if r["strategy"] == "qat":
        return "QAT model: 8-bit activations with the ranges learnt in training, per-channel int8 weights"
    a16 = r["activations"] == "uint16"
    if use_qat:
        return (f"fallback: the QAT graph lost more than the tolerance against its fake-quant model; kept "
                f"post-training '{r['strategy']}'" + (" with 16-bit activations (A16W8, last resort)" if a16 else ""))
    if a16:
        return "A16W8 (last resort): no 8-bit-activation try was within tolerance; 16-bit activations, int8 weights"
    return f"post-training quantisation '{r['strategy']}', 8-bit activations"


def _opset(model_bytes: bytes) -> int:
    import onnx

    m = onnx.load_from_string(model_bytes)
    return max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
