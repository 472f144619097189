"""``semgen tune``: fit the procedural generators' sampling ranges to a real reference pool.

See :func:`semgen.tune.search.tune` and ``docs/tune.md``.

>>> from semgen.tune import tune, Reference

Names load lazily, so ``semgen --help`` does not import the generators.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Reference": "objective", "discriminator_auc": "objective", "features": "objective",
    "reference_sha256": "objective", "tune": "search", "tuned_params": "search", "work_dir": "search",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
