"""Hierarchical heads: one backbone feeding a gate, defect families and leaves; the cascade.

The gate reads the backbone part-way (after ``gate_after`` of its stages, see
:mod:`semgen.classifier.hierarchy`): a 1x1 convolution, BatchNorm, ReLU, global pooling and a
linear layer. The rest of the backbone and its pooled features feed two linear layers: the
families and the leaves (one softmax per family). A leaf's log-probability is the sum of the
log-probabilities on its path::

    log p(bridge) = log g(defect) + log f(line | defect) + log l(bridge | line)
    log p(clean)  = log g(clean)

so the leaf probabilities sum to 1, and ``forward`` returns them as log-probabilities in the
model's class order: every consumer of a plain classifier's logits (softmax, temperature,
distillation, ONNX export) works on them unchanged. :meth:`HierClassifier.cascade` runs the rest
of the backbone only for images the gate calls defective; where the gate's top output is a class,
that class is also the full model's top class (its probability is at least the defect branch's
whole mass), so the cascade and the full model agree on every label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..compat import import_timm
from ..errors import SemgenError
from .hierarchy import Hierarchy
from .pointwise import use_pooled_pointwise
from .registry import get_arch

#: timm model classes whose backbone is ``conv_stem``, ``bn1`` and a sequence of ``blocks`` stages.
_STAGED = ("MobileNetV3", "EfficientNet")


class HierClassifier(nn.Module):
    """A timm backbone with a gate, family and leaf heads; input normalisation built in.

    Parameters
    ----------
    arch : str
        A name of :data:`ARCHS` with a staged backbone (MobileNet / EfficientNet families).
    classes : list of str
        The model's classes (its output order); ``hierarchy`` is restricted to them.
    hierarchy : Hierarchy
    drop_rate : float
        Dropout on the pooled features (family and leaf heads) and in the gate.

    Examples
    --------
    >>> from semgen.classifier.models import create_model
    >>> m = create_model("mobilenetv3_small_050", 3, classes=["clean", "bridge", "open"],
    ...                  heads={"gate": ["clean", "defect"], "families": {"line": ["bridge", "open"]}}).eval()
    >>> p = m(torch.rand(2, 1, 64, 64)).exp()      # leaf probabilities, class order
    >>> bool(torch.allclose(p.sum(1), torch.ones(2)))
    True
    """

    def __init__(self, arch: str, classes, hierarchy: Hierarchy, *, drop_rate: float = 0.2):
        super().__init__()
        spec = get_arch(arch)
        timm = import_timm()
        self.arch = arch
        self.classes = list(classes)
        self.hierarchy = h = hierarchy.for_classes(self.classes)
        self.num_classes = len(self.classes)
        self.drop_rate = float(drop_rate)
        self.net = timm.create_model(spec.timm_name, pretrained=False, in_chans=1, num_classes=0, drop_rate=0.0,
                                     **spec.kwargs)
        use_pooled_pointwise(self.net)  # SE 1x1 convs on pooled features: trained as F.linear
        if type(self.net).__name__ not in _STAGED or not hasattr(self.net, "blocks"):
            raise SemgenError(f"--heads hierarchical needs a staged MobileNet / EfficientNet backbone; "
                              f"'{arch}' is a {type(self.net).__name__}")
        self.register_buffer("mean", torch.tensor(spec.mean), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std), persistent=False)
        n_stages = len(self.net.blocks)
        self.gate_after = h.gate_after if h.gate_after is not None else max(1, n_stages // 2)
        if not 1 <= self.gate_after <= n_stages:
            raise SemgenError(f"gate_after {h.gate_after}: '{arch}' has {n_stages} backbone stages")
        net = self.net.eval()
        with torch.no_grad():  # channel counts where the gate and the heads read
            f = self._stem(torch.zeros(1, 1, 64, 64))
            dim = self._tail(f).shape[1]
        net.train()
        self.gate = nn.Sequential(
            nn.Conv2d(f.shape[1], h.gate_width, 1, bias=False), nn.BatchNorm2d(h.gate_width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(self.drop_rate), nn.Linear(h.gate_width, len(h.gate)))
        fam_members = [m for _, m in h.families]
        self.family = nn.Linear(dim, len(fam_members)) if fam_members else None
        self.leaf = nn.Linear(dim, sum(len(m) for m in fam_members)) if fam_members else None
        # constant index structures (non-persistent: checkpoints hold weights only)
        spans, s = [], 0
        for m in fam_members:
            spans.append((s, s + len(m)))
            s += len(m)
        self._spans = spans
        self._defect_gate = h.gate.index(h.defect) if h.defect in h.gate else None
        index = {c: i for i, c in enumerate(self.classes)}
        order = [self.classes.index(c) for c in h.leaves]  # hierarchy position -> class index
        self.register_buffer("_to_classes", torch.tensor([h.leaves.index(c) for c in self.classes]), persistent=False)
        self.register_buffer("_from_classes", torch.tensor(order), persistent=False)
        gate_of = torch.zeros(len(self.classes), len(h.gate))
        fam_of = torch.zeros(len(self.classes), max(1, len(fam_members)))
        for gi, g in enumerate(h.gate):
            if g != h.defect:
                gate_of[index[g], gi] = 1
        for fi, (_, m) in enumerate(h.families):
            for c in m:
                gate_of[index[c], self._defect_gate] = 1
                fam_of[index[c], fi] = 1
        self.register_buffer("_gate_of", gate_of, persistent=False)
        self.register_buffer("_family_of", fam_of, persistent=False)
        # the class index of each gate output that is a class (-1 for the defect output)
        self._gate_class = [index[g] if g != h.defect else -1 for g in h.gate]

    # -- the backbone in two parts -----------------------------------------------------------
    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net.bn1(net.conv_stem(x))
        for b in net.blocks[:self.gate_after]:
            x = b(x)
        return x

    def _tail(self, f: torch.Tensor) -> torch.Tensor:
        net = self.net
        for b in net.blocks[self.gate_after:]:
            f = b(f)
        if type(net).__name__ == "EfficientNet":  # its conv_head comes before pooling
            f = net.bn2(net.conv_head(f))
        return net.forward_head(f, pre_logits=True)

    def forward_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: gate logits ``[N, G]`` and the feature map the rest continues from."""
        f = self._stem((x - self.mean) / self.std)
        return self.gate(f), f

    def forward_rest(self, f: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Stage 2: family and leaf logits from stage 1's feature map (None without families)."""
        if self.family is None:
            return None, None
        z = F.dropout(self._tail(f), self.drop_rate, self.training)
        return self.family(z), self.leaf(z)

    def combine(self, gate_logits, family_logits, leaf_logits) -> torch.Tensor:
        """Leaf log-probabilities ``[N, K]`` in class order from the three heads' logits."""
        g = F.log_softmax(gate_logits, 1)
        # hierarchy order: the gate's classes, then each family's leaves
        parts = [g[:, gi:gi + 1] for gi in range(len(self.hierarchy.gate)) if gi != self._defect_gate]
        if self._defect_gate is not None:
            d = self._defect_gate
            fl = F.log_softmax(family_logits, 1)
            for fi, (s, e) in enumerate(self._spans):
                parts.append(g[:, d:d + 1] + fl[:, fi:fi + 1] + F.log_softmax(leaf_logits[:, s:e], 1))
        return torch.index_select(torch.cat(parts, 1), 1, self._to_classes)

    def forward_heads(self, x: torch.Tensor) -> dict:
        """``gate``, ``family``, ``leaf`` logits and ``log_probs`` (the leaves, class order)."""
        gl, f = self.forward_gate(x)
        fl, ll = self.forward_rest(f)
        return {"gate": gl, "family": fl, "leaf": ll, "log_probs": self.combine(gl, fl, ll)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_heads(x)["log_probs"]

    # -- training ---------------------------------------------------------------------------
    def head_loss(self, heads: dict, targets: torch.Tensor) -> torch.Tensor:
        """The weighted head loss for soft targets ``[N, K]`` (class order; rows sum to 1).

        Each level's cross-entropy against the targets' mass on it: the gate against the mass of
        each gate output, the families against the mass of each family, each family's leaves
        against their own mass. With every weight 1 this is the leaf-level cross-entropy
        ``-sum(targets * log_probs)``.
        """
        w = self.hierarchy.weights
        t = targets.float()
        loss = -(t @ self._gate_of * F.log_softmax(heads["gate"].float(), 1)).sum(1) * w["gate"]
        if self.family is not None:
            loss = loss - (t @ self._family_of * F.log_softmax(heads["family"].float(), 1)).sum(1) * w["family"]
            th = t[:, self._from_classes[len(self.hierarchy.gate) - 1:]]  # the defect leaves, hierarchy order
            leaf = heads["leaf"].float()
            for s, e in self._spans:
                loss = loss - (th[:, s:e] * F.log_softmax(leaf[:, s:e], 1)).sum(1) * w["leaf"]
        return loss.mean()

    def head_parameter_names(self) -> set[str]:
        """State-dict names of the heads (gate, family, leaf): what another head does not share."""
        return {n for n, _ in self.named_parameters() if not n.startswith("net.")} | {
            n for n, _ in self.named_buffers() if n.startswith("gate.")}

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("net.")]

    # -- the cascade ------------------------------------------------------------------------
    @torch.no_grad()
    def cascade(self, x: torch.Tensor) -> dict:
        """Run the gate, then the rest only for the images it calls defective.

        Returns
        -------
        dict
            ``probs`` ``[N, K]`` (class order; for images the gate settles, only the gate's
            classes are known and the defect classes are NaN), ``gate`` probabilities ``[N, G]``,
            ``resolved`` (bool ``[N]``: the rest ran) and ``defect_prob`` ``[N]``.
        """
        gl, f = self.forward_gate(x)
        g = torch.softmax(gl.float(), 1)
        n = len(x)
        probs = torch.full((n, self.num_classes), float("nan"))
        for gi, ci in enumerate(self._gate_class):
            if ci >= 0:
                probs[:, ci] = g[:, gi]
        if self._defect_gate is None:
            resolved = torch.zeros(n, dtype=torch.bool)
            defect = torch.zeros(n)
        else:
            resolved = g.argmax(1) == self._defect_gate
            defect = g[:, self._defect_gate]
        if resolved.any():
            fl, ll = self.forward_rest(f[resolved])
            probs[resolved] = self.combine(gl[resolved], fl, ll).exp().float()
        return {"probs": probs, "gate": g, "resolved": resolved, "defect_prob": defect}
