"""Generation speed per class: images/s at 256 x 256 into a fresh dataset dir (PNG, mask and
manifest writing included), with 1 and / or 2 worker processes, and the time per image split into
scene building, imaging and overlays (single process, no writing).

    nice python bench/bench_classes.py --n 200 --workers 2 [--classes via crack ...] [--layout-split]

Goal (issue 3): no class below half the line/space speed (``clean`` with ``--set layout=lines``
stands for line/space; it is measured again just before each class, "x" is the worse ratio over the
worker counts). On a shared machine wall-clock speeds swing with other users' load, so the CPU time
per image of one process (``time.process_time``) and its ratio to line/space are printed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def throughput(label: str, n: int, workers: int, size: int, overrides: dict | None = None) -> float:
    from semgen.generators.procedural.generation import generate

    tmp = tempfile.mkdtemp(prefix="semgen-bench-")
    try:
        t = time.perf_counter()
        generate(label, n, tmp, seed=0, size=size, workers=workers, overrides=overrides, progress=False)
        return n / (time.perf_counter() - t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cpu_ms(label: str, n: int, size: int, overrides: dict | None = None) -> float:
    """CPU milliseconds per image (``time.process_time``) of generate_one + PNG encoding, in this
    process: much less sensitive than wall time to other users of a shared machine."""
    from semgen.generators.procedural.generation import generate_one
    from semgen.generators.procedural.registry import create_generator
    from semgen.imageio import encode_png
    from semgen.seeding import image_seed

    gen = create_generator(label)
    generate_one(gen, image_seed(2, label, 0), size, overrides)  # warm-up (imports, caches)
    t = time.process_time()
    for i in range(n):
        s = generate_one(gen, image_seed(2, label, i), size, overrides)
        encode_png(s.image)
        if s.mask is not None:
            encode_png(s.mask)
    return 1e3 * (time.process_time() - t) / n


def stages(label: str, n: int, size: int, overrides: dict | None = None) -> dict:
    """Mean ms per image of build / render / overlays, in this process."""
    from semgen.generators.procedural.imaging import render
    from semgen.generators.procedural.overlays import apply_overlays
    from semgen.generators.procedural.registry import create_generator
    from semgen.seeding import image_seed, rng_for

    gen = create_generator(label)
    tb = tr = to = 0.0
    for i in range(n):
        rng = rng_for(image_seed(1, label, i))
        p = gen.sample_params(rng, overrides)
        t0 = time.perf_counter()
        sc = gen.build(p, rng, size)
        t1 = time.perf_counter()
        img = render(sc, p, rng)
        t2 = time.perf_counter()
        apply_overlays(img, p, rng, sc)
        to += time.perf_counter() - t2
        tb += t1 - t0
        tr += t2 - t1
    return {"build_ms": 1e3 * tb / n, "render_ms": 1e3 * tr / n, "overlay_ms": 1e3 * to / n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--classes", nargs="*", default=["via", "crack", "particle", "cmp", "scratch", "other", "clean"])
    ap.add_argument("--layout-split", action="store_true", help="also time each layout of each class (stages only)")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}  size {a.size}  n {a.n}")
    # the machine is shared: the line/space baseline is measured again right before each class
    # so that load drifts hit both sides of the ratio alike
    def base_speed(w):
        return throughput("clean", a.n, w, a.size, {"layout": "lines"})

    base_cpu = cpu_ms("clean", a.n, a.size, {"layout": "lines"})
    print(f"line/space CPU {base_cpu:.1f} ms/img (generate_one + PNG encoding, one process)", flush=True)
    for c in a.classes:
        base = {w: base_speed(w) for w in a.workers}
        ips = {w: throughput(c, a.n, w, a.size) for w in a.workers}
        st = stages(c, max(20, a.n // 5), a.size)
        cpu = cpu_ms(c, a.n, a.size)
        rel = min(ips[w] / base[w] for w in a.workers)
        print(f"{c:10s} " + "  ".join(f"{w}w {ips[w]:6.1f} img/s (line/space {base[w]:5.1f})" for w in a.workers)
              + f"   x{rel:.2f}   CPU {cpu:.1f} ms/img (x{base_cpu / cpu:.2f})   build {st['build_ms']:.1f} ms"
              + f"  render {st['render_ms']:.1f} ms  overlays {st['overlay_ms']:.2f} ms", flush=True)
        if a.layout_split:
            from semgen.generators.procedural.registry import create_generator

            for lay in create_generator(c).space["layout"].choices:
                s = stages(c, 10, a.size, {"layout": lay})
                print(f"    {lay:30s} build {s['build_ms']:.1f} ms  render {s['render_ms']:.1f} ms")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
