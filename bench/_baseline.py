"""Old and new code side by side: each measurement in a fresh process that imports semgen from a checkout.

On a shared, loaded machine the absolute figures drift; the ratio of two neighbouring runs, one of
the old code and one of the new, much less. The bench scripts that take ``--baseline OLD_CHECKOUT``
(``bench_procedural``, ``bench_curation``, ``bench_classifier``; a checkout made with
``git worktree add /tmp/old COMMIT``) run themselves again as a child with one of these helpers:
the child prints its result as one JSON line, with ``"semgen": semgen_dir()`` so that the parent
can check which code it timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def load() -> str:
    """The machine's load averages (1, 5, 15 min) and core count, printed beside every figure."""
    try:
        a, b, c = os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        return "load ?"
    return f"load {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cores"


def semgen_dir() -> str:
    """The folder of the ``semgen`` package this process imports (what a child reports)."""
    import semgen

    return os.path.dirname(os.path.abspath(semgen.__file__))


def in_checkout(checkout: str, argv: list, *, what: str = "measurement") -> dict:
    """Run ``python *argv`` in a fresh process importing semgen from ``checkout``; its last stdout line as JSON.

    The child's ``PYTHONPATH`` starts with the checkout and its working directory is the checkout
    (pool workers started with ``python -c`` put the working directory first on ``sys.path``);
    ``OMP_WAIT_POLICY=PASSIVE``, as for every torch process on shared cores. When the result names
    the ``semgen`` folder it imported, that folder must lie in the checkout.
    """
    checkout = os.path.abspath(checkout)
    if not os.path.isdir(os.path.join(checkout, "semgen")):
        raise SystemExit(f"--baseline {checkout}: no semgen/ package there (want a checkout of the repo)")
    path = [checkout] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), OMP_WAIT_POLICY="PASSIVE")
    r = subprocess.run([sys.executable, *map(str, argv)], env=env, capture_output=True, text=True, cwd=checkout)
    if r.returncode:
        raise SystemExit(f"{checkout}: {what} failed:\n{r.stderr[-2000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    where = res.get("semgen")
    if where is not None and not os.path.realpath(where).startswith(os.path.realpath(checkout) + os.sep):
        raise SystemExit(f"{checkout}: the child imported semgen from {where}")
    return res


def alternated(repeat: int, measure, old: str, new: str) -> list[tuple]:
    """``(measure(old), measure(new))``, ``repeat`` times (at least once).

    Alternating exposes both sides to the same minutes of load.
    """
    return [(measure(old), measure(new)) for _ in range(max(1, repeat))]


def best_of(repeat: int, measure, old: str, new: str, key) -> tuple[dict, dict]:
    """Each side's run of least ``key`` among :func:`alternated` runs.

    Other jobs on a shared machine only ever add time (cache and memory-bus contention), so the
    best of a few alternated runs is the steadiest estimate of each side.
    """
    runs = alternated(repeat, measure, old, new)
    return min((r[0] for r in runs), key=key), min((r[1] for r in runs), key=key)
