"""Realism of generated images: distances between image sets on features (no download).

Benchmark code (``bench_diffusion.py realism``), not part of the semgen package.

Pure functions on numpy arrays. Features come from the project's own classifier
(:func:`classifier_features`: the pre-logits of a :func:`semgen.classifier.load_run` model) or a
fixed texture descriptor (:func:`texture_features`). Distances:

- :func:`kid`: kernel inception distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic
  kernel ``(x.y / d + 1)^3``, mean and spread over random subsets;
- :func:`paired_kid`: KID of two *paired* sets (B made from A image by image, e.g. refined from raw)
  on all their images, and the difference with a joint bootstrap interval;
- :func:`precision_recall`: k-NN manifold precision / recall (Kynkaanniemi et al. 2019).

``normalize="l2"`` scales every feature row to norm ``sqrt(d)`` first, so the kernel sees the
*pattern* of activations and not their magnitude; noisy inputs inflate a CNN's activations, and on
raw features a few such images can dominate the cubic kernel.
"""

from __future__ import annotations

import numpy as np

NORMALIZATIONS = ("raw", "l2")


def normalize_features(f: np.ndarray, how: str = "raw") -> np.ndarray:
    """Features as they are (``"raw"``, the standard KID) or rows scaled to norm sqrt(d) (``"l2"``)."""
    f = np.asarray(f, np.float64)
    if how == "raw":
        return f
    if how == "l2":
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12) * np.sqrt(f.shape[1])
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {how!r}")


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


def kid(x: np.ndarray, y: np.ndarray, *, subsets: int = 50, subset_size: int = 100, seed: int = 0):
    """KID: unbiased MMD^2 with the kernel (x.y / d + 1)^3, mean and std over random subsets."""
    rng = np.random.default_rng(seed)
    k = _cubic_gram(np.concatenate([x, y]))
    m = min(subset_size, len(x), len(y))
    vals = [_mmd2(k, rng.choice(len(x), m, replace=False), len(x) + rng.choice(len(y), m, replace=False))
            for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))


def _cubic_gram(f: np.ndarray) -> np.ndarray:
    return (f @ f.T / f.shape[1] + 1) ** 3


def _mmd2(k: np.ndarray, i: np.ndarray, j: np.ndarray) -> float:
    """Unbiased MMD^2 between the rows ``i`` and the rows ``j`` of the Gram matrix ``k``."""
    kxx, kyy, kxy = k[np.ix_(i, i)], k[np.ix_(j, j)], k[np.ix_(i, j)]
    m, n = len(i), len(j)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def paired_kid(fa: np.ndarray, fb: np.ndarray, fr: np.ndarray, *, boot: int = 1000, seed: int = 0) -> dict:
    """KID of two *paired* sets against one reference, on all images, and their difference.

    ``fa[i]`` and ``fb[i]`` are features of the same source image before and after a change
    (e.g. raw and refined). One bootstrap resamples the pairs and the reference images jointly, so
    the 95 % interval of ``kid_b - kid_a`` carries both sources of noise; ``p_b_not_closer`` is the
    bootstrap fraction with ``kid_b >= kid_a``.
    """
    k = _cubic_gram(np.concatenate([fa, fb, fr]))
    na, nr = len(fa), len(fr)
    ia, ib, ir = np.arange(na), na + np.arange(na), 2 * na + np.arange(nr)
    a0, b0 = _mmd2(k, ia, ir), _mmd2(k, ib, ir)
    rng = np.random.default_rng(seed)
    # the bootstrap keeps duplicates inside the unbiased estimator; the small upward bias this adds
    # is the same for A and B, so it cancels in the difference
    da, db = [], []
    for _ in range(boot):
        p = rng.integers(0, na, na)
        r = ir[rng.integers(0, nr, nr)]
        da.append(_mmd2(k, ia[p], r))
        db.append(_mmd2(k, ib[p], r))
    diff = np.asarray(db) - np.asarray(da)
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return {"n_pairs": na, "kid_a": a0, "kid_b": b0, "diff": b0 - a0, "diff_ci95": [float(lo), float(hi)],
            "relative_change": (b0 - a0) / a0 if a0 > 0 else None,
            "p_b_not_closer": float(np.mean(diff >= 0))}


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
