"""``semgen pretrain``: a backbone pretrained on streamed procedural images.

Labels and regression targets come from each image's generator parameters
(:mod:`semgen.pretrain.labels`); images come from worker processes (:mod:`semgen.pretrain.stream`);
:func:`pretrain` trains, checkpoints and resumes (:mod:`semgen.pretrain.train`).

>>> from semgen.pretrain import PretrainConfig, pretrain

Names load lazily, so ``semgen --help`` does not import torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "TargetSpace": "labels", "fine_label_name": "labels", "label_factors": "labels",
    "PretrainConfig": "train", "pretrain": "train",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
