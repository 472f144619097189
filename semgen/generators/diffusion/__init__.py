"""Text-conditioned pixel-space diffusion for SEM images: captions, model, train, sample, refine.

Built the way a diffusers pipeline is built: a ``UNet2DConditionModel`` (1 channel, cross-attention
to the token embeddings of a frozen MiniLM text encoder) and a DDPM schedule, saved in diffusers'
folder format. Heavy imports (torch, diffusers, transformers) happen in the submodules only::

    from semgen.generators.diffusion.captions import build_caption        # light
    from semgen.generators.diffusion.train import TrainConfig, train       # torch + diffusers
    from semgen.generators.diffusion.sample import sample
    from semgen.generators.diffusion.refine import refine
    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline
"""
