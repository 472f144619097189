"""Deployment files: the C header for firmware and the memory an exported model needs.

:func:`write_c_header` writes the INT8 model as a C array together with what firmware needs to
feed it and read it: the class list, the input size, the normalisation, how the graph quantises
its input, and a tensor-arena estimate. :func:`activation_peak` gives that estimate: the largest
total size of the activation tensors alive at one time when the graph runs node by node at batch
1 (every tensor freed after its last reader; weights excluded, as they stay in flash). It is what
a lifetime-based arena planner such as TensorFlow Lite Micro's needs for activations; in-place
operations can lower it, a runtime's own scratch buffers (im2col, per-layer quantisation
parameters) add to it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..imageio import write_bytes_atomic

#: Bytes per activation element for each activation type of an export.
ACTIVATION_BYTES = {"float32": 4, "uint16": 2, "int16": 2, "uint8": 1, "int8": 1}


def _elements(vi) -> int:
    dims = vi.type.tensor_type.shape.dim
    return int(np.prod([d.dim_value if d.HasField("dim_value") else 1 for d in dims])) if dims else 1


def activation_peak(onnx_path) -> dict:
    """Peak live activation elements of an ONNX graph at batch 1.

    Parameters
    ----------
    onnx_path : path
        A float graph (``model.onnx``): its tensors are the activations of every exported form,
        whatever their element type.

    Returns
    -------
    dict
        ``peak_elements`` (the estimate), ``largest_tensor_elements``, ``tensors`` (counted).

    Examples
    --------
    >>> activation_peak("model.onnx")["peak_elements"] * 1   # doctest: +SKIP
    """
    import onnx

    m = onnx.load(str(onnx_path))
    g = m.graph
    consts = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    for inp in g.input:  # batch 1: the dynamic batch axis fixed
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m)
    g = m.graph
    size = {vi.name: _elements(vi) for vi in list(g.input) + list(g.value_info) + list(g.output)}
    last: dict[str, int] = {}
    for i, n in enumerate(g.node):
        for t in n.input:
            if t and t not in consts:
                last[t] = i
    outputs = {o.name for o in g.output}
    live = {i.name: size.get(i.name, 0) for i in g.input if i.name not in consts}
    peak = sum(live.values())
    for i, n in enumerate(g.node):
        new = {o: size.get(o, 0) for o in n.output if o and o not in consts}
        peak = max(peak, sum(live.values()) + sum(new.values()))
        live.update(new)
        for t in [t for t in live if last.get(t, -1) <= i and t not in outputs]:
            del live[t]
    counted = [v for k, v in size.items() if k not in consts]
    return {"peak_elements": int(peak), "largest_tensor_elements": int(max(counted, default=0)),
            "tensors": len(counted)}


def graph_constants(m) -> dict:
    """The stored tensors of an ONNX model (initialisers and ``Constant`` values) by name, as arrays."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


def input_quantization(onnx_path, input_name: str = "image") -> dict | None:
    """How a QDQ graph quantises its input: scale, zero point, element type and ``after``, the
    element-wise ops (the normalisation) between the input and that quantisation; None if the
    input is not quantised."""
    import onnx

    m = onnx.load(str(onnx_path))
    consts = graph_constants(m)
    readers: dict[str, list] = {}
    for n in m.graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    cur, after = input_name, []
    while len(readers.get(cur, [])) == 1:
        n = readers[cur][0]
        if n.op_type == "QuantizeLinear":
            s = consts.get(n.input[1])
            zp = consts.get(n.input[2]) if len(n.input) > 2 else np.zeros((), np.uint8)
            if s is None or zp is None or s.size != 1:
                return None
            return {"scale": float(s.reshape(())), "zero_point": int(zp.reshape(())), "dtype": str(zp.dtype),
                    "after": after}
        if n.op_type not in ("Sub", "Div", "Mul", "Add"):
            return None
        after.append(n.op_type)
        cur = n.output[0]
    return None


def write_c_header(data: bytes, path, *, symbol: str = "semgen_model_int8", comment: str = "",
                   classes=None, size: int | None = None, mean: float | None = None, std: float | None = None,
                   arena_bytes: int | None = None, input_quant: dict | None = None) -> Path:
    """Write ``data`` as a C byte array (``SYMBOL``, ``SYMBOL_len``) with the model's facts.

    Macros are named ``SYMBOL`` in capitals plus ``_INPUT_SIZE``, ``_INPUT_CHANNELS``,
    ``_INPUT_MEAN``, ``_INPUT_STD``, ``_INPUT_SCALE``, ``_INPUT_ZERO_POINT``,
    ``_TENSOR_ARENA_BYTES`` and ``_NUM_CLASSES``; the class names are ``SYMBOL_classes``. Each
    one is written only when its value is given.
    """
    hexes = np.char.add("0x", np.char.zfill(np.char.lower(np.vectorize(lambda b: format(b, "x"))(
        np.frombuffer(data, np.uint8))), 2)) if len(data) else np.array([], str)
    lines = [", ".join(hexes[i:i + 16].tolist()) for i in range(0, len(hexes), 16)]
    up = symbol.upper()
    guard = up + "_H"
    facts = []
    if size is not None:
        facts += [f"/* input: float32 [1, 1, {size}, {size}], the gray image / 255 */",
                  f"#define {up}_INPUT_SIZE {int(size)}", f"#define {up}_INPUT_CHANNELS 1"]
    if mean is not None and std is not None:
        facts += ["/* normalisation, done inside the model: (x - MEAN) / STD; feed x in [0, 1] */",
                  f"#define {up}_INPUT_MEAN {_cfloat(mean)}", f"#define {up}_INPUT_STD {_cfloat(std)}"]
    if input_quant is not None:
        what = "(x - MEAN) / STD" if input_quant.get("after") else "x"
        facts += [f"/* the graph quantises {what} to {input_quant['dtype']}: q = round({what} / SCALE) + ZERO_POINT */",
                  f"#define {up}_INPUT_SCALE {_cfloat(input_quant['scale'])}",
                  f"#define {up}_INPUT_ZERO_POINT {int(input_quant['zero_point'])}"]
    if arena_bytes is not None:
        facts += ["/* tensor arena estimate: peak of the live activations at batch 1 (weights excluded;",
                  "   add the runtime's own scratch buffers) */",
                  f"#define {up}_TENSOR_ARENA_BYTES {int(arena_bytes)}u"]
    if classes is not None:
        names = ", ".join(json.dumps(str(c)) for c in classes)
        facts += [f"#define {up}_NUM_CLASSES {len(classes)}",
                  f"static const char *const {symbol}_classes[{up}_NUM_CLASSES] = {{{names}}};"]
    text = [f"/* {line} */" for line in comment.splitlines()] + [
        f"#ifndef {guard}", f"#define {guard}", "", "#include <stddef.h>", "",
        "#if defined(__GNUC__)", "#define SEMGEN_ALIGNED __attribute__((aligned(16)))", "#else",
        "#define SEMGEN_ALIGNED", "#endif", "", *facts, *([""] if facts else []),
        f"static const unsigned char {symbol}[{len(data)}] SEMGEN_ALIGNED = {{",
        *[f"  {ln}," for ln in lines], "};", f"static const size_t {symbol}_len = {len(data)}u;", "",
        f"#endif /* {guard} */", "",
    ]
    write_bytes_atomic(path, "\n".join(text).encode())
    return Path(path)


def _cfloat(v: float) -> str:
    """A C float literal that reads back as the float32 ``v``."""
    t = f"{float(np.float32(v)):.9g}"
    return (t if any(c in t for c in ".e") else t + ".0") + "f"


def read_c_header(path, symbol: str = "semgen_model_int8") -> bytes:
    """The bytes of an array written by :func:`write_c_header` (for checks)."""
    text = Path(path).read_text()
    body = text[text.index(f"{symbol}["):]
    body = body[body.index("{") + 1: body.index("};")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{2})", body))


def file_row(path, *, activations: str, peak_elements: int, latency_ms: float | None = None,
             agreement: float | None = None, flash_bytes: int | None = None) -> dict:
    """One exported file's deployment figures.

    ``flash_bytes``: what firmware stores (default the file's size: an ONNX file is its weights
    plus a small graph); ``ram_bytes``: the tensor-arena estimate (:func:`activation_peak` times
    the bytes of one ``activations`` element); ``latency_ms``: median per image at batch 1 on one
    onnxruntime thread; ``agreement_with_fp32``: top-1 agreement with ``model.onnx``.
    """
    p = Path(path)
    size = p.stat().st_size
    return {"file": p.name, "bytes": size, "flash_bytes": int(flash_bytes if flash_bytes is not None else size),
            "ram_bytes": int(peak_elements * ACTIVATION_BYTES[activations]), "activations": activations,
            "latency_ms_1_thread": latency_ms, "agreement_with_fp32": agreement}
