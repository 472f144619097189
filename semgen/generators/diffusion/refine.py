"""SDEdit refinement: push each input image toward the real look while keeping its label and mask.

Each input is noised to ``strength`` of the schedule and denoised with the real-style caption of its
own record. The output record keeps the input's label, mask (copied byte for byte) and bboxes,
links its source by ``source_id``, and carries ``mask_agreement`` (see :mod:`.agreement`).
"""

from __future__ import annotations

import collections
import math
import sys

import cv2
import numpy as np

from ... import __version__
from ...errors import SemgenError
from ...imageio import encode_png, read_gray, sha256_bytes
from ...manifests import DatasetDir, current_command, lock_dir, record_key
from ...manifests.ops import link_or_copy
from ...seeding import image_seed
from .agreement import mask_agreement, summarize_agreement
from .captions import NEGATIVES, REAL_STYLE, SIM_STYLE, build_caption
from .sample import model_identity, placed


def refine(*, input, out, strength: float = 0.3, model=None, steps: int = 25, guidance: float = 2.0,
           seed: int = 0, batch: int = 8, scheduler: str = "ddim", style: str = REAL_STYLE,
           negative: str = "empty", limit: int | None = None, progress: bool = True, pipe=None,
           device: str = "auto", precision: str = "auto", backend=None) -> dict:
    """Refine every record of the dataset dir ``input`` into the dataset dir ``out``; resumable.

    Parameters
    ----------
    input, out : path
        Dataset dirs; ``out`` keeps the input's file names.
    strength : float in (0, 1]
        Fraction of the noise schedule applied (0.2-0.4 keeps the geometry; 1 regenerates).
    model : path, optional
        Model folder; None = the bundled default.
    pipe : SemgenDiffusionPipeline or SemgenImg2ImgPipeline, optional
        An already loaded model (:func:`.sample.load_model`), instead of ``model``.
    style : str
        The style phrase the captions ask for.
    negative : {"empty", "simulated"}
        The guidance's negative caption: the empty one (plain classifier-free guidance) or the
        record's own caption in the simulated style (a style-contrast direction).
    limit : int, optional
        Refine only the first ``limit`` records.
    device, precision : str
        Where to refine and in what precision (:mod:`semgen.devices`; as in :func:`.sample.sample`);
        in ``dataset.json`` as ``compute``.
    backend : semgen.parallel.Backend, optional
        Run the denoising batches there (``--executor ray``: :mod:`.batches`); this process reads
        the inputs, sends their pixels, and writes every output.

    Returns
    -------
    dict: ``out``, ``written``, ``skipped``, ``summary`` (mean agreement over all output records).
    """
    from ...progress import progress_bar

    if not 0.0 < strength <= 1.0:
        raise SemgenError(f"--strength must be in (0, 1], got {strength}")
    if batch < 1 or steps < 1:
        raise SemgenError("--batch and --steps must be >= 1")
    if not math.isfinite(guidance):  # nan would make every image nan, then fail after writing config
        raise SemgenError(f"--guidance must be a finite number, got {guidance}")
    if limit is not None and limit < 1:  # recs[:-2] would silently refine all but two
        raise SemgenError(f"--limit must be >= 1, got {limit}")
    if negative not in NEGATIVES:
        raise SemgenError(f"--negative must be one of {', '.join(NEGATIVES)}, got {negative!r}")
    src = DatasetDir.open(input)
    recs, seen, all_recs = [], set(), src.records()
    for r in all_recs:  # a record repeated in the input is refined once, not appended twice
        if record_key(r) not in seen:
            seen.add(record_key(r))
            recs.append(r)
    if len(recs) < len(all_recs):
        print(f"semgen: warning: {input}: {len(all_recs) - len(recs)} repeated record(s) refined once",
              file=sys.stderr)
    if limit is not None:
        recs = recs[:limit]
    if src.root.resolve() == DatasetDir(out).root.resolve():
        raise SemgenError("--out must differ from --input")
    pipe, comp = placed(pipe, model, device, precision)  # before creating --out: a bad model leaves nothing
    ds = DatasetDir.create(out)
    with lock_dir(ds.root):  # one run per dir: two would refine and append the same records (issue 14)
        from .batches import run_batches
        from .pipeline import pipeline_for

        img2img = pipeline_for(pipe, img2img=True, scheduler=scheduler)
        ident = model_identity(pipe)
        key = "diffuse-refine"
        config = {"input": str(src.root.resolve()), "strength": strength, "steps": steps, "guidance": guidance,
                  "seed": seed, "scheduler": scheduler, "style": style, **ident}
        if negative != "empty":  # absent for the default, so dirs refined before the option still resume
            config["negative"] = negative
        ds.check_config(key, config)
        ds.write_info(command=current_command(), config_key=key, config=config, extra={"compute": comp.record()})
        done = ds.keys()
        todo = [r for r in recs if record_key(r) not in done]
        bar = progress_bar(total=len(recs), initial=len(recs) - len(todo), desc="diffuse refine", unit="img",
                           enabled=progress)
        written = 0
        chunks = [todo[b:b + batch] for b in range(0, len(todo), batch)]

        sent: collections.deque = collections.deque()  # each batch's inputs, taken back with its images

        def batches():  # read lazily, as the batches are sent: at most a window of them in memory
            for chunk in chunks:
                inputs = [read_gray(src.path(r["file_name"])) for r in chunk]
                sent.append({"inputs": [im if im.dtype == np.uint8 else (im >> 8).astype(np.uint8) for im in inputs],
                             "prompts": [build_caption(r, style=style) for r in chunk],
                             "negatives": ([build_caption(r, style=SIM_STYLE) for r in chunk]
                                           if negative == "simulated" else None),
                             "seeds": [image_seed(seed, record_key(r), 0) for r in chunk]})
                yield sent[-1]

        # the batches run here or on the backend's workers; the images come back in order and only
        # this process writes, so a lost worker's batch is made again and appended once
        results = run_batches("refine", img2img, comp, {"strength": strength, "steps": steps, "guidance": guidance},
                              batches(), backend=backend, device=device, precision=precision, scheduler=scheduler)
        with ds.appender() as app:
            for chunk, outs in zip(chunks, results):
                b = sent.popleft()
                for rec, im_in, im_out, prompt, s in zip(chunk, b["inputs"], outs, b["prompts"], b["seeds"]):
                    if im_out.shape != im_in.shape:  # back to the input's size so its mask still fits
                        im_out = cv2.resize(im_out, im_in.shape[::-1], interpolation=cv2.INTER_CUBIC)
                    new = _output_record(rec, im_in, im_out, src, ds, prompt, s, strength, steps, guidance,
                                         scheduler, ident, negative)
                    app.append(new)
                    written += 1
                bar.update(len(chunk))
        bar.close()
        all_out = ds.records()
        summary = summarize_agreement([r["mask_agreement"] for r in all_out if isinstance(r.get("mask_agreement"), dict)])
        summary["strength"] = strength
        ds.write_info(command=current_command(), config_key=key, config=config,
                      extra={"refine_summary": summary, "compute": comp.record()})
        return {"out": str(ds.root), "written": written, "skipped": len(recs) - len(todo), "summary": summary}


def _output_record(rec, im_in, im_out, src, ds, prompt, seed, strength, steps, guidance, scheduler, ident,
                   negative="empty") -> dict:
    data = encode_png(im_out)
    fn = rec["file_name"]
    ds.write_file(fn, data)
    mask = None
    new = {
        "id": record_key(rec), "file_name": fn, "label": rec["label"], "source": "refined",
        "sha256": sha256_bytes(data), "width": int(im_out.shape[1]), "height": int(im_out.shape[0]),
        "generator": {"name": "diffusion-refine", "version": __version__}, "seed": int(seed),
        "prompt": prompt, "model": ident["model"], "steps": int(steps), "guidance": float(guidance),
        "source_id": record_key(rec),
        "params": {"strength": float(strength), "scheduler": scheduler, "negative": negative,
                   "model_sha256": ident["model_sha256"],
                   "model_steps": ident["model_steps"], "source_source": rec.get("source"),
                   "source_sha256": rec.get("sha256")},
    }
    for k in ("meta", "bboxes"):
        if k in rec:
            new[k] = rec[k]
    if rec.get("mask_file_name"):
        mfn = rec["mask_file_name"]
        dst = link_or_copy(src.path(mfn), ds.path(mfn))  # the source's mask, never re-encoded
        new["mask_file_name"] = mfn
        mask = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
        if mask is not None and mask.ndim == 3:
            mask = mask[..., 0]
        if mask is not None and mask.shape != im_in.shape:
            mask = None
    new["mask_agreement"] = mask_agreement(im_in, im_out, mask)
    return new
