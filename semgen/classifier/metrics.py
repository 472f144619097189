"""Classification metrics from a confusion matrix, with bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of images of true class ``i`` predicted as ``j`` (int64, ``[K, K]``)."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_prf(cm: np.ndarray):
    """Per-class precision, recall, F1 of a ``[..., K, K]`` stack of matrices (0 where undefined)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    pred = cm.sum(-2).astype(np.float64)
    true = cm.sum(-1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(pred > 0, tp / pred, 0.0)
        rec = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    return prec, rec, f1


def metrics_from_confusion(cm: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro precision / recall / F1 and per-class figures of a confusion matrix.

    Macro averages run over the classes that occur (as truth or as prediction), as scikit-learn
    does by default; a class the model never saw and the test set lacks does not dilute them.
    """
    cm = np.asarray(cm)
    n = int(cm.sum())
    prec, rec, f1 = per_class_prf(cm)
    support = cm.sum(1)
    used = (support > 0) | (cm.sum(0) > 0)
    per = {
        c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
            "support": int(support[i]), "predicted": int(cm[:, i].sum())}
        for i, c in enumerate(classes)
    }
    return {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "macro_precision": float(prec[used].mean()) if used.any() else 0.0,
        "macro_recall": float(rec[used].mean()) if used.any() else 0.0,
        "macro_f1": float(f1[used].mean()) if used.any() else 0.0,
        "per_class": per,
    }


def bootstrap_ci(y_true, y_pred, n_classes: int, *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict:
    """Percentile bootstrap CIs of accuracy and macro precision / recall / F1 (images resampled).

    The macro averages use the classes that occur in the full sample, so every resample averages
    over the same set.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    n = len(t)
    if n == 0 or n_boot <= 0:
        return {}
    full = confusion_matrix(t, p, n_classes)
    used = (full.sum(1) > 0) | (full.sum(0) > 0)
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")}
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        flat = (np.arange(m)[:, None] * n_classes * n_classes + t[idx] * n_classes + p[idx]).ravel()
        cms = np.bincount(flat, minlength=m * n_classes * n_classes).reshape(m, n_classes, n_classes)
        prec, rec, f1 = per_class_prf(cms)
        out["accuracy"].append(np.trace(cms, axis1=1, axis2=2) / n)
        out["macro_precision"].append(prec[:, used].mean(1))
        out["macro_recall"].append(rec[:, used].mean(1))
        out["macro_f1"].append(f1[:, used].mean(1))
    a = (1 - level) / 2
    return {k: [float(np.quantile(np.concatenate(v), a)), float(np.quantile(np.concatenate(v), 1 - a))]
            for k, v in out.items()}


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, n_classes), [str(i) for i in range(n_classes)])["macro_f1"]
