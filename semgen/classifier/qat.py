"""Quantisation-aware training (QAT) and its ONNX QDQ export.

Why a hand-made fake-quantisation instead of ``torch.ao.quantization``: on torch 2.13 the eager /
FX QAT flows convert to ``quantized::`` kernels that the ONNX exporter does not lower to a plain
QDQ graph, and the PT2E flow lives in ``torchao`` (not a dependency). The two fake-quant primitives
``torch.fake_quantize_per_tensor_affine`` / ``torch.fake_quantize_per_channel_affine`` do export
(TorchScript exporter, opset 17) to ``QuantizeLinear`` / ``DequantizeLinear`` pairs, the format
``semgen export`` already writes for post-training INT8, so the QAT model is a small wrapper around
the timm network:

- every Conv2d is folded with the BatchNorm that follows it (running statistics frozen: QAT is a
  fine-tuning phase, and a folded conv is what the INT8 graph runs) and with the activation that
  follows (``BatchNormAct2d``'s, or a following activation module), and becomes a :class:`QConv2d`:
  per-channel symmetric INT8 weights, a bias rounded to the int32 grid ``s_in * s_w`` that
  onnxruntime uses, and an 8-bit (uint8, per-tensor, EMA min/max) quantiser on its output;
- every Linear becomes a :class:`QLinear` (same weight / bias rule);
- a conv or linear whose input does not already come from a quantiser quantises it itself (the
  network input, pooled features, squeeze-excite products);
- every residual block (timm's ``has_skip``) quantises the sum it outputs.

So every tensor that reaches a conv, a linear or a residual add is on an 8-bit grid, and the export
(:func:`export_qat_onnx`) stores weights as int8 and biases as int32 initialisers behind
``DequantizeLinear``. Activation functions are kept as they are (hard-swish and squeeze-excite are
quantised on their outputs like any other tensor); learning through the rounding is what QAT adds.

A QAT checkpoint stays loadable by :func:`semgen.classifier.checkpoint.load_run`: its state dict is
the plain architecture's, with the folded weights in the convs and each BatchNorm set to the
identity plus the folded bias; the quantiser ranges sit beside it in ``qat.safetensors`` (under
the key ``qat`` of a ``.pt`` checkpoint of an earlier version).
``load_run`` thus gives the float model without rounding; :func:`load_qat_run` the fake-quant one.
"""

from __future__ import annotations

from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BeforeValidator, Field
from torch import nn

from ..configs import Config, Int, Number, PositiveInt
from ..errors import SemgenError
from ..imageio import write_bytes_atomic
from .padding import drop_dead_nodes, fold_pads_into_convs, same_conv2d

QAT_FORMAT_VERSION = 1
#: Activation modules folded into the conv before it (the quantiser then sits after them, as an
#: integer runtime fuses conv + activation).
_ACTS = {"ReLU", "ReLU6", "Hardswish", "HardSwish", "Hardsigmoid", "HardSigmoid", "SiLU", "Swish", "Sigmoid",
         "GELU", "Tanh", "LeakyReLU", "HardSwishMe", "HardSigmoidMe", "SwishMe"}


def _weight_bits(v):
    if isinstance(v, bool) or v not in (7, 8):
        raise ValueError("must be 8 or 7")
    return int(v)


class QATConfig(Config):
    """Options of ``semgen train --qat`` (a :class:`~semgen.configs.Config`).

    Attributes
    ----------
    epochs : int or None
        Epochs of the QAT phase, the last ones of the run. Default: all of them when the run starts
        from a trained checkpoint (``--init RUN``), else ``max(1, round(0.3 * epochs))`` after an
        FP32 phase (a network without BatchNorm does not train well from scratch).
    lr : float or None
        Peak learning rate of the QAT phase (its own short warm-up and cosine decay); default
        ``--lr`` / 10 after an FP32 phase, ``--lr`` when the whole run is QAT.
    calib_batches : int
        Training batches (no gradient) that set the quantiser ranges before the first QAT step.
    momentum : float
        EMA momentum of the activation ranges.
    weight_bits : {8, 7}
        8: weights on the full symmetric int8 grid (+-127), what an MCU / NPU runs. 7: +-63 in int8
        storage (onnxruntime's ``reduce_range``): onnxruntime's u8s8 kernels on x86 CPUs without
        VNNI (AVX2 only) add pairs of u8 x s8 products in int16 and saturate with full-range
        weights; with 7-bit weights they are exact.

    Examples
    --------
    >>> QATConfig(epochs=2, weight_bits=7).to_dict()
    {'epochs': 2, 'lr': None, 'calib_batches': 8, 'momentum': 0.01, 'weight_bits': 7}
    >>> QATConfig(weight_bits=4)
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: --qat-weight-bits must be 8 or 7, got 4 (QATConfig.weight_bits)
    """

    flags = {"epochs": "--qat-epochs", "lr": "--qat-lr", "weight_bits": "--qat-weight-bits",
             "calib_batches": "qat calib_batches", "momentum": "qat momentum"}

    epochs: Optional[PositiveInt] = None
    lr: Optional[Annotated[Number, Field(gt=0)]] = None
    calib_batches: Annotated[Int, Field(ge=0)] = 8
    momentum: Annotated[Number, Field(gt=0, le=1)] = 0.01
    weight_bits: Annotated[int, BeforeValidator(_weight_bits)] = 8


# --------------------------------------------------------------------------------------------
# Modules
class ActQuant(nn.Module):
    """Per-tensor affine uint8 fake quantisation with an EMA min/max range.

    In training mode the range follows the batches (the first batch sets it); in eval mode it is
    fixed. The range always contains 0, so zero padding and ReLU zeros are exact. The output
    carries its scale as a Python attribute (``_sg_scale``): a conv that receives it does not
    quantise again and uses the scale for its int32 bias.
    """

    def __init__(self, momentum: float = 0.01):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("min_val", torch.zeros(()))
        self.register_buffer("max_val", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.enabled = True

    def qparams(self) -> tuple[float, int]:
        lo, hi = min(float(self.min_val), 0.0), max(float(self.max_val), 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        scale = float(np.float32(scale))  # the float32 the ONNX graph stores
        zp = int(np.clip(np.rint(-lo / scale), 0, 255))
        return scale, zp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.detach().amin().float(), x.detach().amax().float()
                if not bool(self.initialized):
                    self.min_val.copy_(lo)
                    self.max_val.copy_(hi)
                    self.initialized.fill_(True)
                else:
                    self.min_val.lerp_(lo, self.momentum)
                    self.max_val.lerp_(hi, self.momentum)
        if not self.enabled:
            return x
        scale, zp = self.qparams()
        y = torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 255)
        y._sg_scale = scale
        return y


# The largest |bias| / (s_in * s_w) a channel may have: the int32 bias grid with a factor 2 of
# headroom for the accumulated products the runtime adds to it in the same int32 accumulator.
_BIAS_QMAX = float(2**30)


def _weight_scales(w: torch.Tensor, wmax: int = 127, bias: torch.Tensor | None = None,
                   s_in: float | None = None) -> torch.Tensor:
    """Per-output-channel symmetric scales (``max|w| / wmax``), detached (no gradient to them).

    With ``bias`` and the input scale ``s_in``, a channel's scale is raised where its bias would not
    fit the int32 grid ``s_in * s_w``: a channel with (near) zero weights after BatchNorm folding
    and a non-zero bias. Its weights round to 0 either way; without the floor the exported bias
    saturates and the INT8 graph departs from the fake-quantised one (onnxruntime's quantiser
    raises the weight scale the same way).
    """
    s = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / float(wmax)
    if bias is not None and s_in is not None:
        # in float64, then up by a few float32 ulps: a floor rounded down leaves a bias just off the grid
        floor = bias.detach().abs().double() / (float(s_in) * _BIAS_QMAX) * (1 + 2**-20)
        s = torch.maximum(s, floor.to(s.dtype))
    if torch.onnx.is_in_onnx_export():
        # a fresh tensor, not a traced op: the exporter writes it as a constant the lowering folds
        s = torch.from_numpy(s.numpy().copy())
    return s


def _fq_weight(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    # [-128, 127] is what the ONNX exporter accepts; with scale max|w|/127 nothing reaches -128,
    # so the grid is symmetric as onnxruntime's per-channel weights are.
    zero = torch.zeros(len(s), dtype=torch.int32, device=s.device)  # on the weights' device (a GPU run)
    return torch.fake_quantize_per_channel_affine(w, s, zero, 0, -128, 127)


def _fq_bias(b: torch.Tensor | None, s_in: float, s_w: torch.Tensor):
    """The bias on the int32 grid ``s_in * s_w`` (straight-through gradient). Not during ONNX
    export: there the float bias is exported and :func:`lower_qdq` quantises it the same way."""
    if b is None or torch.onnx.is_in_onnx_export():
        return b
    s = (s_w * np.float32(s_in)).to(b.dtype)
    return b + (torch.round(b / s) * s - b).detach()


class _QBase(nn.Module):
    def _input(self, x):
        s = getattr(x, "_sg_scale", None)
        if s is None:
            x = self.in_q(x)
            s = getattr(x, "_sg_scale", None)
        return x, s


class QConv2d(_QBase):
    """A Conv2d with its BatchNorm and activation folded in, fake-quantised (see the module doc)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module | None, act: nn.Module | None, momentum: float = 0.01,
                 wmax: int = 127):
        super().__init__()
        self.wmax = int(wmax)
        w = conv.weight.detach().clone()
        b = conv.bias.detach().clone() if conv.bias is not None else None
        if bn is not None:
            # frozen statistics: y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta
            k = (bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)) / torch.sqrt(
                bn.running_var + bn.eps)
            w = w * k.reshape(-1, 1, 1, 1)
            beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(k)
            b = beta + ((b if b is not None else 0.0) - bn.running_mean) * k
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(b) if b is not None else None
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.same_pad = type(conv).__name__ == "Conv2dSame"  # timm's TF "SAME" padding (efficientnet_lite0)
        self.act = act if act is not None else nn.Identity()
        self.in_q = ActQuant(momentum)
        self.out_q = ActQuant(momentum)

    def forward(self, x):
        x, s_in = self._input(x)
        s_w = _weight_scales(self.weight, self.wmax, self.bias, s_in)
        w = _fq_weight(self.weight, s_w)
        b = _fq_bias(self.bias, s_in, s_w)
        if self.same_pad:  # constant pads (semgen.classifier.padding); lower_qdq folds a Pad into the conv
            y = same_conv2d(x, w, b, self.stride, self.dilation, self.groups)
        else:
            y = F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)
        return self.out_q(self.act(y))


class QLinear(_QBase):
    """A Linear with fake-quantised input, weights (per channel) and bias; its output stays float
    (the logits)."""

    def __init__(self, lin: nn.Linear, momentum: float = 0.01, wmax: int = 127):
        super().__init__()
        self.wmax = int(wmax)
        self.weight = nn.Parameter(lin.weight.detach().clone())
        self.bias = nn.Parameter(lin.bias.detach().clone()) if lin.bias is not None else None
        self.in_q = ActQuant(momentum)

    def forward(self, x):
        x, s_in = self._input(x)
        s_w = _weight_scales(self.weight, self.wmax, self.bias, s_in)
        return F.linear(x, _fq_weight(self.weight, s_w), _fq_bias(self.bias, s_in, s_w))


def _block_hook(module, inputs, output):
    return module.sg_out_q(output)


# --------------------------------------------------------------------------------------------
# Conversion
def _is_bn(m) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def _is_act(m) -> bool:
    return type(m).__name__ in _ACTS


def prepare_qat(model, *, momentum: float = 0.01, weight_bits: int = 8):
    """Turn a :class:`SemClassifier` into its QAT form, in place; returns it.

    Records ``model.qat_map``: for each folded conv, its name, the BatchNorm folded into it and
    whether the conv had a bias (what :func:`plain_state_dict` needs to write the plain layout).
    """
    if getattr(model, "qat_map", None) is not None:
        return model
    if weight_bits not in (7, 8):
        raise SemgenError(f"--qat-weight-bits must be 8 or 7, got {weight_bits}")
    wmax = 2 ** (weight_bits - 1) - 1
    fold = []
    for parent_name, parent in list(model.named_modules()):
        children = list(parent.named_children())
        i = 0
        while i < len(children):
            name, child = children[i]
            if isinstance(child, nn.Conv2d):
                j, bn, act, absorbed = i + 1, None, None, []
                while j < len(children) and isinstance(children[j][1], nn.Identity):
                    j += 1
                if j < len(children) and _is_bn(children[j][1]):
                    bn_name, bn = children[j]
                    absorbed.append(bn_name)
                    act = getattr(bn, "act", None)  # timm's BatchNormAct2d applies its activation
                    if act is not None and isinstance(act, nn.Identity):
                        act = None
                    j += 1
                    while j < len(children) and isinstance(children[j][1], nn.Identity):
                        j += 1
                if act is None and j < len(children) and _is_act(children[j][1]):
                    act_name, act = children[j]
                    absorbed.append(act_name)
                q = QConv2d(child, bn, act, momentum, wmax)
                setattr(parent, name, q)
                for a in absorbed:
                    setattr(parent, a, nn.Identity())
                full = f"{parent_name}.{name}" if parent_name else name
                bn_full = (f"{parent_name}.{absorbed[0]}" if parent_name else absorbed[0]) if bn is not None else None
                fold.append({"conv": full, "bn": bn_full, "conv_bias": child.bias is not None})
            elif isinstance(child, nn.Linear):
                setattr(parent, name, QLinear(child, momentum, wmax))
            i += 1
    for m in model.modules():
        if getattr(m, "has_skip", False) and not hasattr(m, "sg_out_q"):
            m.sg_out_q = ActQuant(momentum)
            m.register_forward_hook(_block_hook)
    model.qat_map = fold
    model.qat_weight_bits = weight_bits
    return model


def set_observers(model, enabled: bool = True) -> None:
    """Switch fake quantisation on or off (ranges keep being observed in training mode)."""
    for m in model.modules():
        if isinstance(m, ActQuant):
            m.enabled = enabled


def is_qat(model) -> bool:
    return getattr(model, "qat_map", None) is not None


def qat_state(model) -> dict:
    """The quantiser buffers (ranges) of a QAT model, by name."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.endswith(("min_val", "max_val", "initialized"))}


def plain_state_dict(model) -> dict:
    """The state dict of the plain architecture equivalent to the QAT model without rounding:
    folded weights in the convs, each folded BatchNorm the identity plus the folded bias."""
    qs = model.state_dict()
    out = {}
    folded = {f["conv"]: f for f in model.qat_map}
    for k, v in qs.items():
        if k.endswith(("min_val", "max_val", "initialized")):
            continue
        out[k] = v.detach().clone().contiguous()
    for name, f in folded.items():
        b = out.pop(f"{name}.bias", None)
        if f["bn"] is not None:
            c = out[f"{name}.weight"].shape[0]
            bn = f["bn"]
            # sqrt(1 + eps) / sqrt(1 + eps) is exactly 1 when the fold recomputes it
            eps = _bn_eps(model, bn)
            out[f"{bn}.weight"] = torch.sqrt(torch.ones(c) + eps)
            out[f"{bn}.bias"] = b if b is not None else torch.zeros(c)
            out[f"{bn}.running_mean"] = torch.zeros(c)
            out[f"{bn}.running_var"] = torch.ones(c)
            out[f"{bn}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
            if f["conv_bias"]:
                out[f"{name}.bias"] = torch.zeros(c)
        elif b is not None:
            out[f"{name}.bias"] = b
    # absorbed activation modules and block quantisers hold no tensors of the plain layout
    return out


def _bn_eps(model, bn_name: str) -> float:
    return float(getattr(model, "qat_bn_eps", {}).get(bn_name, 1e-5))


def _record_bn_eps(model) -> dict:
    return {n: float(m.eps) for n, m in model.named_modules() if _is_bn(m)}


def to_qat(model, *, momentum: float = 0.01, weight_bits: int = 8):
    """:func:`prepare_qat` that remembers each BatchNorm's eps (for :func:`plain_state_dict`)."""
    eps = _record_bn_eps(model)
    model = prepare_qat(model, momentum=momentum, weight_bits=weight_bits)
    model.qat_bn_eps = eps
    return model


def qat_record(model) -> dict:
    """What a checkpoint keeps of a QAT model besides the plain state dict: the quantiser ranges
    (``state``), the folds, each BatchNorm's eps and the weight bits
    (:func:`semgen.classifier.checkpoint.save_checkpoint` writes them to ``qat.safetensors``)."""
    return {"version": QAT_FORMAT_VERSION, "state": qat_state(model), "fold": list(model.qat_map),
            "bn_eps": dict(getattr(model, "qat_bn_eps", {})), "weight_bits": model.qat_weight_bits}


def checkpoint_is_qat(run_or_ckpt, which: str | None = None) -> bool:
    """Whether a run dir / checkpoint was QAT-trained (its checkpoint holds quantiser ranges)."""
    from .checkpoint import read_checkpoint

    return "qat" in read_checkpoint(run_or_ckpt, which)


def load_qat_run(run_dir, *, which: str | None = None):
    """Load a QAT run as its fake-quant model (eval mode) and ``load_run``'s meta.

    Raises a one-line :class:`SemgenError` when the run was not QAT-trained.
    """
    from pathlib import Path

    from .checkpoint import load_run, read_checkpoint

    ckpt = read_checkpoint(run_dir, which)
    p = ckpt["path"]
    if "qat" not in ckpt:
        raise SemgenError(f"{run_dir} was not QAT-trained (no quantiser ranges in {Path(ckpt['path']).name}); "
                          "train it with 'semgen train --qat' (e.g. --init RUN --qat) or export it without --qat")
    model, meta = load_run(p)
    model = prepare_qat(model, weight_bits=int(ckpt["qat"].get("weight_bits", 8)))
    model.qat_bn_eps = dict(ckpt["qat"].get("bn_eps", {}))
    missing = model.load_state_dict(ckpt["qat"]["state"], strict=False)
    want = set(qat_state(model))
    if set(ckpt["qat"]["state"]) != want:
        raise SemgenError(f"{ckpt['path']}: its quantiser ranges do not fit the QAT form of '{meta['arch']}' "
                          f"({len(want ^ set(ckpt['qat']['state']))} differ)")
    del missing
    model.eval()
    meta["qat"] = True
    return model, meta


# --------------------------------------------------------------------------------------------
# ONNX
def export_qat_onnx(model, size: int, path, *, metadata: dict | None = None):
    """Export a QAT model to an INT8 ONNX QDQ file: int8 weights (per channel) and int32 biases as
    initialisers, uint8 activations; returns the path."""
    import tempfile
    from pathlib import Path

    import onnx

    from .export import _set_metadata, compact_names, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(model, size, Path(tmp) / "qat.onnx", metadata=None)
        m = onnx.load(str(raw))
    lower_qdq(m)
    compact_names(m)
    _set_metadata(m, metadata or {})
    onnx.checker.check_model(m)
    write_bytes_atomic(path, m.SerializeToString())
    return Path(path)


def lower_qdq(m) -> None:
    """Fold ``QuantizeLinear`` of constant weights into int8 initialisers and put every Conv / Gemm
    bias behind an int32 ``DequantizeLinear`` (scale ``s_in * s_w``), as onnxruntime's quantiser
    does, so runtimes see the standard QDQ patterns and the file stores 1 byte per weight.

    The file stores nothing it can derive (its bytes are the edge model's flash): a bias's scale is
    a ``Mul`` of the two scales it is made of (runtimes fold it at load), and the all-zero zero
    points of the biases and of the conv weights are left out (ONNX's default is 0). That is 12 %
    of the edge student's file (583 -> 515 kB), with the same fused integer graph and the same
    outputs bit for bit in onnxruntime. A Gemm keeps its weights' zero point: without it
    onnxruntime 1.32 leaves the Gemm in float."""
    import onnx
    from onnx import helper, numpy_helper

    from .deploy import graph_constants

    g = m.graph

    def axis_of(n, default=1):
        for a in n.attribute:
            if a.name == "axis":
                return a.i
        return default

    def bcast(v, ndim, axis):
        v = np.asarray(v)
        if v.ndim == 0 or ndim == 0:
            return v
        shape = [1] * ndim
        shape[axis] = -1
        return v.reshape(shape)

    # 0. a constant zero Pad in front of a Conv goes into the Conv's own pads (TF "SAME" padding at
    # stride 2): a Pad between the DequantizeLinear and the Conv would keep the runtime from fusing
    # them into one integer conv, and it would run in float
    fold_pads_into_convs(m)
    consts = graph_constants(m)
    producer = {o: n for n in g.node for o in n.output}
    new_inits, drop = [], set()

    # 1. constant weights: Q(w) -> int8 initialiser
    rename = {}
    for n in g.node:
        if n.op_type != "QuantizeLinear" or n.input[0] not in consts:
            continue
        w, s, zp = consts[n.input[0]], consts.get(n.input[1]), consts.get(n.input[2])
        if s is None or zp is None:
            continue
        ax = axis_of(n)
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / bcast(s, w.ndim, ax)) + bcast(zp, w.ndim, ax).astype(np.int64), info.min, info.max)
        name = f"{n.input[0]}_quantized"
        new_inits.append(numpy_helper.from_array(q.astype(zp.dtype), name))
        rename[n.output[0]] = name
        drop.add(id(n))
    for n in g.node:
        for i, v in enumerate(n.input):
            if v in rename:
                n.input[i] = rename[v]
    readers: dict[str, list] = {}
    for n in g.node:
        for v in n.input:
            readers.setdefault(v, []).append(n)
    int8_weights = set(rename.values())
    for n in g.node:  # an int8 weight read only by convs needs no stored zero point of 0
        if (n.op_type == "DequantizeLinear" and n.input[0] in int8_weights and len(n.input) > 2
                and n.input[2] in consts and not np.any(consts[n.input[2]])
                and all(r.op_type == "Conv" for r in readers.get(n.output[0], []))):
            del n.input[2]

    # 2. biases: float -> int32 behind DequantizeLinear
    bias_nodes: dict[int, list] = {}
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 3 or n.input[2] not in consts:
            continue
        px, pw = producer.get(n.input[0]), producer.get(n.input[1])
        if px is None or pw is None or px.op_type != "DequantizeLinear" or pw.op_type != "DequantizeLinear":
            continue
        s_x, s_w = consts.get(px.input[1]), consts.get(pw.input[1])
        if s_x is None or s_w is None:
            continue
        b = consts[n.input[2]].astype(np.float32)
        s_b = (np.float32(s_x) * np.asarray(s_w, np.float32)).astype(np.float32).reshape(-1)
        if s_b.size == 1:
            s_b = np.full(b.shape, s_b[0], np.float32)
        # in float64: float32 cannot hold 2**31 - 1, and a value rounded up to 2**31 wraps in the cast
        qb = np.clip(np.rint(b.astype(np.float64) / s_b), -2**31, 2**31 - 1).astype(np.int32)
        base = n.input[2]
        new_inits.append(numpy_helper.from_array(qb, f"{base}_quantized"))
        if np.asarray(s_w).size == b.size:  # Mul(s_x, s_w) is s_b, the same float32 product
            scale = [helper.make_node("Mul", [px.input[1], pw.input[1]], [f"{base}_scale"])]
        else:  # a per-tensor weight scale: the bias's per-channel scale is stored
            scale = []
            new_inits.append(numpy_helper.from_array(s_b, f"{base}_scale"))
        bias_nodes[id(n)] = scale + [helper.make_node("DequantizeLinear", [f"{base}_quantized", f"{base}_scale"],
                                                      [f"{base}_dq"], axis=0)]
        n.input[2] = f"{base}_dq"

    # each bias's nodes just before its Conv / Gemm, which comes after both scales' producers
    nodes = [k for n in g.node if id(n) not in drop for k in bias_nodes.get(id(n), []) + [n]]
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits)
    drop_dead_nodes(g)  # the float weights that the int8 ones replace
    onnx.checker.check_model(m)


def qdq_activation_types(path) -> dict:
    """Counts of the zero-point types of the ``QuantizeLinear`` nodes of an ONNX file (what the
    activations are quantised to), e.g. ``{"uint8": 57}``."""
    import onnx

    from .deploy import graph_constants

    m = onnx.load(str(path))
    consts = graph_constants(m)
    out: dict[str, int] = {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear":
            t = str(consts[n.input[2]].dtype) if len(n.input) > 2 and n.input[2] in consts else "uint8"
            out[t] = out.get(t, 0) + 1
    return out
