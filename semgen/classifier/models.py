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
from .pointwise import use_pooled_pointwise
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
        build = _BUILDERS.get(spec.timm_name)
        self.net = (build or (lambda **kw: timm.create_model(spec.timm_name, **kw)))(
            pretrained=False, in_chans=1, num_classes=num_classes, drop_rate=drop_rate, **spec.kwargs)
        use_pooled_pointwise(self.net)  # SE / head 1x1 convs on pooled features: trained as F.linear
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


#: EfficientNet-Lite0's stages (timm's ``tf_efficientnet_lite0``): block string with its channel count as ``{}``
_LITE0_STAGES = (("ds_r1_k3_s1_e1_c{}", 16), ("ir_r2_k3_s2_e6_c{}", 24), ("ir_r2_k5_s2_e6_c{}", 40),
                 ("ir_r3_k3_s2_e6_c{}", 80), ("ir_r3_k5_s1_e6_c{}", 112), ("ir_r4_k5_s2_e6_c{}", 192),
                 ("ir_r1_k3_s1_e6_c{}", 320))


def _efficientnet_lite(*, channel_multiplier: float, num_features: int = 1280, stage_multipliers=None,
                       pretrained: bool = False, **kwargs) -> nn.Module:
    """EfficientNet-Lite0's layout (timm's ``tf_efficientnet_lite0``: the same blocks, depth, fixed
    32-channel stem, ReLU6, TF "SAME" padding and BatchNorm epsilon) at another width and head size.

    timm's own constructors fix the head at 1280 features, which alone is 0.4 MB of INT8 weights
    at this width; so the model is assembled here from timm's EfficientNet builder.

    ``stage_multipliers`` (seven floats, one per stage) overrides ``channel_multiplier`` stage by
    stage; each stage's channels are rounded to 8 as timm rounds them.
    """
    if pretrained:
        raise SemgenError("semgen never downloads weights")
    from functools import partial

    import_timm()
    from timm.models._efficientnet_builder import BN_EPS_TF_DEFAULT, decode_arch_def, round_channels
    from timm.models.efficientnet import EfficientNet

    mults = tuple(stage_multipliers) if stage_multipliers is not None else (channel_multiplier,) * len(_LITE0_STAGES)
    if len(mults) != len(_LITE0_STAGES):
        raise SemgenError(f"stage_multipliers needs {len(_LITE0_STAGES)} values, got {len(mults)}")
    # the channels are rounded here, stage by stage; the builder then takes them as they are
    arch_def = [[block.format(round_channels(chs, multiplier=m))] for (block, chs), m in zip(_LITE0_STAGES, mults)]
    return EfficientNet(block_args=decode_arch_def(arch_def, 1.0, fix_first_last=True), num_features=num_features,
                        stem_size=32, fix_stem=True, round_chs_fn=int,
                        act_layer=nn.ReLU6, norm_layer=partial(nn.BatchNorm2d, eps=BN_EPS_TF_DEFAULT), pad_type="same",
                        **kwargs)


#: Networks semgen assembles itself, by the ``timm_name`` of their :class:`ArchSpec`.
_BUILDERS = {"semgen_efficientnet_lite": _efficientnet_lite}


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


def select_weights(state: dict, own: dict, *, skip=()) -> dict:
    """Weight selection: each tensor of a wider network cut to the shape of the narrower one's.

    Every dimension keeps its *leading* entries, the same ones in every tensor, so channel ``c``
    that one layer outputs is channel ``c`` that the next layer (its BatchNorm, its depthwise
    conv, the residual sum) reads: the narrow network computes a consistent sub-network of the
    wide one (Xu et al., "Initializing Models with Larger Ones", ICLR 2024, found such consistent
    selection the one that matters). Tensors of equal shape pass unchanged.

    Parameters
    ----------
    state : dict
        The wide network's state dict.
    own : dict
        The narrow network's state dict (only its keys and shapes are read).
    skip : collection of str
        Names left out (a head for other classes).

    Returns
    -------
    dict
        ``name -> tensor`` for every name of ``own`` found in ``state`` and not skipped.

    Raises
    ------
    SemgenError
        A tensor of ``state`` is smaller than, or has another rank than, its namesake in ``own``:
        not a wider network of the same layout.

    Examples
    --------
    >>> import torch
    >>> w = torch.arange(12.).reshape(4, 3)
    >>> select_weights({"w": w}, {"w": torch.zeros(2, 2)})["w"]
    tensor([[0., 1.],
            [3., 4.]])
    """
    out = {}
    for name, mine in own.items():
        if name in skip or name not in state:
            continue
        t = state[name]
        if t.dim() != mine.dim() or any(a < b for a, b in zip(t.shape, mine.shape)):
            raise SemgenError(f"cannot select {name} {tuple(mine.shape)} from {tuple(t.shape)}: "
                              "not a wider network of the same layout")
        out[name] = t[tuple(slice(0, n) for n in mine.shape)].clone() if t.shape != mine.shape else t
    return out


def load_backbone(model: SemClassifier, state: dict, *, same_classes: bool, select: bool = False) -> dict:
    """Load ``state`` into ``model``: everything if ``same_classes``, else all but the head.

    Returns a summary ``{"loaded": n, "skipped": [names]}``. Tensors whose shapes differ (another
    head, another architecture) are never loaded silently: an architecture mismatch outside the
    head is an error. ``select``: ``state`` is a wider network of the same layout (the model's
    :attr:`ArchSpec.select_from`), cut to the model's shapes by :func:`select_weights` first.
    """
    own = model.state_dict()
    head = model.head_parameter_names()
    if select:  # a head for the same classes too: its leading inputs are what the selected conv_head makes
        left = {k: v for k, v in state.items() if k not in own or (k in head and not same_classes)}
        state = {**left, **select_weights(state, own, skip=set() if same_classes else head)}
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
