"""ONNX export: FP32, INT8 (onnxruntime static QDQ quantisation), a C header, and their figures.

MobileNetV3's hard-swish and squeeze-excite layers are known to lose accuracy under post-training
quantisation. When INT8 loses more than ``tolerance`` accuracy against FP32, :func:`export_run`
tries other calibrations and keeps layer groups in float (chosen by measuring each group's effect),
and records every try in ``export.json``.
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
from .quantize import CALIBRATIONS, layer_groups, prepare_for_quantization, preprocessed_nodes, quantize_int8
from .metrics import confusion_matrix, metrics_from_confusion
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

    path = Path(path)
    model = model.eval().to(memory_format=torch.contiguous_format)
    hier = getattr(model, "hierarchy", None) is not None
    # the wrapper in eval mode: the exporter restores the mode it finds, and a wrapper left in training
    # mode would put the model back into it (BatchNorm statistics then drift on the next batch)
    module, outputs = (_WithGate(model).eval(), [OUTPUT_NAME, GATE_NAME]) if hier else (model, [OUTPUT_NAME])
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
def ort_session(path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
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


def _score(logits: np.ndarray, y: np.ndarray | None, k: int) -> dict:
    pred = logits.argmax(1)
    if y is None:
        return {"pred": pred}
    m = metrics_from_confusion(confusion_matrix(y, pred, k), [str(i) for i in range(k)])
    return {"pred": pred, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


# --------------------------------------------------------------------------------------------
def export_run(run_dir, calib, *, data=None, out=None, tolerance: float = 0.01, calib_max: int = 512,
               seed: int = 0, latency_runs: int = 300, threads: int = 1, auto_fix: bool = True,
               max_tries: int = 12, allow_a16w8: bool = True, progress: bool = False, qat: bool | None = None) -> dict:
    """Export a run: ``model.onnx``, ``model.int8.onnx``, ``model_int8.h`` and ``export.json``.

    Parameters
    ----------
    run_dir : path
        Run dir of ``semgen train`` (its best epoch) or a checkpoint.
    calib : path(s)
        Images for INT8 calibration (dataset dir / ImageFolder; labels unused); at most ``calib_max``
        are drawn (class-stratified order, ``seed``).
    data : path(s), optional
        Labelled images on which FP32 and INT8 are compared (accuracy, macro-F1, agreement). Without
        it the comparison runs on the calibration images.
    tolerance : float
        Largest accepted INT8 accuracy loss (0.01 = 1 point); beyond it the automatic fix runs.
    max_tries : int
        Most quantisations the automatic fix may run (each one is calibrated and evaluated).
    allow_a16w8 : bool
        Let the fix use 16-bit activations (INT8 weights, same size; accurate, but onnxruntime on
        CPU runs it several times slower than 8-bit activations).
    qat : bool or None
        None: a QAT-trained run (``semgen train --qat``) is exported from its QAT model, any other
        by post-training quantisation. True: require the QAT model (a one-line error for a run that
        was not QAT-trained). False: post-training quantisation even for a QAT run. The QAT INT8
        graph is compared with the run's own fake-quant model; only if it loses more than
        ``tolerance`` against it does the post-training fix run (needs ``calib``), A16W8 last.
    """
    from .qat import checkpoint_is_qat, export_qat_onnx, load_qat_run

    # checked first: 0 calibration images or 0 timed runs failed deep inside numpy (issue 14)
    for flag, v in (("--calib-max", calib_max), ("--latency-runs", latency_runs)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise SemgenError(f"{flag} must be a positive integer, got {v}")
    if not np.isfinite(tolerance):  # nan compared False with every loss; a negative one forces every fix (tests)
        raise SemgenError(f"--tolerance must be a finite number, got {tolerance}")
    is_qat_run = checkpoint_is_qat(run_dir)
    if qat and not is_qat_run:
        raise SemgenError(f"{run_dir} was not QAT-trained, so there is no QAT model to export; train it with "
                          "'semgen train --qat' (e.g. --init RUN --qat) or export without --qat")
    use_qat = is_qat_run if qat is None else bool(qat)
    if calib is None and not use_qat:
        raise SemgenError("--calib is required: post-training INT8 needs calibration images")
    if calib is None and data is None:
        raise SemgenError("a QAT export without --calib needs --data (images to compare INT8 with FP32 on)")
    model, meta = load_run(run_dir)
    out = Path(out) if out is not None else Path(meta["run_dir"])
    check_writable_dir(out)  # a file or read-only --out: one line, before any image is read
    out.mkdir(parents=True, exist_ok=True)
    size, classes = meta["size"], meta["classes"]
    k = len(classes)
    md = {"classes": classes, "size": size, "arch": meta["arch"],
          "input": f"float32 [N,1,{size},{size}] = gray/255; normalisation inside the model",
          "checkpoint": Path(meta["checkpoint"]).name}

    if use_qat:
        md["qat"] = True
    from .calibrate import read_calibration

    cal_rec = read_calibration(Path(meta["run_dir"]))
    if cal_rec:
        md["temperature"] = float(cal_rec["temperature"])  # predict applies it to the logits
    if calib is not None:
        cal = load_image_set(calib, size=size, progress=progress, classes=None)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(cal))[:calib_max]
        calib_images = cal.images[torch.as_tensor(np.sort(order))]
        if not len(calib_images):
            raise SemgenError(f"--calib {calib}: no image could be read for calibration")
    else:
        cal, calib_images = None, None
    if data is not None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="leaving out images of classes")
            ev = load_image_set(data, size=size, classes=classes, allow_unknown=True, progress=progress)
        ev_images, ev_y, ev_src = ev.images, ev.labels.numpy(), "data"
        k_eval = len(ev.classes)
    else:
        ev_images, ev_src = calib_images, "calib"
        ev_y, k_eval = None, k
        if set(cal.classes) <= set(classes):
            idx = {c: i for i, c in enumerate(classes)}
            ev_y = np.array([idx[cal.classes[j]] for j in cal.labels[torch.as_tensor(np.sort(order))].tolist()])

    fp32 = export_onnx(model, size, out / "model.onnx", metadata=md)
    pre = prepare_for_quantization(fp32, out / ".model.pre.onnx")
    with torch.no_grad():
        t_logits = model(ev_images[:64].unsqueeze(1).float() / 255.0).numpy()
    sess32 = ort_session(fp32, threads)
    l32 = ort_logits(sess32, ev_images)
    max_diff = float(np.abs(l32[:64] - t_logits).max())
    s32 = _score(l32, ev_y, k_eval)

    def try_int8(calibration, exclude, label, activations="uint8"):
        path = out / ".model.int8.try.onnx"
        quantize_int8(pre, path, calib_images, calibration=calibration, nodes_to_exclude=exclude, metadata=md,
                      preprocessed=True, activations=activations)
        l8 = ort_logits(ort_session(path, threads), ev_images)
        s8 = _score(l8, ev_y, k_eval)
        r = {"strategy": label, "calibration": calibration, "activations": activations, "excluded_nodes": len(exclude),
             "agreement": float((s8["pred"] == s32["pred"]).mean()), "bytes": path.stat().st_size}
        if ev_y is not None:
            r.update({"accuracy": s8["accuracy"], "macro_f1": s8["macro_f1"],
                      "accuracy_drop": s32["accuracy"] - s8["accuracy"]})
        return r, path.read_bytes(), l8, list(exclude)

    def ok(r):
        drop = r.get("accuracy_drop", 1 - r["agreement"])
        return drop <= tolerance + 1e-12

    def rank(r):
        return (ok(r), -r.get("accuracy_drop", 0.0), r["agreement"], -r["excluded_nodes"])

    tries: list[dict] = []

    def attempt(calibration, exclude, label, group=None, activations="uint8"):
        """Run one quantisation if the budget allows; returns it (or None) and keeps the best."""
        nonlocal best
        if len(tries) >= max_tries:
            return None
        t = try_int8(calibration, exclude, label, activations)
        if group:
            t[0]["group"] = group
        tries.append(t[0])
        if best is None or rank(t[0]) > rank(best[0]):
            best = t
        return t

    best = None
    qat_info = None
    if use_qat:
        # The QAT graph, judged against the run's own fake-quant model (what it was trained as).
        qmodel, _ = load_qat_run(run_dir)
        with torch.no_grad():
            lq = torch.cat([qmodel(ev_images[i:i + 64].unsqueeze(1).float() / 255.0)
                            for i in range(0, len(ev_images), 64)]).numpy()
        sq = _score(lq, ev_y, k_eval)
        path = out / ".model.int8.try.onnx"
        export_qat_onnx(qmodel, size, path, metadata=md)
        l8 = ort_logits(ort_session(path, threads), ev_images)
        s8q = _score(l8, ev_y, k_eval)
        r = {"strategy": "qat", "calibration": "qat (trained ranges)", "activations": "uint8", "excluded_nodes": 0,
             "agreement": float((s8q["pred"] == s32["pred"]).mean()), "bytes": path.stat().st_size,
             "agreement_with_fake_quant": float((s8q["pred"] == sq["pred"]).mean()),
             "max_abs_logit_diff_vs_fake_quant": float(np.abs(l8 - lq).max()) if len(lq) else 0.0}
        if ev_y is not None:
            r.update({"accuracy": s8q["accuracy"], "macro_f1": s8q["macro_f1"],
                      "fake_quant_accuracy": sq["accuracy"], "fake_quant_macro_f1": sq["macro_f1"],
                      "accuracy_drop": sq["accuracy"] - s8q["accuracy"]})
        else:
            r["accuracy_drop"] = 1.0 - r["agreement_with_fake_quant"]
        qat_info = {k2: r[k2] for k2 in r if k2 not in ("strategy", "calibration", "activations", "excluded_nodes")}
        tries.append(r)
        best = (r, path.read_bytes(), l8, [])
    if use_qat and not ok(best[0]):
        if auto_fix and calib_images is not None:
            warnings.warn(f"the QAT INT8 graph loses {best[0]['accuracy_drop']:.3f} against its fake-quant model "
                          f"(tolerance {tolerance}); trying post-training quantisation as well", stacklevel=2)
        else:
            auto_fix = False  # nothing else to try: keep the QAT graph and say what it lost
    if not use_qat or (auto_fix and not ok(best[0])):
        attempt("minmax", [], "minmax")
    if auto_fix and not ok(best[0]):
        # 1. Other calibrations: outliers in hard-swish activations stretch min-max ranges.
        for cal_name in ("percentile", "entropy"):
            attempt(cal_name, [], cal_name)
            if ok(best[0]):
                break
    if auto_fix and not ok(best[0]):
        # 2. Sensitivity: keep one group of layers in float at a time, then combine the helpful ones.
        base_cal = best[0]["calibration"] if best[0]["calibration"] in CALIBRATIONS else "minmax"
        groups = layer_groups(preprocessed_nodes(pre, prepared=True))
        gains = []
        for name, nodes in groups.items():
            t = attempt(base_cal, nodes, f"{base_cal}+float:{name}", name)
            if t is None or ok(best[0]):
                break
            gains.append((rank(t[0]), name))
        # 3. 16-bit activations, INT8 weights (same size): the fix when the error is spread over
        #    the activations of the whole network rather than sitting in a few layers.
        if allow_a16w8 and not ok(best[0]):
            attempt(base_cal, [], f"{base_cal}+a16w8", activations="uint16")
        gains.sort(reverse=True)
        chosen: list[str] = []
        for _, name in gains:
            if ok(best[0]):
                break
            chosen.append(name)
            if len(chosen) < 2:
                continue
            nodes = sorted({n for c in chosen for n in groups[c]})
            if attempt(base_cal, nodes, f"{base_cal}+float:{'+'.join(chosen)}", "+".join(chosen)) is None:
                break
    (out / ".model.int8.try.onnx").unlink(missing_ok=True)
    pre.unlink(missing_ok=True)
    chosen_r, int8_bytes, l8, excluded = best
    write_bytes_atomic(out / "model.int8.onnx", int8_bytes)
    s8 = _score(l8, ev_y, k_eval)
    peak = activation_peak(fp32)["peak_elements"]
    act8 = chosen_r["activations"]
    spec = get_arch(meta["arch"])
    hier = meta.get("heads") is not None
    outputs = (f"Output '{OUTPUT_NAME}': leaf log-probabilities [1,{k}] (softmax gives the class probabilities); "
               f"output '{GATE_NAME}': gate probabilities [1,{len(meta['heads']['gate'])}] "
               f"({', '.join(meta['heads']['gate'])})" if hier else f"Output '{OUTPUT_NAME}': logits [1,{k}]")
    header = write_c_header(
        int8_bytes, out / "model_int8.h",
        comment=(f"semgen INT8 classifier ({meta['arch']}), ONNX QDQ (int8 weights, {act8} "
                 f"activations, opset {_opset(int8_bytes)}), {len(int8_bytes)} bytes.\n"
                 f"Input '{INPUT_NAME}': float32 [1,1,{size},{size}], gray/255. {outputs}.\n"
                 f"Classes: {', '.join(classes)}"),
        classes=classes, size=size, mean=spec.mean, std=spec.std, arena_bytes=peak * ACTIVATION_BYTES[act8],
        input_quant=input_quantization(out / "model.int8.onnx", INPUT_NAME))

    def figs(path, s, lat):
        d = {"file": Path(path).name, "bytes": Path(path).stat().st_size, "latency": lat}
        if ev_y is not None:
            d.update({"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]})
        return d

    lat32 = latency_ms(fp32, size, runs=latency_runs, threads=threads)
    lat8 = latency_ms(out / "model.int8.onnx", size, runs=latency_runs, threads=threads)
    one = (lambda path, lat: lat if threads == 1 else latency_ms(path, size, runs=latency_runs, threads=1))
    agree8 = float((s8["pred"] == s32["pred"]).mean())
    ms8 = one(out / "model.int8.onnx", lat8)["median_ms"]
    files = [file_row(fp32, activations="float32", peak_elements=peak, latency_ms=one(fp32, lat32)["median_ms"],
                      agreement=1.0),
             file_row(out / "model.int8.onnx", activations=act8, peak_elements=peak, latency_ms=ms8, agreement=agree8),
             file_row(header, activations=act8, peak_elements=peak, latency_ms=ms8, agreement=agree8,
                      flash_bytes=len(int8_bytes))]
    res = {
        "run_dir": str(run_dir), "arch": meta["arch"], "classes": classes, "size": size, "opset": OPSET,
        "input": md["input"], "evaluated_on": ev_src,
        "data": [str(s.path) for s in ev.sources] if data is not None else None,
        "n_eval": int(len(ev_images)), "calib": [str(s.path) for s in cal.sources] if cal is not None else None,
        "n_calib": int(len(calib_images)) if calib_images is not None else 0,
        "fp32": figs(fp32, s32, lat32),
        "int8": figs(out / "model.int8.onnx", s8, lat8),
        "top1_agreement": agree8,
        "fp32_vs_torch_max_abs_diff": max_diff,
        "c_header": {"file": header.name, "bytes": header.stat().st_size, "symbol": "semgen_model_int8",
                     "tensor_arena_bytes": peak * ACTIVATION_BYTES[act8]},
        "files": files,
        "quantization": {
            "format": "QDQ", "weights": "int8 per-channel", "activations": f"{chosen_r['activations']} per-tensor",
            "int8_opset": _opset(int8_bytes),
            "calibration": chosen_r["calibration"], "strategy": chosen_r["strategy"],
            "nodes_kept_float": excluded, "tolerance": tolerance,
            "auto_fixed": len(tries) > 1, "tries": tries, "qat": qat_info,
            "note": _quant_note(chosen_r, use_qat),
        },
        "machine": {"cpu": platform.processor() or platform.machine(), "onnxruntime": _ort_version(),
                    "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    }
    if ev_y is not None:
        res["accuracy_drop"] = s32["accuracy"] - s8["accuracy"]
    if hier:
        from .cascade import cascade_report

        res["cascade"] = cascade_report(model, size, out, md, ev_images, s32["pred"], latency_runs)
        files += res["cascade"].pop("files")
    write_bytes_atomic(out / "export.json", (json.dumps(res, indent=2) + "\n").encode())
    return res


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
