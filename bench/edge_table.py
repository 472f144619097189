"""The edge table of issue 13: every exported run's accuracy, size and latency against the goal.

Reads what ``semgen export RUN --data DIR`` wrote (``RUN/export.json``) and the parameter count of
``RUN/model.safetensors`` (tensor shapes only); evaluates nothing, so the figures are the export's
own: macro-F1 of the INT8 file and of the FP32 file on the export's ``--data``, the INT8 file's
bytes, its activation type and its median latency on 1 thread.

The goal (issue 13) for one INT8 file: at most 0.6 MB, 8-bit activations, macro-F1 at least 0.50
(and at least 90 % of its teacher's, with ``--teacher-f1``), within 1 point of its own FP32 (for
a QAT run: its fake-quant model, which is what the file computes), at most 2 ms per image.

Example::

    python bench/edge_table.py out/edge/*_qat7 --teacher-f1 0.661
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GOAL_BYTES = 600_000
GOAL_F1 = 0.50
GOAL_MS = 2.0
GOAL_DROP = 0.01
GOAL_OF_TEACHER = 0.90


def n_params(run: Path) -> int | None:
    """Parameters in ``RUN/model.safetensors`` (from the header's shapes; no tensor is read)."""
    f = run / "model.safetensors"
    if not f.is_file():
        return None
    from safetensors import safe_open

    total = 0
    with safe_open(str(f), framework="numpy") as sf:
        for k in sf.keys():
            if "running_" in k or k.endswith("num_batches_tracked"):
                continue  # BatchNorm statistics are buffers, not parameters
            n = 1
            for d in sf.get_slice(k).get_shape():
                n *= int(d)
            total += n
    return total


def row(run, teacher_f1: float | None = None) -> dict:
    """One run's figures and which goals its INT8 file meets."""
    run = Path(run)
    f = run / "export.json"
    if not f.is_file():
        raise SystemExit(f"{run}: no export.json; run `semgen export {run} --data DIR` first")
    e = json.loads(f.read_text())
    q = e.get("quantization", {})
    qat = q.get("qat") or {}
    int8, fp32 = e.get("int8", {}), e.get("fp32", {})
    f1 = int8.get("macro_f1")
    # a QAT file is judged against the model it was trained as (its fake-quant graph)
    ref = qat.get("fake_quant_macro_f1", fp32.get("macro_f1"))
    r = {
        "run": str(run), "arch": e.get("arch"), "params": n_params(run), "bytes": int8.get("bytes"),
        "activations": q.get("activations", "?"), "strategy": q.get("strategy", "?"),
        "int8_f1": f1, "fp32_f1": fp32.get("macro_f1"), "ref_f1": ref,
        "ms": (int8.get("latency") or {}).get("median_ms"), "fp32_ms": (fp32.get("latency") or {}).get("median_ms"),
        "data": e.get("data"),
    }
    acts8 = str(r["activations"]).startswith(("uint8", "int8"))
    r["goals"] = {
        "size": r["bytes"] is not None and r["bytes"] <= GOAL_BYTES,
        "8-bit": acts8,
        "f1": f1 is not None and f1 >= GOAL_F1,
        "drop": f1 is not None and ref is not None and ref - f1 <= GOAL_DROP,
        "latency": r["ms"] is not None and r["ms"] <= GOAL_MS,
    }
    if teacher_f1:
        r["goals"]["teacher"] = f1 is not None and f1 >= GOAL_OF_TEACHER * teacher_f1
    return r


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = ("| run | arch | params | INT8 bytes | activations | INT8 macro-F1 | its FP32 | "
            "ms INT8 / FP32 | goals met |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        met = [k for k, ok in r["goals"].items() if ok]
        missed = [k for k, ok in r["goals"].items() if not ok]
        goals = ("all" if not missed else f"{len(met)}/{len(r['goals'])}, not: {', '.join(missed)}")
        lines.append(
            f"| {r['run']} | {r['arch']} | {_fmt(r['params'], ',')} | {_fmt(r['bytes'], ',')} | {r['activations']} | "
            f"{_fmt(r['int8_f1'], '.3f')} | {_fmt(r['ref_f1'], '.3f')} | "
            f"{_fmt(r['ms'], '.2f')} / {_fmt(r['fp32_ms'], '.2f')} | {goals} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="exported run dirs")
    ap.add_argument("--teacher-f1", type=float, default=None,
                    help="the teacher's macro-F1 on the same data (adds the 90 %% goal)")
    ap.add_argument("--json", action="store_true", help="the rows as JSON")
    a = ap.parse_args(argv)
    rows = [row(r, a.teacher_f1) for r in a.runs]
    print(json.dumps(rows, indent=1) if a.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
