"""Same seed, same bytes across fresh processes and CPUs: how many images differ?

Each of ``--procs`` fresh Python processes generates the same images (every procedural class,
``--seeds`` seeds each, at every ``--sizes``) and prints the sha256 of each image's bytes; the
figure is how many (class, seed, size) images got more than one hash. Fresh processes matter: the
hazard this guards against (float32 kernels whose rounding depends on buffer alignment, issue 14)
shows only when malloc places buffers differently, which one process rarely does by itself.

``--cpus`` runs the processes in turn as older CPUs, on this one: NumPy, OpenCV, numba and
OpenBLAS each pick their code paths by the CPU's instruction sets at run time, and their
environment variables (``NPY_DISABLE_CPU_FEATURES``, ``OPENCV_CPU_DISABLE``, ``NUMBA_CPU_NAME``,
``OPENBLAS_CORETYPE``) switch the newer ones off. A vector path may round otherwise (a fused
multiply-add, a vectorised ``exp``), so this is the check of "the same bytes on every machine"
that one machine can make (not of ARM: other compilers and libm). Each emulated CPU's
images are also compared with ``native``'s (the first process).

    python bench/bench_determinism.py                    # 20 processes, 30 seeds, 64 and 128 px
    python bench/bench_determinism.py --procs 5 --seeds 10
    python bench/bench_determinism.py --procs 3 --cpus native avx2 x86-64-v2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import hashlib, json, random, sys
import numpy as np
from semgen.generators.procedural import imaging
from semgen.generators.procedural.generation import generate_one
from semgen.generators.procedural.registry import list_generators
from semgen.seeding import image_seed
seeds, sizes, proc = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
# Processes differ in what they allocated before an image (a worker's earlier images, hash
# randomisation, ...), so buffers land at other addresses; emulate that with allocations of
# random sizes, a different sequence in each process.
r, junk = random.Random(proc), []
# Also hash the float signal just before 8-bit rounding: a float difference reaches the bytes only
# when it crosses a rounding boundary (a few images in a thousand), so it is the sensitive check.
signal = []
_to_uint8 = imaging.to_uint8
def to_uint8(img, *a, **k):
    signal.append(hashlib.sha256(img.tobytes()).hexdigest())
    return _to_uint8(img, *a, **k)
imaging.to_uint8 = to_uint8
out = {}
for name in list_generators():
    for size in sizes:
        for i in seeds:
            s = image_seed(3, name, i)
            junk.extend(np.empty(r.randint(1, 40000) * 4, np.uint8) for _ in range(r.randint(1, 4)))
            del junk[:max(0, len(junk) - 40)]
            signal.clear()
            img = generate_one(name, s, size).image
            out[f"{name}/{i}/{size}"] = [hashlib.sha256(img.tobytes()).hexdigest(), signal[0]]
print(json.dumps(out))
"""


#: Older x86-64 CPUs, emulated on a newer one: the instruction sets NumPy (2.x names), OpenCV and
#: numba are told to leave unused. ``avx2``: a Haswell-to-today machine without AVX-512 (most
#: laptops, AMD before Zen 4); ``x86-64-v2``: SSE4.2 only, no AVX (before 2011-2013).
CPUS = {
    "native": {},
    "avx2": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "OPENCV_CPU_DISABLE": "AVX512-SKX",
             "NUMBA_CPU_NAME": "haswell", "OPENBLAS_CORETYPE": "Haswell"},
    "x86-64-v2": {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
                  "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX2,FMA3,AVX,FP16", "NUMBA_CPU_NAME": "nehalem",
                  "OPENBLAS_CORETYPE": "Nehalem"},
}


def cpu_env(cpu: str, cache_dir: str) -> dict:
    """The environment of a process that runs as ``cpu`` (a :data:`CPUS` key). numba compiles for
    that CPU into its own cache folder, so that no code compiled for another one is loaded."""
    extra = CPUS[cpu]
    return {**extra, "NUMBA_CACHE_DIR": os.path.join(cache_dir, cpu)} if "NUMBA_CPU_NAME" in extra else dict(extra)


def run(procs: int, seeds: list[int], sizes: list[int], cpus: list[str] = ("native",)) -> dict:
    """Hashes from ``procs`` fresh processes, process ``k`` run as ``cpus[k % len(cpus)]``; returns
    ``{key: set of hashes}``, the float signal's, each CPU's hashes and timing."""
    import tempfile

    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    seen: dict[str, set[str]] = {}
    seen_signal: dict[str, set[str]] = {}
    by_cpu: dict[str, dict[str, str]] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semgen-cpus-") as cache:
        for k in range(procs):  # one at a time: a fresh interpreter each, like separate runs
            cpu = cpus[k % len(cpus)]
            res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(seeds), json.dumps(sizes), str(k)],
                                 capture_output=True, text=True, check=True,
                                 env=dict(env, PYTHONHASHSEED=str(k), **cpu_env(cpu, cache)))
            for key, (h, hf) in json.loads(res.stdout).items():
                seen.setdefault(key, set()).add(h)
                seen_signal.setdefault(key, set()).add(hf)
                by_cpu.setdefault(cpu, {}).setdefault(key, h)
    return {"seen": seen, "seen_signal": seen_signal, "by_cpu": by_cpu, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=20, help="fresh processes (default 20)")
    ap.add_argument("--seeds", type=int, default=30, help="seeds per class and size (default 30)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--cpus", nargs="+", default=["native"], choices=sorted(CPUS),
                    help="run process k as the k-th of these CPUs, in turn (default: native only)")
    a = ap.parse_args(argv)
    if a.procs < len(a.cpus):
        ap.error(f"--procs must be at least the number of --cpus ({len(a.cpus)})")
    seeds = list(range(a.seeds)) + [584]  # 584: issue 14's bridge reproduction (master seed 3)
    r = run(a.procs, seeds, a.sizes, a.cpus)
    per_class: dict[str, list[int]] = {}
    for k, hs in r["seen"].items():
        c = per_class.setdefault(k.split("/")[0], [0, 0])
        c[0] += len(hs) > 1
        c[1] += len(r["seen_signal"][k]) > 1
    total = sum(c[0] for c in per_class.values())
    total_f = sum(c[1] for c in per_class.values())
    print(f"{a.procs} fresh processes x {len(r['seen'])} images ({len(seeds)} seeds x sizes {a.sizes} "
          f"x {len(per_class)} classes), {r['seconds']:.0f} s")
    n = len(seeds) * len(a.sizes)
    for name, (bad, bad_f) in per_class.items():
        print(f"  {name:10s} bytes differ in {bad} of {n} images, float signal in {bad_f}")
    print(f"total: bytes differ in {total} of {len(r['seen'])} images, float signal before rounding in {total_f}")
    first = a.cpus[0]
    for cpu in a.cpus[1:]:
        ref, got = r["by_cpu"][first], r["by_cpu"][cpu]
        diff: dict[str, int] = {}
        for key, h in got.items():
            diff[key.split("/")[0]] = diff.get(key.split("/")[0], 0) + (h != ref[key])
        print(f"{cpu} against {first}: bytes differ in {sum(diff.values())} of {len(got)} images ("
              + ", ".join(f"{c} {d}" for c, d in diff.items()) + ")")


if __name__ == "__main__":
    main()
