"""Per-class distance between procedural images and the real SEM dev_test images, on a fixed
vector of texture statistics.

Features (per 128 x 128 grey image): mean, spread, sharpness (log variance of the Laplacian),
noise level (MAD of a 3x3 median high-pass), GLCM contrast and homogeneity (32 levels, offsets 1
and 2, 4 directions), edge density (Canny), dominant spatial frequency (radial FFT peak).
Features are standardised with the mean / std of all real images, then per class:

- MMD^2 (unbiased) with a fixed Gaussian kernel, bandwidth sqrt(n_features): 0 = same distribution;
- AUC of a real-vs-synthetic logistic regression (5-fold CV): 0.5 = indistinguishable.

``scratch`` has no real class of its own: it is compared with real ``cmp`` (which holds scratches).

    python bench/realism_distance.py --n 80 [--classes via crack ...] [--json out/realism.json] [--set dose=400]
        [--sheet docs/img/classes_sheet.png] [--sheet-beside-real out/classes_vs_real.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.feature import graycomatrix, graycoprops

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sem-real"
FEATURES = ("mean", "std", "sharpness", "noise", "glcm_contrast", "glcm_homogeneity", "edge_density", "dom_freq")
REAL_OF = {"scratch": "cmp"}


def features(img: np.ndarray) -> np.ndarray:
    """The fixed texture-statistics vector of a uint8 image (resized to 128 x 128)."""
    if img.shape != (128, 128):
        img = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    f = img.astype(np.float32) / 255.0
    lap = cv2.Laplacian(f, cv2.CV_32F)
    hp = f - cv2.medianBlur(img, 3).astype(np.float32) / 255.0
    noise = 1.4826 * float(np.median(np.abs(hp - np.median(hp))))
    q = (img // 8).astype(np.uint8)
    glcm = graycomatrix(q, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, symmetric=True, normed=True)
    edges = cv2.Canny(img, 50, 150)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(f - f.mean())))
    yy, xx = np.indices(spec.shape)
    r = np.hypot(yy - 64, xx - 64).astype(int)
    radial = np.bincount(r.ravel(), spec.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
    dom = (int(np.argmax(radial[2:64])) + 2) / 128.0
    return np.array([f.mean(), f.std(), np.log(lap.var() + 1e-8), noise,
                     np.log(graycoprops(glcm, "contrast").mean() + 1e-6), graycoprops(glcm, "homogeneity").mean(),
                     (edges > 0).mean(), dom], np.float64)


def mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD^2 with a Gaussian kernel of bandwidth ``sigma``."""
    def k(a, b):
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d / (2 * sigma ** 2))
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def auc(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.metrics import roc_auc_score

    X = np.vstack([x, y])
    t = np.r_[np.zeros(len(x)), np.ones(len(y))]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    prob = cross_val_predict(LogisticRegression(max_iter=2000), X, t, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(t, prob))


def real_features(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for d in sorted((root / "dev_test").iterdir()):
        if d.is_dir():
            out[d.name] = np.array([features(np.array(Image.open(f).convert("L"))) for f in sorted(d.glob("*.png"))])
    return out


def synthetic_images(cls: str, n: int, seed: int, size: int = 128, overrides: dict | None = None) -> list:
    from semgen.generators.procedural.generation import generate_one
    from semgen.generators.procedural.registry import create_generator
    from semgen.seeding import image_seed

    gen = create_generator(cls)
    ov = {k: v for k, v in (overrides or {}).items() if k in gen.space}
    return [generate_one(gen, image_seed(seed, cls, i), size, ov).image for i in range(n)]


def sheet(rows: dict[str, list], path: Path, per_row: int = 8, real: dict[str, list] | None = None) -> None:
    """A contact sheet: one row per class (label on the left), optionally real images beside."""
    tiles = []
    for c, ims in rows.items():
        label = np.full((128, 96), 255, np.uint8)
        cv2.putText(label, c, (4, 70), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 0, 1, cv2.LINE_AA)
        row = [label] + [cv2.resize(i, (128, 128), interpolation=cv2.INTER_AREA) for i in ims[:per_row]]
        if real is not None:
            rr = [cv2.resize(i, (128, 128), interpolation=cv2.INTER_AREA) for i in real.get(c, [])[:per_row]]
            rr += [np.zeros((128, 128), np.uint8)] * (per_row - len(rr))
            row += [np.full((128, 12), 255, np.uint8)] + rr
        tiles.append(np.concatenate(row, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, 0)).save(path, optimize=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=80, help="synthetic images per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", nargs="*", default=None)
    ap.add_argument("--real", type=Path, default=REAL)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sheet", type=Path, default=None, help="write a generated-only contact sheet (8 per class)")
    ap.add_argument("--sheet-beside-real", type=Path, default=None,
                    help="write a sheet with 8 real dev_test images beside each row (look, do not commit)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="fix a parameter for every class that has it (e.g. dose=400)")
    a = ap.parse_args(argv)
    if not (a.real / "dev_test").is_dir():
        print(f"real data not found at {a.real}", file=sys.stderr)
        return 2
    from semgen.generators.procedural.registry import list_generators, generator_class

    from semgen.generators.procedural.params import parse_set_args

    overrides = parse_set_args(a.set)
    t0 = time.time()
    real = real_features(a.real)
    allreal = np.vstack(list(real.values()))
    mu, sd = allreal.mean(0), allreal.std(0) + 1e-9
    sigma = float(np.sqrt(len(FEATURES)))
    classes = a.classes or [g for g in list_generators() if generator_class(g).label == g]
    rows = []
    sheet_rows: dict[str, list] = {}
    print(f"{'class':10s} {'real':>8s} {'n_real':>6s} {'MMD2':>8s} {'AUC':>6s}  mean/std syn (real)")
    for c in classes:
        rc = REAL_OF.get(c, c)
        if rc not in real:
            continue
        ims = synthetic_images(c, a.n, a.seed, overrides=overrides)
        sheet_rows[c] = ims[:8]
        syn = np.array([features(i) for i in ims])
        xs, xr = (syn - mu) / sd, (real[rc] - mu) / sd
        m, u = mmd2(xs, xr, sigma), auc(xs, xr)
        rows.append({"class": c, "real_class": rc, "n_real": len(xr), "n_syn": len(xs), "mmd2": m, "auc": u,
                     "feature_means_syn": dict(zip(FEATURES, syn.mean(0).round(4).tolist())),
                     "feature_means_real": dict(zip(FEATURES, real[rc].mean(0).round(4).tolist()))})
        print(f"{c:10s} {rc:>8s} {len(xr):6d} {m:8.4f} {u:6.3f}  {syn[:, 0].mean():.2f}/{syn[:, 1].mean():.2f}"
              f" ({real[rc][:, 0].mean():.2f}/{real[rc][:, 1].mean():.2f})")
    if rows:
        print(f"{'mean':10s} {'':>8s} {'':>6s} {np.mean([r['mmd2'] for r in rows]):8.4f}"
              f" {np.mean([r['auc'] for r in rows]):6.3f}   ({time.time() - t0:.0f} s)")
    if a.sheet:
        sheet(sheet_rows, a.sheet)
        print(f"wrote {a.sheet}")
    if a.sheet_beside_real:
        real_ims = {c: [np.array(Image.open(f).convert("L")) for f in sorted((a.real / "dev_test" / REAL_OF.get(c, c))
                                                                         .glob("*.png"))[:8]] for c in sheet_rows}
        sheet(sheet_rows, a.sheet_beside_real, real=real_ims)
        print(f"wrote {a.sheet_beside_real} (holds real images: for looking only, never commit it)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"n": a.n, "seed": a.seed, "features": FEATURES, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
