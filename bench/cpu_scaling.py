"""How much work do this machine's cores do side by side? The ceiling for any N-worker figure.

Runs the same CPU-bound job (a pure-Python loop; NumPy float32 passes over a 256 px frame, which
stays in cache, and over a 2048 px one, which streams through memory) in 1 process, then in N
processes at once, and prints the throughput of N against 1. On a machine
with N free physical cores the ratio is close to N; on a VM whose vCPUs share physical cores (SMT
siblings, a CPU quota) it is lower, and so is every N-worker throughput measured there.

    python bench/cpu_scaling.py [--procs 2] [--seconds 2]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import time


def _python_job(seconds: float) -> float:
    """Loop iterations per second of a plain Python loop, run for ``seconds``."""
    n, s, t0 = 0, 0, time.perf_counter()
    while True:
        for i in range(20000):
            s += i * i % 7
        n += 20000
        if time.perf_counter() - t0 >= seconds:
            return n / (time.perf_counter() - t0)


def _numpy_job(seconds: float, side: int = 256) -> float:
    """``side`` x ``side`` float32 passes per second (sqrt(a * a + 1))."""
    import numpy as np

    a = np.random.default_rng(0).random((side, side), dtype=np.float32)
    b = np.empty_like(a)
    reps = max(1, 50 * 256 * 256 // (side * side))  # passes between looks at the clock
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(reps):
            np.multiply(a, a, out=b)
            b += np.float32(1.0)
            np.sqrt(b, out=b)
        n += reps
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    ctx = mp.get_context("fork")
    print(f"# {args.procs} processes side by side against 1; {os.cpu_count()} CPUs; load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # the frame of 256 px sits in a core's L2 cache; the 2048 px one (16 MB) streams through memory,
    # whose bandwidth the processes share
    jobs = (("python loop", _python_job), ("numpy 256 px", _numpy_job),
            ("numpy 2048 px", functools.partial(_numpy_job, side=2048)))
    for name, job in jobs:
        one = job(args.seconds)
        with ctx.Pool(args.procs) as pool:
            many = pool.map(job, [args.seconds] * args.procs)
        print(f"{name:14s} 1 process {one:12.1f}/s   {args.procs} processes {sum(many):12.1f}/s   "
              f"ratio {sum(many) / one:.2f} (ideal {args.procs})")


if __name__ == "__main__":
    main()
