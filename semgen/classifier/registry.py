"""Registry of the supported classifier architectures (timm-like; no torch import, so the CLI
can list them without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SemgenError


@dataclass(frozen=True)
class ArchSpec:
    """One supported architecture."""

    name: str
    timm_name: str
    description: str
    kwargs: dict = field(default_factory=dict)


ARCHS: dict[str, ArchSpec] = {}


def register_arch(name: str, timm_name: str, description: str, **kwargs) -> ArchSpec:
    """Add an architecture to :data:`ARCHS` (timm name + keyword arguments)."""
    spec = ArchSpec(name, timm_name, description, dict(kwargs))
    ARCHS[name] = spec
    return spec


register_arch("mobilenetv3_small_050", "mobilenetv3_small_050", "MobileNetV3-Small 0.5 (smallest; MCU)")
register_arch("mobilenetv3_small_075", "mobilenetv3_small_075", "MobileNetV3-Small 0.75")
register_arch("mobilenetv3_small_100", "mobilenetv3_small_100", "MobileNetV3-Small 1.0 (default)")
register_arch("mobilenetv2_035", "mobilenetv2_035", "MobileNetV2 0.35 (published edge baseline)")
register_arch("mobilenetv2_050", "mobilenetv2_050", "MobileNetV2 0.5")
register_arch("mobilenetv4_conv_small_050", "mobilenetv4_conv_small_050", "MobileNetV4-Conv-Small 0.5 (ReLU only)")
register_arch("resnet18", "resnet18", "ResNet-18 (a larger reference, not an edge model)")

DEFAULT_ARCH = "mobilenetv3_small_100"


def list_archs() -> list[str]:
    """Names of the supported architectures."""
    return sorted(ARCHS)


def get_arch(name: str) -> ArchSpec:
    """The :class:`ArchSpec` for ``name``; a :class:`SemgenError` listing the valid names otherwise."""
    try:
        return ARCHS[name]
    except KeyError:
        raise SemgenError(f"unknown architecture '{name}'; supported: {', '.join(list_archs())}") from None
