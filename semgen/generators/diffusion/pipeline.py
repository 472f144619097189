"""semgen model folders: load, save and check them; the pipelines are in :mod:`.pipeline_semgen`.

A model folder is a diffusers pipeline folder plus one semgen file::

    MODEL_DIR/model_index.json       "_class_name": ["pipeline_semgen", "SemgenDiffusionPipeline"],
                                     unet, scheduler, text_encoder / tokenizer ([null, null]: the
                                     packaged MiniLM, named by text_encoder_ref), max_length
    MODEL_DIR/pipeline_semgen.py     the pipeline classes (a copy of :mod:`.pipeline_semgen`)
    MODEL_DIR/unet/                  config.json + diffusion_pytorch_model.safetensors
    MODEL_DIR/scheduler/             scheduler_config.json (DDIM, the default sampler)
    MODEL_DIR/semgen_config.json     resolution, model config name, styles seen, training summary

diffusers alone loads it with ``DiffusionPipeline.from_pretrained(MODEL_DIR, trust_remote_code=True)``
(it runs the folder's ``pipeline_semgen.py``). :func:`load_pipeline` loads it without running
anything from the folder: the classes come from the installed package, the weights from
safetensors, the text encoder from its package.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ...compat import ensure_torchvision

ensure_torchvision()

import torch  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

from ... import __version__  # noqa: E402
from ...errors import SemgenError  # noqa: E402
from .model import sampling_scheduler  # noqa: E402
from .pipeline_semgen import (  # noqa: E402
    DEFAULT_TEXT_ENCODER,
    MAX_LENGTH,
    MODULE_NAME,
    SemgenDiffusionPipeline,
    SemgenImg2ImgPipeline,
)

SEMGEN_CONFIG = "semgen_config.json"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
PIPELINE_CLASSES = {c.__name__: c for c in (SemgenDiffusionPipeline, SemgenImg2ImgPipeline)}
#: What :func:`save_model` writes into a folder (train.py moves these into place as one step).
MODEL_FILES = ("model_index.json", f"{MODULE_NAME}.py", "unet", "scheduler", "text_encoder", "tokenizer",
               SEMGEN_CONFIG)

def load_pipeline(model_dir=None, *, img2img: bool = False, scheduler: str = "ddim", device="cpu"):
    """Load a model folder (default: the bundled model) as a semgen pipeline, computing in float32.

    Parameters
    ----------
    model_dir : path, optional
    img2img : bool
        :class:`SemgenImg2ImgPipeline` instead of :class:`SemgenDiffusionPipeline`.
    scheduler : {"ddim", "dpm"}
        The sampler, built from the folder's scheduler config (:func:`.model.sampling_scheduler`).
    device : str or torch.device

    Returns
    -------
    SemgenDiffusionPipeline or SemgenImg2ImgPipeline
        With two semgen attributes: ``model_dir`` (str) and ``semgen_config`` (dict).

    Raises :class:`SemgenError` naming what is missing or broken.

    Examples
    --------
    >>> pipe = load_pipeline()  # doctest: +SKIP
    >>> pipe("simulated SEM image, bridge defect", generator=seed_generators([0])).images[0].size  # doctest: +SKIP
    (128, 128)
    """
    model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    index = check_model_dir(model_dir)
    cls = SemgenImg2ImgPipeline if img2img else SemgenDiffusionPipeline
    try:
        semgen_config = json.loads((model_dir / SEMGEN_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise SemgenError(f"model folder {model_dir}: unreadable {SEMGEN_CONFIG} ({e})") from None
    try:
        with quiet_hf():
            from transformers import AutoModel, AutoTokenizer

            unet = UNet2DConditionModel.from_pretrained(str(model_dir), subfolder="unet", use_safetensors=True)
            sched_config = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
            parts = {}
            # a text encoder / tokenizer saved in the folder (not the packaged one): data, never code
            if (index.get("text_encoder") or [None])[0] is not None:
                parts["text_encoder"] = AutoModel.from_pretrained(
                    str(model_dir / "text_encoder"), local_files_only=True, use_safetensors=True).eval()
            if (index.get("tokenizer") or [None])[0] is not None:
                parts["tokenizer"] = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer"), local_files_only=True)
            pipe = cls(unet=unet.float(), scheduler=sampling_scheduler(sched_config, scheduler),
                       text_encoder_ref=index.get("text_encoder_ref", DEFAULT_TEXT_ENCODER),
                       max_length=int(index.get("max_length", MAX_LENGTH)), **parts)
    except SemgenError:
        raise
    except Exception as e:  # diffusers / transformers raise many kinds for a broken folder
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        raise SemgenError(f"model folder {model_dir} cannot be loaded ({type(e).__name__}: {msg}); "
                          "re-train or re-copy it") from None
    pipe.to(device)
    pipe.unet.eval()
    pipe.set_progress_bar_config(disable=True)  # semgen draws its own bar over whole runs
    pipe.model_dir = str(model_dir)
    pipe.semgen_config = semgen_config
    return pipe


def pipeline_for(pipe, *, img2img: bool = False, scheduler: str = "ddim"):
    """``pipe``'s components (shared, not copied) as a text-to-image or img2img pipeline sampling with
    ``scheduler`` ("ddim" or "dpm"), built once per run rather than per call."""
    cls = SemgenImg2ImgPipeline if img2img else SemgenDiffusionPipeline
    with quiet_hf():  # from_pipe casts to float32 (a no-op here) and diffusers warns about every cast
        new = cls.from_pipe(pipe, scheduler=sampling_scheduler(pipe.scheduler.config, scheduler))
    new.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    new.model_dir = getattr(pipe, "model_dir", None)
    new.semgen_config = getattr(pipe, "semgen_config", {})
    return new


def seed_generators(seeds) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per seed: image i's noise then depends on ``seeds[i]`` alone."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def save_model(pipe, save_directory, *, fp16: bool = False, semgen_config: dict | None = None) -> None:
    """Save ``pipe`` as a model folder: ``pipe.save_pretrained`` plus ``semgen_config.json``.

    ``fp16`` stores the UNet in half precision (half the file; :func:`load_pipeline` computes in
    float32). ``semgen_config`` updates the pipeline's own ``semgen_config``.
    """
    save_directory = Path(save_directory)
    unet = pipe.unet
    if fp16:
        with quiet_hf():  # diffusers warns about casting with .to(); the copy is only written, never run
            pipe.unet = _copy_unet(unet).to(torch.float16)
    try:
        pipe.save_pretrained(str(save_directory))
    finally:
        pipe.unet = unet
    cfg = dict(getattr(pipe, "semgen_config", None) or {})
    cfg.update(semgen_config or {})
    cfg.setdefault("semgen_version", __version__)
    cfg["weights_dtype"] = "float16" if fp16 else "float32"
    (save_directory / SEMGEN_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    pipe.semgen_config = cfg


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


def _copy_unet(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    new = UNet2DConditionModel.from_config(unet.config)
    new.load_state_dict(unet.state_dict())
    return new


def check_model_dir(model_dir: Path) -> dict:
    """Raise :class:`SemgenError` naming what is missing or broken in a model folder; return its index.

    Folders written before the pipeline module was shipped (``"_class_name": "SemgenDiffusionPipeline"``,
    a DDPM scheduler config) still load here; re-saving one with :func:`save_model` upgrades it.
    """
    model_dir = Path(model_dir)
    if not model_dir.exists():
        hint = (" (the bundled default model is not in this install; train one with `semgen diffuse train` "
                "and pass --model)") if model_dir == DEFAULT_MODEL_DIR else ""
        raise SemgenError(f"model folder {model_dir} does not exist{hint}")
    if not model_dir.is_dir():
        raise SemgenError(f"model folder {model_dir} is not a directory")
    need = ["model_index.json", "unet/config.json", "scheduler/scheduler_config.json", SEMGEN_CONFIG]
    missing = [n for n in need if not (model_dir / n).is_file()]
    if not any((model_dir / "unet").glob("diffusion_pytorch_model*.safetensors")):
        missing.append("unet/diffusion_pytorch_model.safetensors")  # never a pickled .bin: it can run code
    if missing:
        raise SemgenError(f"model folder {model_dir} is not a semgen diffusion model: missing "
                          f"{', '.join(missing)}")
    for n in need:
        try:
            json.loads((model_dir / n).read_text())
        except (OSError, ValueError) as e:
            raise SemgenError(f"model folder {model_dir}: {n} is corrupt ({e})") from None
    index = json.loads((model_dir / "model_index.json").read_text())
    name = index.get("_class_name") if isinstance(index, dict) else None
    name = name[-1] if isinstance(name, list) and len(name) == 2 else name
    if name not in PIPELINE_CLASSES:
        raise SemgenError(f"model folder {model_dir} holds a {name!r} pipeline, not "
                          f"{' or '.join(PIPELINE_CLASSES)}")
    return index


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
