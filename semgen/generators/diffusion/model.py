"""UNet configurations: pixel-space, one channel, cross-attention only at the low resolutions.

On a CPU, attention at 32 x 32 and above costs many times more than the convolutions, so the
blocks at the full, half and quarter resolution are plain ResNet blocks (``DownBlock2D``) and
cross-attention to the caption tokens happens at 1/8 and 1/16 of the image side (16 x 16 and 8 x 8
at 128 px) and in the middle block (4 x 4).
"""

from __future__ import annotations

from ...compat import ensure_torchvision
from ...errors import SemgenError

#: Width of the text encoder's token embeddings (MiniLM-L6: 384), the UNet's ``cross_attention_dim``.
EMBED_DIM = 384

_DOWN5 = ("DownBlock2D", "DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
_UP5 = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D")

#: Named UNet configurations (``sample_size`` is set from the training resolution).
UNET_CONFIGS: dict[str, dict] = {
    # tests: 32 x 32, attention at 8 x 8 and 4 x 4
    "tiny": dict(block_out_channels=(8, 16, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                 "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 layers_per_block=1, attention_head_dim=8, norm_num_groups=4),
    # CPU default: 3.3 M parameters (6.6 MB in fp16), ~1 s per batch-8 step on 2 cores
    "small": dict(block_out_channels=(16, 32, 48, 64, 96), down_block_types=_DOWN5, up_block_types=_UP5,
                  layers_per_block=1, attention_head_dim=16, norm_num_groups=8),
    # GPU: ~40 M parameters
    "base": dict(block_out_channels=(64, 128, 192, 256, 320), down_block_types=_DOWN5, up_block_types=_UP5,
                 layers_per_block=2, attention_head_dim=32, norm_num_groups=32),
}


def unet_config(name: str, resolution: int) -> dict:
    """The full ``UNet2DConditionModel`` keyword arguments of a named configuration."""
    if name not in UNET_CONFIGS:
        raise SemgenError(f"unknown model config {name!r}; choose from {', '.join(UNET_CONFIGS)}")
    cfg = dict(UNET_CONFIGS[name])
    factor = 2 ** (len(cfg["block_out_channels"]) - 1)
    if resolution % factor or resolution < factor * 2:
        raise SemgenError(f"--resolution {resolution} must be a multiple of {factor} and >= {factor * 2} "
                          f"for model config {name!r}")
    cfg.update(sample_size=int(resolution), in_channels=1, out_channels=1, cross_attention_dim=EMBED_DIM,
               mid_block_type="UNetMidBlock2DCrossAttn")
    cfg["block_out_channels"] = tuple(cfg["block_out_channels"])
    return cfg


def build_unet(name: str = "small", resolution: int = 128):
    """A freshly initialised ``diffusers.UNet2DConditionModel`` for a named configuration."""
    ensure_torchvision()
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_config(name, resolution))


def train_scheduler():
    """The DDPM noise schedule used in training (cosine betas, epsilon prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=True, clip_sample_range=1.0)


def sampling_scheduler(config, kind: str = "ddim"):
    """A sampling scheduler (``ddim`` or ``dpm``) built from the training scheduler's config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if kind == "ddim":
        return DDIMScheduler.from_config(config, clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")
    if kind in ("dpm", "dpm-solver", "dpmsolver"):
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2,
                                                       timestep_spacing="trailing")
    raise SemgenError(f"unknown scheduler {kind!r}; choose ddim or dpm")
