"""Diffusion benchmarks: speed, realism (KID, precision / recall) and memorisation. Prints figures.

    python bench/bench_diffusion.py speed [--model DIR] [--n 16] [--steps 25] [--batch 8]
    python bench/bench_diffusion.py realism --ref REAL_DIR --set NAME=DIR ... [--classifier RUN_DIR]
    python bench/bench_diffusion.py memorization --samples DIR --train DIR ...

``speed``: sampling images/s at the model's resolution (DDIM, classifier-free guidance, so two UNet
passes per step) and training steps/s at the default configuration ("small", batch 8, 128 px).

``realism``: kernel inception-style distance (KID, unbiased polynomial-kernel MMD^2, mean of random
subsets) and k-NN precision / recall (Kynkaanniemi et al. 2019, k = 3) between each set and the
reference, on features of the project's classifier (``--classifier RUN_DIR``: the penultimate
layer of :func:`semgen.classifier.load_run`'s model) or, without one, on the documented fallback
features: a fixed, training-free texture descriptor (see :func:`texture_features`).

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
    import cv2

    from semgen.imageio import read_gray
    from semgen.manifests import DatasetDir
    from semgen.manifests.imagefolder import is_dataset_dir, scan_imagefolder

    p = Path(path)
    if is_dataset_dir(p):
        ds = DatasetDir.open(p)
        files = [str(ds.path(r["file_name"])) for r in ds.records()]
    else:
        files = [str(p / rel) for rel, _ in scan_imagefolder(p)]
    if limit and len(files) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
        files = [files[i] for i in idx]
    out = []
    for f in files:
        im = read_gray(f)
        if im.dtype != np.uint8:
            im = (im >> 8).astype(np.uint8)
        if im.shape != (size, size):
            im = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA if min(im.shape) >= size else cv2.INTER_CUBIC)
        out.append(im)
    return np.stack(out), files


# -- features ---------------------------------------------------------------------------------------
def texture_features(images: np.ndarray) -> np.ndarray:
    """Fallback features (no training, no download): per image, a 64-d descriptor of
    the grey-level histogram (16 bins), the radially averaged log power spectrum (16 rings), the
    gradient-orientation histogram weighted by magnitude (16 bins, 0-180 deg), and local-contrast
    statistics at 4 scales (mean and std of |I - blur_s(I)|, 8 values), plus 8 moments; each
    column z-scored over the union of the compared sets by the caller."""
    import cv2

    feats = []
    n = images.shape[1]
    yy, xx = np.mgrid[:n, :n] - n // 2
    ring = np.minimum((np.hypot(yy, xx) / (n / 2) * 16).astype(int), 15)
    for im in images:
        f = im.astype(np.float32) / 255.0
        hist = np.histogram(f, 16, (0, 1))[0] / f.size
        spec = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(f - f.mean()))) ** 2)
        rad = np.bincount(ring.ravel(), spec.ravel(), 16) / np.maximum(np.bincount(ring.ravel(), minlength=16), 1)
        gx, gy = cv2.Sobel(f, cv2.CV_32F, 1, 0), cv2.Sobel(f, cv2.CV_32F, 0, 1)
        mag, ang = np.hypot(gx, gy), np.mod(np.degrees(np.arctan2(gy, gx)), 180)
        ori = np.histogram(ang, 16, (0, 180), weights=mag)[0] / max(mag.sum(), 1e-6)
        lc = []
        for s in (1, 2, 4, 8):
            d = np.abs(f - cv2.GaussianBlur(f, (0, 0), s))
            lc += [d.mean(), d.std()]
        mom = [f.mean(), f.std(), ((f - f.mean()) ** 3).mean() / max(f.std(), 1e-6) ** 3,
               ((f - f.mean()) ** 4).mean() / max(f.std(), 1e-6) ** 4, mag.mean(), mag.std(),
               np.percentile(f, 5), np.percentile(f, 95)]
        feats.append(np.concatenate([hist, rad, ori, lc, mom]))
    return np.asarray(feats, np.float64)


def classifier_features(run_dir, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Penultimate-layer features of a semgen classifier run (pre-logits of its timm backbone)."""
    import torch

    from semgen.classifier import load_run

    model, meta = load_run(run_dir)
    size = meta["size"]
    import cv2

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            b = images[i:i + batch]
            if b.shape[1] != size:
                b = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in b])
            x = torch.from_numpy(b).float().div(255.0)[:, None]
            x = (x - model.mean) / model.std
            f = model.net.forward_head(model.net.forward_features(x), pre_logits=True)
            out.append(f.flatten(1).double().numpy())
    return np.concatenate(out)


# -- metrics ----------------------------------------------------------------------------------------
def kid(x: np.ndarray, y: np.ndarray, *, subsets: int = 50, subset_size: int = 100, seed: int = 0):
    """KID: unbiased MMD^2 with the kernel (x.y / d + 1)^3, mean and std over random subsets."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    vals = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3):
    """k-NN manifold precision (fake inside real's manifold) and recall (real inside fake's)."""
    def radii(a):
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]

    def inside(a, ra, b):
        d = np.sqrt(((b[:, None] - a[None]) ** 2).sum(-1))
        return float(np.mean((d <= ra[None]).any(1)))

    rr, rf = radii(real), radii(fake)
    return inside(real, rr, fake), inside(fake, rf, real)


# -- commands ---------------------------------------------------------------------------------------
def cmd_speed(a) -> dict:
    import torch

    from semgen.generators.diffusion.model import build_unet, train_scheduler
    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline
    from semgen.generators.diffusion.text_encoder import get_text_encoder
    from semgen.generators.diffusion.train import denoising_loss

    torch.set_num_threads(a.threads)
    if a.model:
        pipe = SemgenDiffusionPipeline.load(a.model)
    else:
        torch.manual_seed(0)
        pipe = SemgenDiffusionPipeline(build_unet("small", 128), train_scheduler())
    prompts = ["simulated SEM image, top-down, vertical lines, bridge defect"] * a.batch
    pipe(prompts[:1], [0], num_inference_steps=2)  # warm-up (text encoder load, allocator)
    t = time.perf_counter()
    done = 0
    while done < a.n:
        k = min(a.batch, a.n - done)
        pipe(prompts[:k], list(range(done, done + k)), num_inference_steps=a.steps, guidance_scale=3.0)
        done += k
    dt = time.perf_counter() - t
    res = {"resolution": pipe.resolution, "steps": a.steps, "batch": a.batch, "images": a.n,
           "sample_images_per_s": round(a.n / dt, 4), "sample_s_per_image": round(dt / a.n, 3)}
    # training steps/s of the default configuration on random data
    unet = build_unet("small", 128).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(unet.parameters(), 3e-4)
    te = get_text_encoder()
    emb, mask = te.encode(prompts[:8])
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
    imgs = {name: _load_u8(p, limit=a.limit, seed=2)[0] for name, p in sets.items()}
    if a.classifier:
        feat = lambda x: classifier_features(a.classifier, x)  # noqa: E731
        kind = f"classifier {a.classifier}"
    else:
        feat = texture_features
        kind = "fallback texture features (bench_diffusion.texture_features)"
    fr = feat(ref)
    fs = {k: feat(v) for k, v in imgs.items()}
    allf = np.concatenate([fr] + list(fs.values()))
    mu, sd = allf.mean(0), allf.std(0) + 1e-8
    z = lambda f: (f - mu) / sd  # noqa: E731
    res = {"features": kind, "reference": a.ref, "n_ref": len(ref), "sets": {}}
    for k, f in fs.items():
        m, s = kid(z(f), z(fr), subset_size=a.subset)
        p, r = precision_recall(z(fr), z(f))
        res["sets"][k] = {"path": sets[k], "n": len(f), "kid": round(m, 5), "kid_std": round(s, 5),
                          "precision": round(p, 4), "recall": round(r, 4)}
    return res


def cmd_memorization(a) -> dict:
    from semgen.curation.dedup import cross_pairs
    from semgen.curation.hashing import raw_phash, simhash

    import cv2

    samples, sfiles = _load_u8(a.samples)
    train = np.concatenate([_load_u8(t)[0] for t in a.train])

    def thumbs(x):
        return np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA) for im in x]).astype(np.float32)

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
    ns = [noise_sigma(im) / max(im.shape[0] / 32, 1.0) for im in samples]
    nt = [noise_sigma(im) / max(im.shape[0] / 32, 1.0) for im in train]
    pairs = cross_pairs(sh_s, ph_s, ts.reshape(len(ts), -1), ns, sh_t, ph_t, tt.reshape(len(tt), -1), nt)
    return {"samples": a.samples, "n_samples": len(samples), "n_train": len(train),
            "nearest_rms_min": round(float(nn_rms.min()), 4), "nearest_rms_median": round(float(np.median(nn_rms)), 4),
            "near_duplicates": int(len(np.unique(pairs["q"]))),
            "note": "nearest_rms: RMS of z-scored 32x32 thumbnails (0 = identical; curation calls <= 0.6 with "
                    "no local blob a near-duplicate)"}


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
    m = sub.add_parser("memorization")
    m.add_argument("--samples", required=True)
    m.add_argument("--train", action="append", required=True)
    for p in (s, r, m):
        p.add_argument("--json", default=None, help="also write the result here")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = {"speed": cmd_speed, "realism": cmd_realism, "memorization": cmd_memorization}[a.cmd](a)
    res["load_avg"] = os.getloadavg()
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
