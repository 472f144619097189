"""TF "SAME" padding as constants, for export.

timm's ``Conv2dSame`` (the stride-2 convs of the EfficientNet-Lite family) computes its pads from
the input's shape at run time. The ONNX exporter writes that as a chain of Shape / Gather / Ceil /
Sub / Max / Concat nodes and a Pad around each such conv, which runtimes execute as separate
float ops. An exported semgen model has a fixed input size, so the pads are constants: computed
in Python ints, they become the conv's own padding (or one constant Pad where TF pads one more
row / column at the end), and nothing is left to compute.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def same_pads(size, kernel, stride, dilation) -> tuple[int, int, int, int]:
    """TF "SAME" padding of a conv as ``F.pad`` wants it: ``(left, right, top, bottom)``, Python ints.

    Examples
    --------
    >>> same_pads((64, 64), (3, 3), (2, 2), (1, 1))  # stride 2 on an even size: the extra one at the end
    (0, 1, 0, 1)
    >>> same_pads((63, 63), (5, 5), (1, 1), (1, 1))
    (2, 2, 2, 2)
    """
    from timm.layers.padding import get_same_padding  # its int branch: plain math, no traced op

    ph, pw = (get_same_padding(int(n), k, s, d) for n, k, s, d in zip(size, kernel, stride, dilation))
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def same_conv2d(x: torch.Tensor, weight: torch.Tensor, bias, stride, dilation, groups) -> torch.Tensor:
    """``F.conv2d`` with TF "SAME" padding computed from ``x``'s shape as ints (constants when traced)."""
    pads = same_pads(x.shape[-2:], weight.shape[-2:], stride, dilation)
    if pads[0] == pads[1] and pads[2] == pads[3]:
        return F.conv2d(x, weight, bias, stride, (pads[2], pads[0]), dilation, groups)
    return F.conv2d(F.pad(x, pads), weight, bias, stride, 0, dilation, groups)


class ConstSameConv2d(nn.Module):
    """A timm ``Conv2dSame`` (its weights, shared) whose pads are constants once traced."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return same_conv2d(x, c.weight, c.bias, c.stride, c.dilation, c.groups)


def with_constant_same_padding(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every timm ``Conv2dSame`` replaced by :class:`ConstSameConv2d`.

    The copy computes the same outputs (the same ops, pads as ints); traced for ONNX at a fixed
    input size, its pads are constants. ``model`` itself is left as it is. A model without such
    convs comes back as the copy, unchanged.
    """
    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        if type(m).__name__ == "Conv2dSame":
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, ConstSameConv2d(m))
    return model


# -- the exported graph ----------------------------------------------------------------------------
#: ops that :func:`graph_constant` evaluates when all their inputs are constants
_FOLDABLE = {"Cast", "Concat", "ConstantOfShape", "Reshape", "Slice", "Transpose", "Squeeze", "Unsqueeze",
             "Gather", "Identity"}


def graph_constant(name: str, consts: dict, producer: dict, depth: int = 16):
    """The value of a graph tensor computed from constants only by shape-like ops (the TorchScript
    exporter writes ``F.pad``'s pads as such a chain), evaluated with the ONNX reference runtime;
    None if it depends on anything else. ``consts`` (name -> array) gains what is evaluated."""
    if name in consts:
        return consts[name]
    n = producer.get(name)
    if n is None or n.op_type not in _FOLDABLE or depth == 0:
        return None
    args = {}
    for v in n.input:
        if v:
            args[v] = graph_constant(v, consts, producer, depth - 1)
            if args[v] is None:
                return None
    from onnx.reference import ReferenceEvaluator

    out = ReferenceEvaluator(n).run(None, args)
    consts.update(zip(n.output, out))
    return consts[name]


def fold_pads_into_convs(m) -> int:
    """Move every constant zero ``Pad`` of H / W that feeds only a ``Conv`` into the Conv's own
    ``pads`` (ONNX convs pad each side on its own, which ``F.conv2d`` cannot), in place; returns
    how many were folded. What computed the pads is removed with them (:func:`drop_dead_nodes`)."""
    from collections import Counter

    from onnx import helper

    from .deploy import graph_constants

    g = m.graph
    consts = graph_constants(m)
    producer = {o: n for n in g.node for o in n.output}
    uses = Counter(v for n in g.node for v in n.input)
    folded = set()
    for n in g.node:
        p = producer.get(n.input[0]) if n.op_type == "Conv" else None
        if p is None or p.op_type != "Pad" or uses.get(p.output[0]) != 1:
            continue
        mode = next((a.s for a in p.attribute if a.name == "mode"), b"constant")
        value = graph_constant(p.input[2], consts, producer) if len(p.input) > 2 and p.input[2] else np.zeros(())
        pads = graph_constant(p.input[1], consts, producer)
        if pads is None:
            continue
        pads = np.asarray(pads).reshape(-1)
        if mode != b"constant" or value is None or np.any(value != 0) or len(pads) != 8 or np.any(pads < 0) \
                or np.any(pads[[0, 1, 4, 5]] != 0) or (len(p.input) > 3 and p.input[3]):
            continue
        old = next((list(a.ints) for a in n.attribute if a.name == "pads"), [0, 0, 0, 0])
        new = [int(a + b) for a, b in zip(old, [pads[2], pads[3], pads[6], pads[7]])]
        for a in list(n.attribute):
            if a.name in ("pads", "auto_pad"):
                n.attribute.remove(a)
        n.attribute.append(helper.make_attribute("pads", new))
        n.input[0] = p.input[0]
        folded.add(id(p))
    if folded:
        keep = [n for n in g.node if id(n) not in folded]
        del g.node[:]
        g.node.extend(keep)
        drop_dead_nodes(g)
    return len(folded)


def drop_dead_nodes(g) -> None:
    """Remove, in place, the nodes of ONNX graph ``g`` whose outputs nothing reads (repeatedly), and
    the initialisers nothing reads."""
    while True:
        used = {v for n in g.node for v in n.input} | {o.name for o in g.output}
        keep = [n for n in g.node if any(o in used for o in n.output)]
        if len(keep) == len(g.node):
            break
        del g.node[:]
        g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
