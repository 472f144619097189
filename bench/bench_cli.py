"""How long a ``semgen`` command takes to start, and which heavy libraries its start imports.

    python bench/bench_cli.py [--repeat 5] [--baseline OLD_CHECKOUT]

Every command builds the parser of all commands first (``semgen.cli.build_parser``), so this is
the least any command costs: a fresh interpreter that imports ``semgen.cli``, builds the parser
and lists what it imported, timed from the outside, best of ``--repeat``. The libraries named are
those a command should import only when it runs (``tests/test_cli_conventions.py`` asserts that
the parser imports none of them). With ``--baseline`` (a checkout of older code, e.g. ``git
worktree add /tmp/old COMMIT``) old and new alternate and the ratio is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baseline import alternated, in_checkout, load  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "numba", "scipy", "diffusers", "optuna", "onnxruntime", "onnx", "sklearn", "cv2")
CHILD = ("import json, sys; from semgen.cli import build_parser; build_parser(); import semgen, os; "
         f"print(json.dumps({{'semgen': os.path.dirname(semgen.__file__), "
         f"'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))")


def start(checkout: str | Path) -> dict:
    """Seconds for a fresh ``semgen`` process to build its parser, and the heavy modules it imported."""
    t = time.perf_counter()
    res = in_checkout(str(checkout), ["-c", CHILD], what="building the parser")
    res["seconds"] = time.perf_counter() - t
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="fresh processes per side; the fastest counts")
    ap.add_argument("--baseline", metavar="DIR", help="checkout of the old code: old, new and their ratio")
    a = ap.parse_args(argv)
    if a.baseline:
        runs = alternated(a.repeat, start, a.baseline, REPO)
        old = min((r[0] for r in runs), key=lambda r: r["seconds"])
        new = min((r[1] for r in runs), key=lambda r: r["seconds"])
        print(f"semgen's start (parser built, best of {len(runs)}): old {old['seconds']:.2f} s "
              f"(imports {', '.join(old['heavy']) or 'nothing heavy'}) -> new {new['seconds']:.2f} s "
              f"(imports {', '.join(new['heavy']) or 'nothing heavy'}): x{old['seconds'] / new['seconds']:.2f}; {load()}")
    else:
        best = min((start(REPO) for _ in range(max(1, a.repeat))), key=lambda r: r["seconds"])
        print(f"semgen's start (parser built, best of {a.repeat}): {best['seconds']:.2f} s; imports "
              f"{', '.join(best['heavy']) or 'nothing heavy'}; {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
