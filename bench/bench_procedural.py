"""Throughput of ``semgen procedural`` at 256 x 256, PNG and manifest writing included.

Prints, per class and worker count: images/s (wall clock) and, for one worker, the CPU time per
image (independent of other load on the machine) with where it goes (sample / scene / imaging /
overlays / PNG / files + record). Run on a quiet machine for the headline figure; the load average
is printed beside every figure.

    python bench/bench_procedural.py                      # clean ler bridge open, 1 and 2 workers
    python bench/bench_procedural.py --classes bridge --n 1000 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def _load() -> str:
    try:
        return "load %.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover
        return "load ?"


def stage_profile(name: str, n: int, size: int) -> dict:
    """CPU ms per image of each stage, in this process (same code path as generate_one + _Job)."""
    import json

    import cv2

    from semgen.generators.procedural.generate import _plain
    from semgen.generators.procedural.imaging import render
    from semgen.generators.procedural.overlays import apply_overlays
    from semgen.imageio import encode_png
    from semgen.generators.procedural.registry import create_generator
    from semgen.imageio import sha256_bytes
    from semgen.seeding import image_seed, rng_for

    cv2.setNumThreads(1)
    gen = create_generator(name)
    t = dict.fromkeys(["sample", "scene", "imaging", "overlays", "png+sha", "bboxes+json"], 0.0)
    clock = time.process_time
    for i in range(n):
        c0 = clock()
        rng = rng_for(image_seed(0, gen.label, i))
        p = gen.sample_params(rng)
        c1 = clock()
        scene = gen.build(p, rng, size)
        c2 = clock()
        img = render(scene, p, rng)
        c3 = clock()
        img = apply_overlays(img, p, rng, scene)
        c4 = clock()
        data = encode_png(img)
        sha256_bytes(data)
        if scene.mask is not None and scene.mask.any():
            encode_png(scene.mask.astype("uint8"))
        c5 = clock()
        json.dumps({"params": _plain(p), "meta": _plain(scene.meta), "bboxes": scene.bboxes()}, sort_keys=True)
        c6 = clock()
        for k, a, b in zip(t, (c0, c1, c2, c3, c4, c5), (c1, c2, c3, c4, c5, c6)):
            t[k] += b - a
    return {k: 1e3 * v / n for k, v in t.items()}


def run(name: str, n: int, size: int, workers: int, root: str) -> tuple[float, float]:
    """(images/s wall clock, CPU ms per image of this process) for one ``generate`` call."""
    from semgen.generators.procedural.generate import generate

    out = os.path.join(root, f"{name}-{workers}")
    shutil.rmtree(out, ignore_errors=True)
    c0, t0 = time.process_time(), time.perf_counter()
    res = generate(name, n, out, seed=0, size=size, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert res["made"] == n, res
    shutil.rmtree(out, ignore_errors=True)
    return n / wall, 1e3 * cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", nargs="+", default=["clean", "ler", "bridge", "open"])
    ap.add_argument("--n", type=int, default=400, help="images per measurement")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--profile", type=int, default=200, help="images for the per-stage CPU profile (0: skip)")
    ap.add_argument("--tmp", default="out", help="folder for the scratch dataset dirs (default: out/, made if "
                    "needed; on the shared machine /tmp is several times slower to create files in)")
    args = ap.parse_args()

    os.makedirs(args.tmp, exist_ok=True)
    root = tempfile.mkdtemp(prefix="semgen-bench-", dir=args.tmp)
    try:
        print(f"# semgen procedural, {args.size}x{args.size}, n={args.n} per run, PNG + manifest included; "
              f"{os.cpu_count()} CPUs; {_load()}")
        print(f"{'class':<10} {'workers':>7} {'img/s':>8} {'cpu ms/img (1 worker)':>22}   load")
        for name in args.classes:
            for w in args.workers:
                ips, cpu_ms = run(name, args.n, args.size, w, root)
                cpu = f"{cpu_ms:.2f}" if w == 1 else ""
                print(f"{name:<10} {w:>7} {ips:>8.1f} {cpu:>22}   {_load()}", flush=True)
        if args.profile:
            print(f"\n# CPU ms per image by stage (one process, {args.profile} images, generator code only)")
            keys = None
            for name in args.classes:
                prof = stage_profile(name, args.profile, args.size)
                if keys is None:
                    keys = list(prof)
                    print(f"{'class':<10} " + " ".join(f"{k:>11}" for k in keys) + f" {'total':>8}")
                print(f"{name:<10} " + " ".join(f"{prof[k]:>11.2f}" for k in keys) + f" {sum(prof.values()):>8.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
