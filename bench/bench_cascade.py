"""The two-stage cascade of hierarchical heads: average latency per image at stated clean fractions.

    nice python bench/bench_cascade.py [--run RUN] [--arch A] [--size 128] [--clean 0.5 0.8 0.9 0.95]
                                       [--data DIR] [--runs 300] [--threads 1]

Exports the one-graph model (``model.onnx``) and the two cascade stages (``model.gate.onnx``,
``model.rest.onnx``) of a hierarchical run (``--run``, trained with ``semgen train --heads
hierarchical``) or, without one, of an untrained hierarchical model of ``--arch`` (latency does not
depend on the weights), all FP32, into a temporary folder. It times each at batch 1 on
``--threads`` onnxruntime threads (median of ``--runs`` after 30 warm-up runs; ``--rounds``
rounds interleaving the three graphs, the lowest median of each kept: on a shared CPU it is the
least disturbed) and prints, for
each clean fraction c (the share of images the gate settles), the cascade's average
``t_gate + (1 - c) * t_rest`` against the one graph, and the break-even fraction. With ``--run``
and ``--data``, it also runs the cascade on those images and reports the fraction its gate
settled there. The CPU is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from semgen.classifier.cascade import OrtCascade, cascade_latency, export_cascade_onnx, stage_latency_ms  # noqa: E402
from semgen.classifier.export import export_onnx, latency_ms  # noqa: E402
from semgen.classifier.hierarchy import load_hierarchy  # noqa: E402
from semgen.classifier.models import create_model  # noqa: E402

REAL_CLASSES = ["clean", "bridge", "open", "ler", "via", "crack", "particle", "cmp", "other"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a run dir of 'semgen train --heads hierarchical' (default: an untrained model)")
    ap.add_argument("--arch", default="mobilenetv3_small_100", help="without --run (default mobilenetv3_small_100)")
    ap.add_argument("--size", type=int, default=128, help="without --run: input side (default 128)")
    ap.add_argument("--hierarchy", default=None, help="without --run: a hierarchy file (default: the bundled one)")
    ap.add_argument("--clean", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95],
                    help="clean fractions to report (default 0.5 0.8 0.9 0.95)")
    ap.add_argument("--data", action="append", help="with --run: images to measure the gate's settled fraction on")
    ap.add_argument("--runs", type=int, default=300, help="timed runs per graph and round (default 300)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the three graphs (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.run:
        from semgen.classifier.checkpoint import load_run

        model, meta = load_run(a.run)
        size, name = meta["size"], f"{a.run} ({meta['arch']})"
        if meta.get("heads") is None:
            print(f"{a.run} has one head; train with --heads hierarchical", file=sys.stderr)
            return 2
    else:
        torch.manual_seed(0)
        model = create_model(a.arch, len(REAL_CLASSES), heads=load_hierarchy(a.hierarchy), classes=REAL_CLASSES).eval()
        size, name = a.size, f"untrained {a.arch}"
    md = {"classes": list(model.classes), "size": size}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(model, size, tmp / "model.onnx", metadata=md)
        export_cascade_onnx(model, size, tmp, metadata=md)
        rounds = []
        for _ in range(a.rounds):
            st = stage_latency_ms(tmp, size, runs=a.runs, threads=a.threads)
            rounds.append((latency_ms(tmp / "model.onnx", size, runs=a.runs, threads=a.threads)["median_ms"],
                           st["gate_ms"], st["rest_ms"]))
        full, g, rest = (min(r[i] for r in rounds) for i in range(3))
        settled = None
        if a.run and a.data:
            from semgen.classifier.data import load_image_set

            images = load_image_set(a.data, size=size, classes=None).images
            r = OrtCascade(tmp, threads=a.threads).run(images)
            settled = (float(1 - r["resolved"].mean()), len(images))
    load = os.getloadavg()
    print(f"{name}, {size} px, hierarchy gate after {model.gate_after} of {len(model.net.blocks)} stages; "
          f"onnxruntime FP32, batch 1, {a.threads} thread(s), lowest median of {a.rounds} rounds of {a.runs}; "
          f"load {load[0]:.2f} on {os.cpu_count()} cores")
    print("  rounds (one graph, gate, rest ms): " + "; ".join(" ".join(f"{v:.3f}" for v in r) for r in rounds))
    print(f"  one graph {full:.3f} ms | gate stage {g:.3f} ms | rest {rest:.3f} ms")
    fracs = list(a.clean) + ([settled[0]] if settled else [])
    rows = []
    for c in fracs:
        avg = cascade_latency(g, rest, c)
        rows.append({"clean_fraction": c, "cascade_ms": avg, "one_graph_ms": full, "speedup": full / avg})
        tag = f" (measured on {settled[1]} images of {', '.join(a.data)})" if settled and c == settled[0] else ""
        print(f"  clean fraction {c:.3f}{tag}: cascade {avg:.3f} ms/image vs {full:.3f} ({full / avg:.2f}x)")
    even = 1 - (full - g) / rest if rest > 0 else None
    if even is not None:
        print(f"  break-even clean fraction: {even:.3f}" + (" (the cascade is faster at any fraction)" if even <= 0 else ""))
    if a.json:
        Path(a.json).write_text(json.dumps({"model": name, "size": size, "gate_ms": g, "rest_ms": rest,
                                            "one_graph_ms": full, "rows": rows, "break_even": even, "rounds": rounds,
                                            "threads": a.threads, "runs": a.runs, "load": load[0]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
