"""Text-conditioned pixel-space diffusion for SEM images: captions, model, train, sample, refine.

Two diffusers pipelines (:mod:`.pipeline_semgen`): ``SemgenDiffusionPipeline`` (text to image) and
``SemgenImg2ImgPipeline`` (SDEdit refinement), with a ``UNet2DConditionModel`` (1 channel,
cross-attention to the token embeddings of a frozen MiniLM text encoder), a DDIM sampler, the text
encoder and its tokenizer as components. Model folders are diffusers folders that also load with
``DiffusionPipeline.from_pretrained(dir, trust_remote_code=True)``. Heavy imports (torch, diffusers,
transformers) happen in the submodules only::

    from semgen.generators.diffusion.captions import build_caption        # light
    from semgen.generators.diffusion.train import TrainConfig, train       # torch + diffusers
    from semgen.generators.diffusion.sample import sample
    from semgen.generators.diffusion.refine import refine
    from semgen.generators.diffusion.pipeline import load_pipeline, save_model
"""
