"""Text-to-image sampling into a dataset dir (DDIM / DPM-Solver with classifier-free guidance)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path


from ... import __version__
from ...errors import SemgenError
from ...imageio import encode_png, sha256_bytes, sha256_file
from ...manifests import DatasetDir, current_command, lock_dir
from ...seeding import image_seed
from ...taxonomy import canonical
from .captions import REAL_STYLE, SIM_STYLE, class_prompt, label_from_prompt


#: Most images one ``sample`` call makes (its ids are listed up front).
MAX_N = 10_000_000


def load_model(model=None, *, device="cpu"):
    """The pipeline of a model folder (``None``: the bundled default); see :func:`.pipeline.load_pipeline`."""
    from .pipeline import load_pipeline

    return load_pipeline(model, device=device)


def placed(pipe, model, device: str, precision: str):
    """``(pipe, compute)``: the given pipeline (or ``model`` loaded) on the device that ``device`` /
    ``precision`` resolve to (:func:`semgen.devices.compute`), and that :class:`~semgen.devices.Compute`,
    whose ``autocast()`` the sampling runs under (nothing on the CPU, so CPU bytes are unchanged)."""
    from ...devices import compute

    comp = compute(device, precision)  # before anything loads: --device cuda without a GPU fails at once
    if pipe is None:
        pipe = load_model(model, device=comp.device)
    elif getattr(pipe, "device", comp.device) != comp.device:  # a pipeline-like object without one: as given
        pipe.to(comp.device)
    return pipe, comp


def model_identity(pipe) -> dict:
    """What a record names as its model: the folder given, and a hash of the UNet weights."""
    from .pipeline import DEFAULT_MODEL_DIR

    d = Path(pipe.model_dir)
    weights = sorted((d / "unet").glob("diffusion_pytorch_model*.safetensors"))
    name = "default" if d.resolve() == DEFAULT_MODEL_DIR.resolve() else str(d)
    return {"model": name, "model_sha256": sha256_file(weights[0])[:16] if weights else None,
            "model_steps": pipe.semgen_config.get("trained_steps")}


def default_style(pipe) -> str:
    """The real style if the model saw real images in training, else the simulated style."""
    return REAL_STYLE if REAL_STYLE in pipe.semgen_config.get("styles", []) else SIM_STYLE


def sample(*, out, n: int, prompt: str | None = None, label: str | None = None, model=None, steps: int = 25,
           guidance: float = 3.0, seed: int = 0, batch: int = 8, scheduler: str = "ddim",
           progress: bool = True, pipe=None, device: str = "auto", precision: str = "auto",
           backend=None) -> dict:
    """Generate ``n`` images for a prompt (or a class) into the dataset dir ``out``; resumable.

    Parameters
    ----------
    out : path
        Dataset dir to write (created; re-running with the same arguments fills in what is missing).
    n : int
    prompt : str, optional
        Free text; its class is read from it unless ``label`` is given.
    label : str, optional
        Class of the records; without ``prompt`` the prompt is :func:`.captions.class_prompt`.
    model : path, optional
        Model folder; None = the bundled default.
    steps, guidance, seed, batch, scheduler
        Sampler steps, classifier-free guidance weight, master seed, images per forward pass,
        ``ddim`` or ``dpm``.
    pipe : SemgenDiffusionPipeline, optional
        An already loaded model (:func:`load_model`), instead of ``model``.
    device, precision : str
        Where to sample and in what precision (:mod:`semgen.devices`; ``auto``: the GPU with bf16
        autocast if there is one, else the CPU in fp32); in ``dataset.json`` as ``compute``. The
        starting noise is drawn on the CPU from each image's seed on any device, but only CPU
        bytes are reproducible exactly (GPU kernels and 16-bit arithmetic differ).
    backend : semgen.parallel.Backend, optional
        Run the denoising batches there (``--executor ray``: :mod:`.batches`); each worker loads
        the model from the same folder path on its machine and resolves ``device`` there.

    Returns
    -------
    dict with ``out``, ``written``, ``skipped``, ``label``, ``prompt``.
    """
    from ...progress import progress_bar

    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise SemgenError(f"--n must be an integer in [1, {MAX_N}], got {n}")  # 1e20 hung growing a list
    if batch < 1 or steps < 1:
        raise SemgenError("--batch and --steps must be >= 1")
    if not math.isfinite(guidance):  # nan makes every image nan
        raise SemgenError(f"--guidance must be a finite number, got {guidance}")
    if prompt is None and label is None:
        raise SemgenError("give --prompt or --class")
    label = canonical(label) if label is not None else label_from_prompt(prompt)
    pipe, comp = placed(pipe, model, device, precision)  # before creating --out: a bad model leaves nothing
    ds = DatasetDir.create(out)
    with lock_dir(ds.root):  # one run per dir: two would write the same images twice (issue 14)
        from .batches import run_batches
        from .pipeline import pipeline_for

        t2i = pipeline_for(pipe, scheduler=scheduler)
        if prompt is None:
            prompt = class_prompt(label, style=default_style(pipe))
        ident = model_identity(pipe)
        phash = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        key = f"diffuse-sample/{label}/{phash}"
        config = {"prompt": prompt, "label": label, "steps": steps, "guidance": guidance, "seed": seed,
                  "scheduler": scheduler, **ident}
        ds.check_config(key, config)
        ds.write_info(command=current_command(), config_key=key, config=config, extra={"compute": comp.record()})
        done = ds.keys()
        ids = [f"diffusion-{label}-{phash}-{i:06d}" for i in range(n)]
        todo = [i for i in range(n) if ids[i] not in done]
        bar = progress_bar(total=n, initial=n - len(todo), desc=f"diffuse sample {label}", unit="img",
                           enabled=progress)
        written = 0
        groups = [todo[b:b + batch] for b in range(0, len(todo), batch)]
        seeds_of = [[image_seed(seed, f"{label}|{prompt}", i) for i in idx] for idx in groups]
        # the batches run here or on the backend's workers; their images come back in order and
        # only this process writes, so a lost worker's batch is made again and written once
        made_all = run_batches("sample", t2i, comp, {"prompt": prompt, "steps": steps, "guidance": guidance},
                               ({"seeds": ss} for ss in seeds_of), backend=backend, device=device,
                               precision=precision, scheduler=scheduler)
        with ds.appender() as app:
            for idx, seeds, made in zip(groups, seeds_of, made_all):
                for i, s, img in zip(idx, seeds, made):
                    data = encode_png(img)
                    fn = f"images/{label}/{ids[i]}.png"
                    ds.write_file(fn, data)
                    app.append({
                        "id": ids[i], "file_name": fn, "label": label, "source": "diffusion",
                        "sha256": sha256_bytes(data), "width": int(img.shape[1]), "height": int(img.shape[0]),
                        "generator": {"name": "diffusion", "version": __version__}, "seed": int(s),
                        "prompt": prompt, "model": ident["model"], "steps": int(steps), "guidance": float(guidance),
                        "params": {"scheduler": scheduler, "index": i, "master_seed": int(seed),
                                   "model_sha256": ident["model_sha256"], "model_steps": ident["model_steps"]},
                    })
                    written += 1
                bar.update(len(idx))
        bar.close()
        ds.write_info(command=current_command(), config_key=key, config=config)
        return {"out": str(ds.root), "written": written, "skipped": n - len(todo), "label": label, "prompt": prompt}


