"""Post-training INT8 quantisation with onnxruntime (static, QDQ) and the layer groups the
automatic fix of :func:`semgen.classifier.export.export_run` may keep in float."""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import torch

from ..imageio import write_bytes_atomic


class _Reader:
    """onnxruntime CalibrationDataReader over uint8 images.

    One image per call: the histogram calibrators (percentile, entropy) need every batch to have
    the same shape, and a model this small calibrates fast enough image by image.
    """

    def __init__(self, images: torch.Tensor, batch: int = 1):
        self.images, self.batch, self.i = images, batch, 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        x = self.images[self.i:self.i + self.batch].unsqueeze(1).float().div(255.0).numpy()
        self.i += self.batch
        from .export import INPUT_NAME

        return {INPUT_NAME: x}

    def rewind(self):
        self.i = 0


CALIBRATIONS = {
    "minmax": ("MinMax", {}),
    "percentile": ("Percentile", {"CalibPercentile": 99.999}),
    "entropy": ("Entropy", {}),
}


def prepare_for_quantization(fp32_path, out_path) -> Path:
    """onnxruntime's pre-processing (shape inference, graph optimisation) with every node named.

    The optimiser splits HardSwish into HardSigmoid + Mul and leaves the new nodes unnamed; they
    get names here so that they can be kept in float (``nodes_to_exclude`` works by name).
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        m = onnx.load(str(pre))
    used = {n.name for n in m.graph.node if n.name}
    for i, n in enumerate(m.graph.node):
        if not n.name:
            # named after the tensor it reads, so a hard-swish's pieces carry the layer's name
            base = f"{(n.input[0] if n.input else 'node').rsplit('/', 1)[0]}/{n.op_type}_{i}"
            n.name = base if base not in used else f"{base}_{i}"
            used.add(n.name)
    write_bytes_atomic(out_path, m.SerializeToString())
    return Path(out_path)


def quantize_int8(fp32_path, out_path, calib_images: torch.Tensor, *, calibration: str = "minmax",
                  nodes_to_exclude: list[str] | None = None, metadata: dict | None = None,
                  preprocessed: bool = False, activations: str = "uint8") -> Path:
    """Static QDQ quantisation (per-channel INT8 weights, UINT8 activations) calibrated on images.

    ``activations="uint16"`` keeps the INT8 weights (and the file size) but quantises activations
    to 16 bits (A16W8; onnxruntime raises the opset to 21 for it).

    ``preprocessed``: ``fp32_path`` already went through :func:`prepare_for_quantization` (node
    names in ``nodes_to_exclude`` refer to that graph).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method, extra = CALIBRATIONS[calibration]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(fp32_path) if preprocessed else prepare_for_quantization(fp32_path, Path(tmp) / "pre.onnx")
        qpath = Path(tmp) / "q.onnx"
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
            warnings.simplefilter("ignore")  # the calibrators print progress and warn; keep stdout for results
            quantize_static(
                str(pre), str(qpath), _Reader(calib_images), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type={"uint8": QuantType.QUInt8, "uint16": QuantType.QUInt16}[activations],
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method), nodes_to_exclude=nodes_to_exclude or [],
                extra_options=dict(extra),
            )
        m = onnx.load(str(qpath))
    from .export import _set_metadata, compact_names

    compact_names(m)
    _set_metadata(m, metadata or {})
    write_bytes_atomic(out_path, m.SerializeToString())
    return Path(out_path)


def preprocessed_nodes(path, *, prepared: bool = False) -> list[tuple[str, str]]:
    """``(name, op_type)`` of the nodes the quantiser sees: those of ``path`` if it comes from
    :func:`prepare_for_quantization` (``prepared``), else of the FP32 model prepared first."""
    import onnx

    if prepared:
        m = onnx.load(str(path))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            m = onnx.load(str(prepare_for_quantization(path, Path(tmp) / "pre.onnx")))
    return [(n.name, n.op_type) for n in m.graph.node]


def layer_groups(nodes: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Candidate groups of nodes to keep in float, by what they are in a MobileNet."""
    groups: dict[str, list[str]] = {
        "squeeze_excite": [n for n, t in nodes if "/se/" in n or ".se." in n],
        "hard_swish": [n for n, t in nodes if t in ("HardSigmoid", "HardSwish", "Mul") and "/se/" not in n],
        "stem": [n for n, t in nodes if t == "Conv"][:1],
        "head": [n for n, t in nodes if t in ("Gemm", "MatMul", "GlobalAveragePool")]
                + [n for n, t in nodes if t == "Conv" and "conv_head" in n],
    }
    conv = [n for n, t in nodes if t == "Conv"]
    if len(conv) > 4:
        groups["first_block"] = conv[1:3]
    return {k: sorted(set(v)) for k, v in groups.items() if v}


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantiser logs notices (e.g. the opset upgrade for 16-bit) on the root logger."""
    import logging

    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(old)
