"""The bundled classifier: training, evaluation, ONNX / INT8 export and prediction.

>>> from semgen.classifier import train_classifier, evaluate_run, load_run

Names load lazily, so ``semgen --help`` does not import torch.
"""

from __future__ import annotations

import importlib

from .registry import ARCHS, DEFAULT_ARCH, get_arch, list_archs, register_arch

_LAZY = {
    "train_classifier": "train", "evaluate_run": "evaluate", "load_run": "checkpoint",
    "create_model": "models", "export_run": "export", "predict_files": "predict", "Predictor": "predict",
    "ExportConfig": "export_config", "make_ensemble": "ensemble",
}

__all__ = ["train_classifier", "evaluate_run", "load_run", "export_run", "ExportConfig", "predict_files", "Predictor",
           "make_ensemble", "create_model", "ARCHS", "DEFAULT_ARCH", "get_arch", "list_archs", "register_arch"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
