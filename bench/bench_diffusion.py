"""Diffusion benchmarks: speed, realism (KID, precision / recall) and memorisation. Prints figures.

    python bench/bench_diffusion.py speed [--model DIR] [--n 16] [--steps 25] [--batch 8]
    python bench/bench_diffusion.py realism --ref REAL_DIR --set NAME=DIR ... [--classifier RUN_DIR]
        [--paired RAW:REFINED ...]
    python bench/bench_diffusion.py memorization --samples DIR --train DIR ...
    python bench/bench_diffusion.py sheet --set NAME=DIR ... --out PNG

``speed``: sampling images/s at the model's resolution (DDIM, classifier-free guidance, so two UNet
passes per step) and training steps/s at the default configuration ("small", batch 8, 128 px).

``realism``: kernel inception-style distance (KID, unbiased polynomial-kernel MMD^2, mean of random
subsets) and k-NN precision / recall (Kynkaanniemi et al. 2019, k = 3) between each set and the
reference, on features of the project's classifier (``--classifier RUN_DIR``: the penultimate
layer of :func:`semgen.classifier.load_run`'s model) or, without one, on the documented fallback
features: a fixed, training-free texture descriptor (see :func:`texture_features`).

With ``--paired A:B`` (B made from A image by image, matched by file name): the KID of each on all
their images, and the difference B - A with a 95 % interval from a joint bootstrap of the pairs and
the reference (:func:`paired_kid`): far tighter than comparing two subset-KID spreads, because the
pairs share their content and only the change between them is measured.

``memorization``: for each sample, the nearest training image by the RMS difference of z-scored
32 x 32 thumbnails, and the verified near-duplicates of curation's check
(:func:`semgen.curation.dedup.cross_pairs`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load_u8(path, size=128, limit=None, seed=0):
    """uint8 (N, size, size) images of a dataset dir or ImageFolder tree (a seeded subset if ``limit``)."""
    from semgen.imageio import read_gray, resize_square
    from semgen.manifests import DatasetDir
    from semgen.manifests.imagefolder import is_dataset_dir, scan_imagefolder

    p = Path(path)
    if is_dataset_dir(p):
        ds = DatasetDir.open(p)
        files = [str(ds.path(r["file_name"])) for r in ds.records()]
    else:
        files = [str(p / rel) for rel, _ in scan_imagefolder(p)]
    files.sort()  # so that a refined dir and its input (same file names) subset the same images
    if limit and len(files) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
        files = [files[i] for i in idx]
    out = []
    for f in files:
        im = read_gray(f)
        if im.dtype != np.uint8:
            im = (im >> 8).astype(np.uint8)
        out.append(resize_square(im, size))
    return np.stack(out), files


from realism import (  # noqa: E402  (bench/realism.py, beside this script)
    classifier_features, kid, normalize_features, paired_kid, precision_recall, texture_features)


# -- commands ---------------------------------------------------------------------------------------
def cmd_speed(a) -> dict:
    import torch

    from semgen.generators.diffusion.model import build_unet, sampling_scheduler, train_scheduler
    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline, load_pipeline, seed_generators
    from semgen.generators.diffusion.train import denoising_loss

    torch.set_num_threads(a.threads)
    if a.model:
        pipe = load_pipeline(a.model)
    else:
        torch.manual_seed(0)
        pipe = SemgenDiffusionPipeline(build_unet("small", 128), sampling_scheduler(train_scheduler().config))
        pipe.set_progress_bar_config(disable=True)
    prompts = ["simulated SEM image, top-down, vertical lines, bridge defect"] * a.batch
    pipe(prompts[:1], num_inference_steps=2, generator=seed_generators([0]))  # warm-up (allocator)
    t = time.perf_counter()
    done = 0
    while done < a.n:
        k = min(a.batch, a.n - done)
        pipe(prompts[:k], num_inference_steps=a.steps, guidance_scale=3.0,
             generator=seed_generators(range(done, done + k)))
        done += k
    dt = time.perf_counter() - t
    res = {"resolution": pipe.resolution, "steps": a.steps, "batch": a.batch, "images": a.n,
           "sample_images_per_s": round(a.n / dt, 4), "sample_s_per_image": round(dt / a.n, 3)}
    # training steps/s of the default configuration on random data
    unet = build_unet("small", 128).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(unet.parameters(), 3e-4)
    emb, mask = pipe.encode_prompt(prompts[:8])
    x0 = torch.rand(8, 1, 128, 128).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    sched = train_scheduler()
    for i in range(a.train_steps + 2):
        if i == 2:
            t = time.perf_counter()
        loss = denoising_loss(unet, sched, x0, emb, mask, g)
        loss.backward()
        opt.step()
        opt.zero_grad()
    res["train_steps_per_s_small_b8"] = round(a.train_steps / (time.perf_counter() - t), 4)
    res["params_small_M"] = round(sum(p.numel() for p in unet.parameters()) / 1e6, 3)
    return res


def cmd_realism(a) -> dict:
    sets = dict(s.split("=", 1) for s in a.set)
    ref, _ = _load_u8(a.ref, limit=a.limit, seed=1)
    loaded = {name: _load_u8(p, limit=a.limit, seed=2) for name, p in sets.items()}
    keys = {name: [os.path.relpath(f, sets[name]) for f in v[1]] for name, v in loaded.items()}
    if a.classifier:
        feat = lambda x: classifier_features(a.classifier, x)  # noqa: E731
        kind = f"classifier {a.classifier} (pre-logits)"
    else:
        kind = "fallback texture features (realism.texture_features), z-scored by the reference"
        feat = texture_features
    fr = feat(ref)
    fs = {k: feat(v[0]) for k, v in loaded.items()}
    if not a.classifier:  # mixed units: put every column on the reference's scale
        mu, sd = fr.mean(0), fr.std(0) + 1e-8
        fr, fs = (fr - mu) / sd, {k: (f - mu) / sd for k, f in fs.items()}
    res = {"features": kind, "reference": a.ref, "n_ref": len(ref), "kid_scale": a.scale, "by_normalization": {}}
    for how in a.normalize:
        r_ = normalize_features(fr, how)
        f_ = {k: normalize_features(f, how) for k, f in fs.items()}
        out = {"sets": {}, "paired": {}}
        for k, f in f_.items():
            m, sd_ = kid(f, r_, subset_size=a.subset)
            p, r = precision_recall(r_, f)
            out["sets"][k] = {"path": sets[k], "n": len(f), "kid": round(m * a.scale, 4),
                              "kid_subset_std": round(sd_ * a.scale, 4), "precision": round(p, 4), "recall": round(r, 4)}
        for pair in a.paired or []:
            base, other = pair.split(":", 1)
            ka = {k: i for i, k in enumerate(keys[base])}
            kb = {k: i for i, k in enumerate(keys[other])}
            common = sorted(ka.keys() & kb.keys())
            if len(common) < 10:
                raise SystemExit(f"--paired {pair}: only {len(common)} file names in common")
            ia = np.asarray([ka[c] for c in common])
            ib = np.asarray([kb[c] for c in common])
            pk = paired_kid(f_[base][ia], f_[other][ib], r_, boot=a.boot)
            for key in ("kid_a", "kid_b", "diff"):
                pk[key] = round(pk[key] * a.scale, 4)
            pk["diff_ci95"] = [round(v * a.scale, 4) for v in pk["diff_ci95"]]
            pk["relative_change"] = None if pk["relative_change"] is None else round(pk["relative_change"], 4)
            pk["p_b_not_closer"] = round(pk["p_b_not_closer"], 4)
            out["paired"][pair] = pk
        res["by_normalization"][how] = out
    return res


def cmd_memorization(a) -> dict:
    from semgen.curation.analyze import THUMB_SIZE, thumbnail
    from semgen.curation.dedup import cross_pairs
    from semgen.curation.hashing import raw_phash, simhash

    samples, sfiles = _load_u8(a.samples)
    train = np.concatenate([_load_u8(t)[0] for t in a.train])

    def thumbs(x):
        return np.stack([thumbnail(im) for im in x])

    ts, tt = thumbs(samples), thumbs(train)

    def z(t):
        t = t.reshape(len(t), -1)
        return (t - t.mean(1, keepdims=True)) / (t.std(1, keepdims=True) + 1e-6)

    zs, zt = z(ts), z(tt)
    nn_rms = []
    for i in range(0, len(zs), 256):
        d = ((zs[i:i + 256, None] - zt[None]) ** 2).mean(-1)
        nn_rms.append(np.sqrt(d.min(1)))
    nn_rms = np.concatenate(nn_rms)
    sh_s = [simhash(t) for t in ts]
    sh_t = [simhash(t) for t in tt]
    ph_s = [raw_phash(im) for im in samples]
    ph_t = [raw_phash(im) for im in train]
    from semgen.curation.metrics import noise_sigma

    # curation's verification wants each thumbnail's expected noise (grey levels): sigma / pixels averaged
    ns = [noise_sigma(im) / max(im.shape[0] / THUMB_SIZE, 1.0) for im in samples]
    nt = [noise_sigma(im) / max(im.shape[0] / THUMB_SIZE, 1.0) for im in train]
    pairs = cross_pairs(sh_s, ph_s, ts.reshape(len(ts), -1), ns, sh_t, ph_t, tt.reshape(len(tt), -1), nt)
    return {"samples": a.samples, "n_samples": len(samples), "n_train": len(train),
            "nearest_rms_min": round(float(nn_rms.min()), 4), "nearest_rms_median": round(float(np.median(nn_rms)), 4),
            "near_duplicates": int(len(np.unique(pairs["q"]))),
            "note": "nearest_rms: RMS of z-scored 32x32 thumbnails (0 = identical; curation calls <= 0.6 with "
                    "no local blob a near-duplicate)"}


def cmd_sheet(a) -> dict:
    """Rows = sets (paired by file name), columns = one image per class: the same source in every row."""
    import cv2

    from semgen.generators.procedural.sheet import _thumb
    from semgen.manifests import DatasetDir

    sets = [s.split("=", 1) for s in a.set]
    first = DatasetDir.open(sets[0][1])
    by_class: dict = {}
    rng = np.random.default_rng(a.seed)
    recs = first.records()
    for i in rng.permutation(len(recs)):
        by_class.setdefault(recs[i]["label"], recs[i]["file_name"])
    cols = sorted(by_class.items())
    c, pad = a.cell, 110
    sheet = np.full((len(sets) * c + 20, pad + len(cols) * c), 255, np.uint8)
    for j, (label, _) in enumerate(cols):
        cv2.putText(sheet, label, (pad + j * c + 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
    for i, (name, path) in enumerate(sets):
        ds = DatasetDir.open(path)
        y = 20 + i * c
        cv2.putText(sheet, name, (4, y + c // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
        for j, (_, fn) in enumerate(cols):
            sheet[y:y + c, pad + j * c:pad + (j + 1) * c] = _thumb(ds.path(fn), c)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(a.out, sheet)
    return {"out": a.out, "rows": [n for n, _ in sets], "columns": [lb for lb, _ in cols]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--model", default=None)
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--steps", type=int, default=25)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--train-steps", type=int, default=5)
    s.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("realism")
    r.add_argument("--ref", required=True)
    r.add_argument("--set", action="append", required=True, metavar="NAME=DIR")
    r.add_argument("--classifier", default=None)
    r.add_argument("--limit", type=int, default=400)
    r.add_argument("--subset", type=int, default=50)
    r.add_argument("--paired", action="append", metavar="A:B",
                   help="sets whose images are pairs by file name (e.g. raw:refined): KID difference with a "
                        "joint bootstrap 95%% interval")
    r.add_argument("--boot", type=int, default=1000)
    r.add_argument("--normalize", nargs="+", default=["raw", "l2"], choices=("raw", "l2"),
                   help="features as they are (standard KID) and / or rows scaled to norm sqrt(d)")
    r.add_argument("--scale", type=float, default=1000.0, help="KID is printed x this (KID x 1000 is customary)")
    m = sub.add_parser("memorization")
    m.add_argument("--samples", required=True)
    m.add_argument("--train", action="append", required=True)
    sh = sub.add_parser("sheet", help="contact sheet: one image per class, the same source in every set")
    sh.add_argument("--set", action="append", required=True, metavar="NAME=DIR")
    sh.add_argument("--out", required=True)
    sh.add_argument("--cell", type=int, default=128)
    sh.add_argument("--seed", type=int, default=0)
    for p in (s, r, m, sh):
        p.add_argument("--json", default=None, help="also write the result here")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = {"speed": cmd_speed, "realism": cmd_realism, "memorization": cmd_memorization,
           "sheet": cmd_sheet}[a.cmd](a)
    res["load_avg"] = os.getloadavg()
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
