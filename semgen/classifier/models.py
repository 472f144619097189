"""Registry of the classifier architectures and the single-channel model wrapper.

The registry is timm-like: a short name maps to a timm model and the keyword arguments that make it
an edge model for 8-bit grayscale SEM images. Every model takes ``float32 [N, 1, S, S]`` in ``[0, 1]``
(the image divided by 255) and normalises inside the network, so the PyTorch checkpoint, the ONNX
files and a firmware port all share one input convention.
"""

from __future__ import annotations

import torch
from torch import nn

from ..compat import import_timm
from ..errors import SemgenError
from .registry import ARCHS, DEFAULT_ARCH, ArchSpec, get_arch, list_archs, register_arch  # noqa: F401

#: Default input normalisation (SEM images are roughly mid-grey with a wide spread); an architecture
#: with ImageNet weights overrides it through its :class:`ArchSpec` (``mean`` / ``std``).
INPUT_MEAN = 0.5
INPUT_STD = 0.25


class SemClassifier(nn.Module):
    """A timm backbone with the input normalisation built in.

    The normalisation constants come from the architecture's :class:`ArchSpec` (``mean`` / ``std``)
    and are non-persistent buffers: they are never part of a checkpoint, so a checkpoint's bytes do
    not depend on them.

    Parameters
    ----------
    arch : str
        A name from :data:`ARCHS`.
    num_classes : int
    drop_rate : float
        Dropout before the classifier.
    """

    def __init__(self, arch: str, num_classes: int, *, drop_rate: float = 0.2):
        super().__init__()
        spec = get_arch(arch)
        timm = import_timm()
        self.arch = arch
        self.net = timm.create_model(
            spec.timm_name, pretrained=False, in_chans=1, num_classes=num_classes, drop_rate=drop_rate,
            **spec.kwargs,
        )
        self.register_buffer("mean", torch.tensor(spec.mean), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def head_parameter_names(self) -> set[str]:
        """State-dict names of the final classifier (re-initialised when the classes change)."""
        head = self.net.get_classifier()
        ids = {id(p) for p in head.parameters()}
        return {f"net.{n}" for n, p in self.net.named_parameters() if id(p) in ids}

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_classifier().parameters())


def create_model(arch: str, num_classes: int, *, drop_rate: float = 0.2, heads=None, classes=None):
    """Make an untrained classifier (no weights are ever downloaded).

    Parameters
    ----------
    arch : str
    num_classes : int
    drop_rate : float
    heads : None, dict or Hierarchy
        None: a plain :class:`SemClassifier` (one linear head). A hierarchy
        (:mod:`semgen.classifier.hierarchy`): a :class:`~semgen.classifier.heads.HierClassifier`.
    classes : list of str
        The class names; needed with ``heads`` (the hierarchy is keyed by them).
    """
    if num_classes < 2:
        raise SemgenError(f"a classifier needs at least 2 classes, got {num_classes}")
    if heads is None:
        return SemClassifier(arch, num_classes, drop_rate=drop_rate)
    from .heads import HierClassifier
    from .hierarchy import load_hierarchy

    if classes is None or len(classes) != num_classes:
        raise SemgenError("hierarchical heads need the class names")
    return HierClassifier(arch, classes, load_hierarchy(heads), drop_rate=drop_rate)


def load_backbone(model: SemClassifier, state: dict, *, same_classes: bool) -> dict:
    """Load ``state`` into ``model``: everything if ``same_classes``, else all but the head.

    Returns a summary ``{"loaded": n, "skipped": [names]}``. Tensors whose shapes differ (another
    head, another architecture) are never loaded silently: an architecture mismatch outside the
    head is an error.
    """
    own = model.state_dict()
    head = model.head_parameter_names()
    loaded, skipped = {}, []
    for name, tensor in state.items():
        if name not in own:
            skipped.append(name)
            continue
        if name in head and not same_classes:
            skipped.append(name)
            continue
        if own[name].shape != tensor.shape:
            if name in head:
                skipped.append(name)
                continue
            raise SemgenError(
                f"checkpoint does not fit architecture '{model.arch}': {name} has shape "
                f"{tuple(tensor.shape)}, expected {tuple(own[name].shape)}"
            )
        loaded[name] = tensor
    missing = [n for n in own if n not in loaded and n not in head]
    if missing:
        raise SemgenError(
            f"checkpoint lacks {len(missing)} backbone tensors of '{model.arch}' (e.g. {missing[0]}); "
            "was it trained with another --arch?"
        )
    model.load_state_dict(loaded, strict=False)
    return {"loaded": len(loaded), "skipped": skipped}
