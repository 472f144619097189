"""How models hold up when the real test images are acquired differently: macro-F1 on copies of a
test set under acquisition shifts an SEM user meets between tools and labs.

The held-out real sets of other sources differ from ``dev_test`` in contrast, noise, focus, pixel
size and compression. They are not reachable from every machine, so this probe asks a narrower
question that needs none of them: does a model's lead on the test set survive when the same images
are shifted in those ways? Each shift is a fixed, deterministic transform of every image (seeded
noise), so every model sees the same pixels:

- ``gamma0.6`` / ``gamma1.6``: other display levels (brightness curve);
- ``contrast0.5``: half the contrast about the image mean (a lower-yield detector setting);
- ``noise12``: Gaussian noise of 12 grey levels (a faster scan, fewer frames averaged);
- ``blur``: Gaussian blur of sigma = 0.6 % of the image width (defocus; 1.5 px at 256 px);
- ``lowres``: down to a third of the side and back up (a larger pixel size);
- ``jpeg25``: JPEG at quality 25 (images taken from documents and slides).

It writes the shifted copies under ``--work`` (never into the repository), scores every model on
each with :func:`semgen.classifier.evaluate_run` (no files written beside the runs) and prints a
table of macro-F1 per model and shift, the mean over the shifts, and each model's drop from its
unshifted figure. A shift probe is not a held-out set: it checks robustness to these shifts only.

Example::

    python bench/shift_probe.py --test ../shared/data/sem-real/dev_test --work /tmp/shifted \\
        --models joint=out/recipe/joint3/ensemble imagenet128=out/recipe/joint3/baseline_ensemble \\
                 imagenet224=out/ft/lite0_in_224_ens
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semgen.errors import SemgenError  # noqa: E402
from semgen.imageio import encode_png, read_gray, write_bytes_atomic  # noqa: E402

def _gamma(img: np.ndarray, g: float) -> np.ndarray:
    return 255.0 * (img / 255.0) ** g


def _contrast(img: np.ndarray, k: float) -> np.ndarray:
    return img.mean() + k * (img - img.mean())


def _noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return img + rng.normal(0.0, sigma, img.shape)


def _blur(img: np.ndarray, frac: float) -> np.ndarray:
    import cv2

    s = max(0.3, frac * img.shape[1])
    return cv2.GaussianBlur(img, (0, 0), s)


def _lowres(img: np.ndarray, factor: int) -> np.ndarray:
    import cv2

    h, w = img.shape
    small = cv2.resize(img, (max(8, w // factor), max(8, h // factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SemgenError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float64)


#: name -> transform(float64 image in [0, 255], rng) -> float64 image (clipped and rounded after)
SHIFTS = {
    "gamma0.6": lambda im, rng: _gamma(im, 0.6),
    "gamma1.6": lambda im, rng: _gamma(im, 1.6),
    "contrast0.5": lambda im, rng: _contrast(im, 0.5),
    "noise12": lambda im, rng: _noise(im, 12.0, rng),
    "blur": lambda im, rng: _blur(im, 0.006),
    "lowres": lambda im, rng: _lowres(im, 3),
    "jpeg25": lambda im, rng: _jpeg(im, 25),
}


def shift_image(img: np.ndarray, shift: str, seed: int) -> np.ndarray:
    """``img`` (uint8, H x W) under ``shift``, as uint8.

    Examples
    --------
    >>> im = np.full((16, 16), 100, np.uint8)
    >>> int(shift_image(im, "gamma0.6", 0)[0, 0]), int(shift_image(im, "contrast0.5", 0)[0, 0])
    (145, 100)
    """
    rng = np.random.default_rng(seed)
    out = SHIFTS[shift](img.astype(np.float64), rng)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_shifted(test: Path, work: Path, shifts) -> dict[str, Path]:
    """Shifted copies of the labelled images of ``test`` (a dataset dir or class folders) under
    ``work/SHIFT/LABEL/`` as class folders; made once (a finished copy holds ``.complete``)."""
    from semgen.manifests.sources import read_source

    items = read_source(test, what="--test")
    out = {}
    for shift in shifts:
        root = work / shift
        done = root / ".complete"
        if not done.is_file():
            for i, it in enumerate(items):
                dst = root / it.label / f"{i:05d}_{Path(it.path).stem}.png"
                dst.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(dst, encode_png(shift_image(read_gray(it.path), shift, seed=i)))
            done.write_text(f"{len(items)}\n")
        out[shift] = root
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", required=True, type=Path, help="the real test set (class folders)")
    ap.add_argument("--work", required=True, type=Path, help="where the shifted copies go (outside the repository)")
    ap.add_argument("--models", nargs="+", required=True, metavar="NAME=RUN",
                    help="run dirs, ensembles or ONNX files to score, each named")
    ap.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=list(SHIFTS))
    ap.add_argument("--classes", default=None, metavar="A,B,...",
                    help="predict among these classes only (a joint pretraining run made before it recorded its "
                         "pool's classes: the training pool's classes, never the test set's; semgen evaluate --classes)")
    ap.add_argument("--tta", default="none", choices=("none", "flips", "d4"))
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    from semgen.classifier import evaluate_run

    models = dict(m.split("=", 1) for m in a.models)
    try:
        sets = {"none": a.test, **write_shifted(a.test, a.work, a.shifts)}
        classes = a.classes.split(",") if a.classes else None
        table = {name: {s: evaluate_run(run, d, n_boot=0, write=False, num_threads=a.threads, tta=a.tta,
                                        classes=classes)["macro_f1"]
                        for s, d in sets.items()} for name, run in models.items()}
    except SemgenError as e:
        print(f"shift_probe: {e}", file=sys.stderr)
        return 2
    cols = list(sets)
    print("| model | " + " | ".join(cols) + " | mean over shifts | drop |")
    print("|---|" + "---|" * (len(cols) + 2))
    for name, row in table.items():
        mean = float(np.mean([row[s] for s in cols if s != "none"]))
        print(f"| {name} | " + " | ".join(f"{row[s]:.3f}" for s in cols) + f" | {mean:.3f} | {mean - row['none']:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
