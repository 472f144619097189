"""Training speed of one ablation cell at the presets' settings, to size ``--preset quick``.

Trains the classifier on a k-shot subset of a real pool for a few epochs and prints images/s,
seconds per cell and the machine load. Usage:
    nice python bench/ablation_timing.py --real ../shared/data/sem-real/train [--size 64] [--arch ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from semgen.ablation.subsets import load_pool, materialize, per_class_subset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", required=True)
    ap.add_argument("--test", default=None, help="also time evaluation on this test set")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--size", type=int, nargs="+", default=[64])
    ap.add_argument("--arch", nargs="+", default=["mobilenetv3_small_100"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--min-epoch-images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    from semgen.classifier import evaluate_run, train_classifier
    from semgen.classifier.train_config import TrainConfig

    pool = load_pool(args.real)
    with tempfile.TemporaryDirectory() as td:
        sub = materialize(per_class_subset(pool, args.shots, 0), Path(td))
        base = TrainConfig.make(data=[sub], out=td, epochs=args.epochs, batch_size=args.batch_size,
                                min_epoch_images=args.min_epoch_images, progress=False)
        for arch in args.arch:
            for size in args.size:
                run = Path(td) / f"run_{arch}_{size}"
                t = time.perf_counter()
                c0 = time.process_time()
                s = train_classifier(base, out=run, arch=arch, size=size)
                wall = time.perf_counter() - t
                cpu = time.process_time() - c0
                ev = ""
                if args.test:
                    t, c0 = time.perf_counter(), time.process_time()
                    m = evaluate_run(run, args.test, n_boot=0, write=False)
                    ev = (f", eval {len(m['files'])} images {time.perf_counter() - t:.1f} s wall "
                          f"{time.process_time() - c0:.1f} s CPU")
                imgs = args.epochs * max(s["n_train"], args.min_epoch_images)
                print(f"{arch} size {size}: {s['images_per_s']:.0f} train images/s, {imgs} images in "
                      f"{wall:.1f} s wall, {cpu:.1f} s CPU (incl. loading){ev}; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
