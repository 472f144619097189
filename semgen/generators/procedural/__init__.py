"""Procedural SEM simulator: scenes in physical units, an SEM imaging model, defect classes.

``generate(label, n, out, ...)`` writes a dataset dir; ``generate_one(gen, seed, size)`` makes one
image; ``create_generator`` / ``list_generators`` give the registered classes. See
``docs/procedural.md``.
"""

from __future__ import annotations

import os

#: Default output dir of ``semgen procedural`` (relative to the working directory). Here, not in
#: ``generation``: the CLI's parser reads it, and must not import the generators to do so.
DEFAULT_OUT = os.path.join("out", "procedural")
#: What the fork server of ``generate``'s pool imports once for its workers (and what the CLI starts
#: it with early: :func:`semgen.parallel.start_pool_early`).
POOL_PRELOAD = ("semgen.generators.procedural.generation",)
#: Runs of this many images or more get two worker processes by default (``semgen procedural``
#: without ``--workers``, on 2 cores or more). Measured on 2 cores (2026-12-03): a pool costs about
#: 1 s more to start than one process, and saves about 5 of 9 ms per bridge image, so it pays from
#: about 190 images; 500 bridge images took 4.0-4.6 s with two workers, 5.8-6.2 s with one.
POOL_FROM = 200

__all__ = ["generate", "generate_one", "Sample", "create_generator", "list_generators", "render", "IMAGING"]

_LAZY = {
    "generate": ".generation", "generate_one": ".generation", "Sample": ".generation",
    "create_generator": ".registry", "list_generators": ".registry",
    "render": ".imaging", "IMAGING": ".imaging",
}


def __getattr__(name: str):
    # lazy, so that ``semgen --help`` does not pay for OpenCV / SciPy imports
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
