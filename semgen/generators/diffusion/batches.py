"""Denoising batches of ``diffuse sample`` / ``diffuse refine``: run here, or as tasks of a backend.

A batch is a pure function of the model, the run's settings and the batch's own inputs (seeds,
prompts, input images): :func:`sample_batch` and :func:`refine_batch` compute it from a loaded
pipeline. :func:`run_batches` runs them on this process's pipeline, or, given a backend
(``--executor ray``), as one task per batch: each worker process loads the model folder once, from
the same path on its own machine, checks that its UNet weights are those of this run
(``model_sha256``), and returns the images; the caller writes them in batch order, as a local run
does. So the files and records are the same; only where the UNet ran differs.

Examples
--------
>>> from semgen.generators.diffusion.batches import run_batches
>>> imgs = run_batches("sample", pipe, comp, settings, [{"seeds": [1, 2]}])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Iterable, Iterator

import cv2
import numpy as np

from ...errors import SemgenError


def sample_batch(t2i, comp, settings: dict, batch: dict) -> list[np.ndarray]:
    """Text-to-image: one image per seed of ``batch["seeds"]`` for ``settings["prompt"]`` (uint8 arrays)."""
    from .pipeline import seed_generators

    seeds = batch["seeds"]
    with comp.autocast():
        made = t2i([settings["prompt"]] * len(seeds), num_inference_steps=settings["steps"],
                   guidance_scale=settings["guidance"], generator=seed_generators(seeds)).images
    return [np.asarray(im) for im in made]


def refine_batch(img2img, comp, settings: dict, batch: dict) -> list[np.ndarray]:
    """SDEdit: ``batch["inputs"]`` (uint8) denoised toward ``batch["prompts"]``, at the model's resolution."""
    from .pipeline import seed_generators

    res = img2img.resolution
    x = np.stack([im if im.shape == (res, res) else cv2.resize(im, (res, res), interpolation=cv2.INTER_AREA)
                  for im in batch["inputs"]])
    with comp.autocast():
        outs = img2img(batch["prompts"], image=x, strength=settings["strength"], negative_prompt=batch["negatives"],
                       num_inference_steps=settings["steps"], guidance_scale=settings["guidance"],
                       generator=seed_generators(batch["seeds"])).images
    return [np.asarray(im) for im in outs]


_BATCH = {"sample": sample_batch, "refine": refine_batch}

#: A worker process's loaded model: ((model dir, weights hash, device, precision, kind, scheduler), pipeline, compute).
_WORKER_MODEL: tuple | None = None


class RemoteBatch:
    """One batch as a backend task: the model is named by its folder and weights hash, not shipped."""

    def __init__(self, kind: str, model_dir: str, model_sha256: str | None, device: str, precision: str,
                 scheduler: str, settings: dict, threads: int | None = None):
        self.kind, self.model_dir, self.model_sha256 = kind, model_dir, model_sha256
        self.device, self.precision, self.scheduler, self.settings = device, precision, scheduler, settings
        self.threads = threads

    def _pipeline(self):
        global _WORKER_MODEL
        key = (self.model_dir, self.model_sha256, self.device, self.precision, self.kind, self.scheduler)
        if _WORKER_MODEL is None or _WORKER_MODEL[0] != key:
            import socket

            from ...devices import compute
            from .pipeline import load_pipeline, pipeline_for
            from .sample import model_identity

            comp = compute(self.device, self.precision)
            try:
                pipe = load_pipeline(self.model_dir, device=comp.device)
            except SemgenError as e:
                raise SemgenError(f"on {socket.gethostname()}: {e} (every node needs the model folder at the "
                                  "same path)") from None
            if model_identity(pipe)["model_sha256"] != self.model_sha256:
                raise SemgenError(f"on {socket.gethostname()}: the model folder {self.model_dir} holds other "
                                  "weights than on the machine that runs semgen: copy the same folder to every node")
            _WORKER_MODEL = None  # the old model is freed before the next is used
            variant = pipeline_for(pipe, img2img=self.kind == "refine", scheduler=self.scheduler)
            _WORKER_MODEL = (key, variant, comp)
        return _WORKER_MODEL[1], _WORKER_MODEL[2]

    def __call__(self, batch: dict) -> list[np.ndarray]:
        pipe, comp = self._pipeline()
        if self.threads and comp.device.type == "cpu":
            import torch

            # the caller's torch thread count: a CPU kernel splits its sums by thread count, so a
            # worker with another count (Ray's workers default to 1) makes other last bits, other bytes
            torch.set_num_threads(int(self.threads))
        return _BATCH[self.kind](pipe, comp, self.settings, batch)


def run_batches(kind: str, pipe, comp, settings: dict, batches: Iterable[dict], *, backend=None,
                device: str = "auto", precision: str = "auto", scheduler: str = "ddim") -> Iterator[list[np.ndarray]]:
    """The images of each batch, in order: on ``pipe`` here, or as tasks of ``backend``.

    Parameters
    ----------
    kind : {"sample", "refine"}
    pipe
        The run's pipeline (text-to-image for ``sample``, img2img for ``refine``); with a backend
        it names the model (``model_dir`` and its weights hash) that each worker loads.
    comp : semgen.devices.Compute
        Where ``pipe`` runs.
    settings : dict
        What every batch shares (prompt or strength, steps, guidance).
    batches : iterable of dict
        Each batch's own inputs; consumed lazily.
    backend : semgen.parallel.Backend, optional
        Run each batch there (:func:`semgen.parallel.make_backend`); its workers resolve
        ``device`` / ``precision`` on their own machine.
    """
    if backend is None:
        for b in batches:
            yield _BATCH[kind](pipe, comp, settings, b)
        return
    from ...parallel import ordered_map
    from .sample import model_identity

    import torch

    task = RemoteBatch(kind, str(pipe.model_dir), model_identity(pipe)["model_sha256"], str(device),
                       str(precision), scheduler, settings, threads=torch.get_num_threads())
    workers = max(1, int(getattr(backend, "workers", 1)))
    yield from ordered_map(task, batches, backend=backend, window=2 * workers)
