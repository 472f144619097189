"""Same seed, same bytes across fresh processes: how many images differ between processes?

Each of ``--procs`` fresh Python processes generates the same images (every procedural class,
``--seeds`` seeds each, at every ``--sizes``) and prints the sha256 of each image's bytes; the
figure is how many (class, seed, size) images got more than one hash. Fresh processes matter: the
hazard this guards against (float32 kernels whose rounding depends on buffer alignment, issue 14)
shows only when malloc places buffers differently, which one process rarely does by itself.

    python bench/bench_determinism.py                    # 20 processes, 30 seeds, 64 and 128 px
    python bench/bench_determinism.py --procs 5 --seeds 10
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


def run(procs: int, seeds: list[int], sizes: list[int]) -> dict:
    """Hashes from ``procs`` fresh processes; returns ``{key: set of hashes}`` and timing."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    seen: dict[str, set[str]] = {}
    seen_signal: dict[str, set[str]] = {}
    t0 = time.perf_counter()
    for k in range(procs):  # one at a time: a fresh interpreter each, like separate runs
        res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(seeds), json.dumps(sizes), str(k)],
                             capture_output=True, text=True, env=dict(env, PYTHONHASHSEED=str(k)), check=True)
        for key, (h, hf) in json.loads(res.stdout).items():
            seen.setdefault(key, set()).add(h)
            seen_signal.setdefault(key, set()).add(hf)
    return {"seen": seen, "seen_signal": seen_signal, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=20, help="fresh processes (default 20)")
    ap.add_argument("--seeds", type=int, default=30, help="seeds per class and size (default 30)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    a = ap.parse_args(argv)
    seeds = list(range(a.seeds)) + [584]  # 584: issue 14's bridge reproduction (master seed 3)
    r = run(a.procs, seeds, a.sizes)
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


if __name__ == "__main__":
    main()
