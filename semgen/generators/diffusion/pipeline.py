"""The semgen diffusion pipeline: a ``diffusers.DiffusionPipeline`` with a UNet and a scheduler.

A model folder is diffusers' own layout plus one semgen file::

    MODEL_DIR/model_index.json       pipeline class, components, text-encoder reference
    MODEL_DIR/unet/                  config.json + diffusion_pytorch_model.safetensors
    MODEL_DIR/scheduler/             scheduler_config.json (the DDPM training schedule)
    MODEL_DIR/semgen_config.json     resolution, model config name, styles seen, training summary

The text encoder is a *reference* (a package name or folder, see :mod:`.text_encoder`), not a copy of
its weights, so ``UNet2DConditionModel.from_pretrained(MODEL_DIR, subfolder="unet")`` and
``DDIMScheduler.from_pretrained(MODEL_DIR, subfolder="scheduler")`` load the parts with diffusers
alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ...compat import ensure_torchvision

ensure_torchvision()

import torch  # noqa: E402
from diffusers import DiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.schedulers import DDPMScheduler  # noqa: E402

from ... import __version__  # noqa: E402
from ...errors import SemgenError  # noqa: E402
from .model import sampling_scheduler  # noqa: E402
from .text_encoder import DEFAULT_TEXT_ENCODER, MAX_LENGTH, get_text_encoder  # noqa: E402

SEMGEN_CONFIG = "semgen_config.json"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


class SemgenDiffusionPipeline(DiffusionPipeline):
    """Text-conditioned pixel-space diffusion for 1-channel SEM images.

    Parameters
    ----------
    unet : UNet2DConditionModel
        1 input / output channel, ``cross_attention_dim`` = the text encoder's width (384).
    scheduler : SchedulerMixin
        The training noise schedule (DDPM); sampling builds DDIM / DPM-Solver from its config.
    text_encoder_ref : str
        Package name or folder of the frozen MiniLM text encoder.
    max_length : int
        Caption token length.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DConditionModel, scheduler: DDPMScheduler,
                 text_encoder_ref: str = DEFAULT_TEXT_ENCODER, max_length: int = MAX_LENGTH):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(text_encoder_ref=str(text_encoder_ref), max_length=int(max_length))
        self.semgen_config: dict = {}

    # -- text ----------------------------------------------------------------------------------
    @property
    def text_encoder(self):
        return get_text_encoder(self.config.text_encoder_ref, max_length=self.config.max_length)

    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (B, L, 384) and attention masks (B, L) for ``prompts`` (cached)."""
        return self.text_encoder.encode(list(prompts))

    # -- saving / loading ----------------------------------------------------------------------
    def save_pretrained(self, save_directory, *, fp16: bool = False, semgen_config: dict | None = None, **kw):
        """Save in diffusers' folder format plus ``semgen_config.json``; ``fp16`` halves the UNet file."""
        save_directory = Path(save_directory)
        unet = self.unet
        if fp16:
            self.unet = _copy_unet(unet).to(torch.float16)
        try:
            super().save_pretrained(str(save_directory), safe_serialization=True, **kw)
        finally:
            self.unet = unet
        cfg = dict(self.semgen_config)
        cfg.update(semgen_config or {})
        cfg.setdefault("semgen_version", __version__)
        cfg["weights_dtype"] = "float16" if fp16 else "float32"
        (save_directory / SEMGEN_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        self.semgen_config = cfg

    @classmethod
    def load(cls, model_dir=None, *, device="cpu") -> "SemgenDiffusionPipeline":
        """Load a model folder (default: the bundled model); a clear :class:`SemgenError` if broken."""
        model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        check_model_dir(model_dir)
        try:
            with quiet_hf():
                pipe = cls.from_pretrained(str(model_dir))
        except SemgenError:
            raise
        except Exception as e:  # diffusers raises many kinds for a broken folder
            raise SemgenError(f"model folder {model_dir} cannot be loaded ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); re-train or re-copy it") from None
        if not isinstance(pipe, cls):
            raise SemgenError(f"model folder {model_dir} holds a {type(pipe).__name__}, not a semgen pipeline")
        if pipe.unet.dtype != torch.float32:  # fp16 bundled weights: compute in fp32 on a CPU
            pipe.unet = pipe.unet.float()
        pipe.unet.to(device).eval()
        try:
            pipe.semgen_config = json.loads((model_dir / SEMGEN_CONFIG).read_text())
        except (OSError, ValueError) as e:
            raise SemgenError(f"model folder {model_dir}: unreadable {SEMGEN_CONFIG} ({e})") from None
        pipe.model_dir = str(model_dir)
        return pipe

    # -- generation ----------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return int(self.unet.config.sample_size)

    @torch.no_grad()
    def __call__(self, prompts: list[str], seeds: list[int], *, num_inference_steps: int = 25,
                 guidance_scale: float = 3.0, scheduler: str = "ddim", image: np.ndarray | None = None,
                 strength: float = 1.0, negative_prompts: list[str] | None = None) -> np.ndarray:
        """Generate (``image is None``) or refine (SDEdit) a batch.

        Parameters
        ----------
        prompts : list of str
        seeds : list of int
            One per prompt; image i's starting noise comes from ``seeds[i]`` alone.
        num_inference_steps : int
        guidance_scale : float
            Classifier-free guidance weight (1 = no guidance).
        scheduler : {"ddim", "dpm"}
        image : ndarray, uint8, shape (B, H, W), optional
            Inputs to refine; each is noised to ``strength`` and denoised from there.
        strength : float in (0, 1]
            Fraction of the noise schedule applied to ``image`` (1 = from pure noise).
        negative_prompts : list of str, optional
            The captions guidance moves away from (default: the empty caption, plain
            classifier-free guidance). With the same caption in the other style, guidance pushes
            along the style direction only (``e_neg + g (e_pos - e_neg)``).

        Returns
        -------
        ndarray, uint8, shape (B, H, W)
        """
        if len(prompts) != len(seeds):
            raise ValueError("one seed per prompt")
        if negative_prompts is not None and len(negative_prompts) != len(prompts):
            raise ValueError("one negative prompt per prompt")
        if not 0.0 < strength <= 1.0:
            raise SemgenError(f"strength must be in (0, 1], got {strength}")
        if num_inference_steps < 1:
            raise SemgenError("--steps must be >= 1")
        device = self.unet.device
        res = self.resolution
        sched = sampling_scheduler(self.scheduler.config, scheduler)
        sched.set_timesteps(num_inference_steps, device=device)
        timesteps = sched.timesteps
        noise = torch.cat([torch.randn((1, 1, res, res), generator=torch.Generator("cpu").manual_seed(int(s)))
                           for s in seeds]).to(device)
        if image is not None:
            x0 = to_tensor(image, res).to(device)
            n_run = max(1, min(num_inference_steps, int(round(num_inference_steps * strength))))
            timesteps = timesteps[num_inference_steps - n_run:]
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(num_inference_steps - n_run)
            x = sched.add_noise(x0, noise, timesteps[:1].repeat(len(seeds)))
        else:
            x = noise * sched.init_noise_sigma
        emb, mask = self.encode_prompts(list(prompts))
        use_cfg = guidance_scale != 1.0
        if use_cfg:
            uemb, umask = self.encode_prompts(list(negative_prompts) if negative_prompts is not None
                                              else [""] * len(prompts))
            emb, mask = torch.cat([uemb, emb]), torch.cat([umask, mask])
        emb, mask = emb.to(device, self.unet.dtype), mask.to(device)
        for t in timesteps:
            xin = torch.cat([x, x]) if use_cfg else x
            xin = sched.scale_model_input(xin, t)
            eps = self.unet(xin, t, encoder_hidden_states=emb, encoder_attention_mask=mask).sample
            if use_cfg:
                e_u, e_c = eps.chunk(2)
                eps = e_u + guidance_scale * (e_c - e_u)
            x = sched.step(eps, t, x).prev_sample
        return to_uint8(x)


class quiet_hf:
    """Silence diffusers' / transformers' info logs and loading bars inside a ``with`` block."""

    def __enter__(self):
        from diffusers.utils import logging as dl
        from transformers.utils import logging as tl

        self._state = (dl.get_verbosity(), tl.get_verbosity(), dl.is_progress_bar_enabled(),
                       tl.is_progress_bar_enabled())
        dl.set_verbosity_error(); tl.set_verbosity_error()
        dl.disable_progress_bar(); tl.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        from diffusers.utils import logging as dl
        from transformers.utils import logging as tl

        dv, tv, dp, tp = self._state
        dl.set_verbosity(dv); tl.set_verbosity(tv)
        if dp:
            dl.enable_progress_bar()
        if tp:
            tl.enable_progress_bar()


def to_tensor(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (B, H, W) -> float32 (B, 1, R, R) in [-1, 1] (resized with area averaging if needed)."""
    import cv2

    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.shape[1:] != (resolution, resolution):
        images = np.stack([cv2.resize(im, (resolution, resolution), interpolation=cv2.INTER_AREA) for im in images])
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)[:, None]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, 1, H, W) in [-1, 1] -> uint8 (B, H, W)."""
    return ((x[:, 0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def _copy_unet(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    new = UNet2DConditionModel.from_config(unet.config)
    new.load_state_dict(unet.state_dict())
    return new


def check_model_dir(model_dir: Path) -> None:
    """Raise :class:`SemgenError` naming what is missing or broken in a model folder."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        hint = (" (the bundled default model is not in this install; train one with `semgen diffuse train` "
                "and pass --model)") if model_dir == DEFAULT_MODEL_DIR else ""
        raise SemgenError(f"model folder {model_dir} does not exist{hint}")
    if not model_dir.is_dir():
        raise SemgenError(f"model folder {model_dir} is not a directory")
    need = ["model_index.json", "unet/config.json", "scheduler/scheduler_config.json", SEMGEN_CONFIG]
    missing = [n for n in need if not (model_dir / n).is_file()]
    if not any((model_dir / "unet").glob("diffusion_pytorch_model*.safetensors")) and \
            not any((model_dir / "unet").glob("diffusion_pytorch_model*.bin")):
        missing.append("unet/diffusion_pytorch_model.safetensors")
    if missing:
        raise SemgenError(f"model folder {model_dir} is not a semgen diffusion model: missing "
                          f"{', '.join(missing)}")
    for n in need:
        try:
            json.loads((model_dir / n).read_text())
        except (OSError, ValueError) as e:
            raise SemgenError(f"model folder {model_dir}: {n} is corrupt ({e})") from None
    index = json.loads((model_dir / "model_index.json").read_text())
    if index.get("_class_name") != SemgenDiffusionPipeline.__name__:
        raise SemgenError(f"model folder {model_dir} holds a {index.get('_class_name')!r} pipeline, "
                          f"not {SemgenDiffusionPipeline.__name__}")


def replace_dir_contents(src: Path, dst: Path, names) -> None:
    """Move ``names`` from ``src`` into ``dst``, replacing old ones (each move is a rename)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        s, d = src / name, dst / name
        if not s.exists():
            continue
        if d.is_dir():
            old = dst / f".{name}.old-{os.getpid()}"
            os.replace(d, old)
            os.replace(s, d)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(s, d)
