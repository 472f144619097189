"""FP32 ONNX latency of runs exported by this checkout and by an older one, side by side.

Each run is exported (``semgen.classifier.export.export_onnx``) by both checkouts in their own
process, then the two files are timed on onnxruntime with 1 thread, interleaved in blocks (so a
loaded machine slows both alike), and their outputs compared. Prints the median ms per image,
the ratio, the node counts and the largest output difference.

Example (docs/classifier.md, the constant "SAME" padding of 2026-12-01)::

    git worktree add /tmp/old 793d09b
    python bench/bench_export_latency.py --baseline /tmp/old \\
        out/edge/lite035_kdens25 out/ft/lite0_imagenet_semgen76800_r1_all_s0
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_EXPORT = """
import sys
from semgen.classifier.checkpoint import load_run
from semgen.classifier.export import export_onnx
model, meta = load_run(sys.argv[1])
export_onnx(model, int(sys.argv[3]) or meta["size"], sys.argv[2])
"""


def export_with(checkout: Path, run: Path, out: Path, size: int) -> None:
    """Export ``run`` with the semgen of ``checkout`` (its own process, run from that directory)."""
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_WAIT_POLICY="PASSIVE")
    subprocess.run([sys.executable, "-c", _EXPORT, str(run), str(out), str(size)], cwd=checkout, env=env,
                   check=True)


def time_pair(a: Path, b: Path, *, repeat: int = 30, block: int = 10) -> dict:
    """Median ms per image of ONNX files ``a`` and ``b`` (1 thread, interleaved blocks) and their
    largest output difference on one random image."""
    import onnxruntime as ort

    def session(p):
        o = ort.SessionOptions()
        o.intra_op_num_threads = o.inter_op_num_threads = 1
        return ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"])

    s = {"a": session(a), "b": session(b)}
    inp = s["a"].get_inputs()[0]
    x = np.random.default_rng(0).random([1, *inp.shape[1:]], np.float32)
    diff = float(np.abs(s["a"].run(None, {inp.name: x})[0] - s["b"].run(None, {inp.name: x})[0]).max())
    t: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(repeat):
        for k in ("a", "b") if r % 2 else ("b", "a"):
            t0 = time.perf_counter()
            for _ in range(block):
                s[k].run(None, {inp.name: x})
            t[k].append((time.perf_counter() - t0) / block * 1000)
    return {"a_ms": float(np.median(t["a"])), "b_ms": float(np.median(t["b"])), "max_diff": diff}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run dirs of semgen train")
    ap.add_argument("--baseline", required=True, type=Path, help="an older checkout of semgen")
    ap.add_argument("--size", type=int, default=0, help="input side (default: each run's own)")
    ap.add_argument("--repeat", type=int, default=30, help="timed blocks of 10 images per file")
    a = ap.parse_args(argv)
    import onnx

    print("| run | nodes old / new | ms old | ms new | old / new | max output difference |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for run in a.runs:
            old, new = Path(tmp) / "old.onnx", Path(tmp) / "new.onnx"
            export_with(a.baseline.resolve(), run.resolve(), old, a.size)
            export_with(ROOT, run.resolve(), new, a.size)
            r = time_pair(old, new, repeat=a.repeat)
            nodes = [len(onnx.load(str(p)).graph.node) for p in (old, new)]
            print(f"| {run} | {nodes[0]} / {nodes[1]} | {r['a_ms']:.2f} | {r['b_ms']:.2f} | "
                  f"{r['a_ms'] / r['b_ms']:.2f}x | {r['max_diff']:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
