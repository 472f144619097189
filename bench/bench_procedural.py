"""Throughput of ``semgen procedural`` at 256 x 256, PNG and manifest writing included.

Prints, per class and worker count: images/s (wall clock) and, for one worker, the CPU time per
image (independent of other load on the machine), then where the CPU time goes (sample / scene /
imaging / overlays / PNG / files + record). Run on a quiet machine for the headline figure; the
load average is printed beside every figure.

With ``--baseline DIR`` (a checkout of an older commit, e.g. ``git worktree add /tmp/procbase
<commit>``) every measurement runs twice, old code then new code, each in a fresh process with
that checkout first on ``PYTHONPATH``, and prints the new/old ratio: on a shared, loaded machine
the absolute figures drift, the ratio of two neighbouring runs much less. The per-stage profile
is printed for both versions too.

    python bench/bench_procedural.py                      # every class, 1 and 2 workers
    python bench/bench_procedural.py --classes bridge --n 1000 --workers 1 2
    python bench/bench_procedural.py --baseline /tmp/procbase --n 100 --workers 1 --profile 50
    python bench/bench_procedural.py --baseline /tmp/procbase --n 60 --workers 1 --profile 30 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from _baseline import best_of, in_checkout, load, semgen_dir

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stage_profile(name: str, n: int, size: int) -> dict:
    """CPU ms per image of each stage, in this process (same code path as generate_one + _Job)."""
    import cv2

    from semgen.generators.procedural.generation import _plain
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
    for k in range(n + 2):
        # images n and n + 1 first, untimed: one-time costs (lazy imports) are not a stage's
        i = n + k if k < 2 else k - 2
        if k == 2:
            t = dict.fromkeys(t, 0.0)
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


def run(name: str, n: int, size: int, workers: int, root: str, warm: int = 0) -> tuple[float, float]:
    """(images/s wall clock, CPU ms per image of this process) for one ``generate`` call, after
    ``warm`` untimed images made the same way in this process (0: a cold start, timed)."""
    from semgen.generators.procedural.generation import generate

    out = os.path.join(root, f"{name}-{workers}")
    if warm:
        # untimed: the pool's forkserver starts and imports semgen (compiled code included) once per
        # process; a long run pays that once, so the steady rate is what it gets per image
        generate(name, warm, out + "-warm", seed=1, size=size, workers=workers, progress=False)
        shutil.rmtree(out + "-warm", ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    c0, t0 = time.process_time(), time.perf_counter()
    res = generate(name, n, out, seed=0, size=size, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert res["made"] == n, res
    shutil.rmtree(out, ignore_errors=True)
    return n / wall, 1e3 * cpu / n


def _in_checkout(checkout: str, what: str, *args) -> dict:
    """Run ``run`` or ``stage_profile`` (``what``) in a fresh process importing semgen from ``checkout``."""
    return in_checkout(checkout, [os.path.abspath(__file__), "--child", what, json.dumps(args)],
                       what=f"{what}{tuple(args)}")


def _child(what: str, args: str) -> None:
    a = json.loads(args)
    res = {"semgen": semgen_dir()}
    if what == "run":
        res["ips"], res["cpu_ms"] = run(*a)
    else:
        res["stages"] = stage_profile(*a)
    print(json.dumps(res))


def compare(args, root: str) -> None:
    """Old (``--baseline``) and new code side by side, each measurement in a fresh process."""
    new, old = _REPO, os.path.abspath(args.baseline)
    print(f"# semgen procedural, {args.size}x{args.size}, n={args.n} per run, PNG + manifest included; "
          f"{'after ' + str(args.warm) + ' untimed images (steady rate); ' if args.warm else ''}"
          f"{os.cpu_count()} CPUs; old = {old}, new = {new}; {load()}")
    print("# img/s: wall clock; cpu img/s: 1000 / (CPU ms per image of the one process), 1 worker only"
          + (f"; each side the best of {args.repeat} alternated runs" if args.repeat > 1 else ""))
    print(f"{'class':<10} {'workers':>7} {'old img/s':>9} {'new img/s':>9} {'ratio':>6} "
          f"{'old cpu img/s':>13} {'new cpu img/s':>13} {'ratio':>6}   load")
    for name in args.classes:
        for w in args.workers:
            o, n = best_of(args.repeat, lambda c: _in_checkout(c, "run", name, args.n, args.size, w, root, args.warm),
                            old, new, key=lambda r: r["cpu_ms"] if w == 1 else -r["ips"])
            cpu = (f"{1e3 / o['cpu_ms']:>13.1f} {1e3 / n['cpu_ms']:>13.1f} {o['cpu_ms'] / n['cpu_ms']:>6.2f}"
                   if w == 1 else f"{'':>13} {'':>13} {'':>6}")
            print(f"{name:<10} {w:>7} {o['ips']:>9.1f} {n['ips']:>9.1f} {n['ips'] / o['ips']:>6.2f} {cpu}   {load()}",
                  flush=True)
    if args.profile:
        print(f"\n# CPU ms per image by stage (one process, {args.profile} images, generator code only), old -> new")
        keys = None
        for name in args.classes:
            o, n = best_of(args.repeat, lambda c: _in_checkout(c, "stage_profile", name, args.profile, args.size),
                            old, new, key=lambda r: sum(r["stages"].values()))
            o, n = o["stages"], n["stages"]
            if keys is None:
                keys = list(o)
                print(f"{'class':<10} " + " ".join(f"{k:>13}" for k in keys) + f" {'total':>13}")
            cells = [f"{o[k]:.2f}->{n[k]:.2f}" for k in keys] + [f"{sum(o.values()):.1f}->{sum(n.values()):.1f}"]
            print(f"{name:<10} " + " ".join(f"{c:>13}" for c in cells), flush=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return _child(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", nargs="+", default=None, help="default: every registered class")
    ap.add_argument("--n", type=int, default=400, help="images per measurement")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--profile", type=int, default=200, help="images for the per-stage CPU profile (0: skip)")
    ap.add_argument("--warm", type=int, default=0, metavar="W",
                    help="first make W images untimed in the same process (the pool's start and imports), "
                         "so that img/s is the steady rate of a long run; 0: include the start")
    ap.add_argument("--tmp", default="out", help="folder for the scratch dataset dirs (default: out/, made if "
                    "needed; on the shared machine /tmp is several times slower to create files in)")
    ap.add_argument("--baseline", default=None, metavar="DIR",
                    help="checkout of the old code: print old, new and their ratio for every figure")
    ap.add_argument("--repeat", type=int, default=1, metavar="R",
                    help="with --baseline: run old and new alternately R times, keep each side's least CPU time")
    args = ap.parse_args()
    if args.classes is None:
        from semgen.generators.procedural.registry import list_generators

        args.classes = list_generators()

    os.makedirs(args.tmp, exist_ok=True)
    root = os.path.abspath(tempfile.mkdtemp(prefix="semgen-bench-", dir=args.tmp))
    try:
        if args.baseline:
            return compare(args, root)
        print(f"# semgen procedural, {args.size}x{args.size}, n={args.n} per run, PNG + manifest included; "
              f"{'after ' + str(args.warm) + ' untimed images (steady rate); ' if args.warm else ''}"
              f"{os.cpu_count()} CPUs; {load()}")
        print(f"{'class':<10} {'workers':>7} {'img/s':>8} {'cpu ms/img (1 worker)':>22}   load")
        for name in args.classes:
            for w in args.workers:
                ips, cpu_ms = run(name, args.n, args.size, w, root, args.warm)
                cpu = f"{cpu_ms:.2f}" if w == 1 else ""
                print(f"{name:<10} {w:>7} {ips:>8.1f} {cpu:>22}   {load()}", flush=True)
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
