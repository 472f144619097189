"""Classification metrics, and the one bootstrap core behind every confidence interval semgen prints.

**Macro averages** (precision, recall, F1) run over the classes that occur, as truth or as
prediction: ``sklearn.metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)``, whose
default labels are exactly those. ``semgen evaluate``, ``semgen ablate`` and ``bench/compare_runs.py``
all use this one definition, so they print the same number for the same predictions. Why this one:
it is what the ecosystem reports, a model that predicts a class the test set lacks pays for those
false positives in the average (not only in the true classes' recall), and a class that neither
the test set nor the model's predictions contain does not dilute it. A prediction that is no class
at all (an unreadable image, index ``n_classes``) is simply wrong.

**Bootstrap** (:func:`bootstrap_replicates`): each replicate draws the test images (and, with
several trained models, the models: one per seed) with replacement as multiplicity counts, and
scores the weighted confusion counts in one vectorised pass (:func:`replicates`). The set of
classes averaged over is fixed from the full sample, per model, so every replicate averages over
the same classes. Intervals are percentiles of the replicates (:func:`percentile_interval`).

Examples
--------
>>> m = metrics_from_confusion(confusion_matrix([0, 0, 1, 1], [0, 1, 1, 2], 4), ["a", "b", "c", "d"])
>>> round(m["macro_f1"], 4)  # c is predicted once: it counts, with F1 0; d occurs nowhere: it does not
0.3889
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

#: Replicates scored per pass: bounds memory (replicates x images weights) for large test sets.
CHUNK = 250


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


def macro_average(values: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Mean of per-class ``values`` (``[..., K]``) over the ``used`` classes (the module's definition).

    ``used`` is ``[..., K]`` bool: the classes that occur as truth or as prediction. 0 where none does.
    """
    used = np.broadcast_to(used, np.shape(values))
    n = used.sum(-1)
    return np.where(n > 0, np.where(used, values, 0.0).sum(-1) / np.maximum(n, 1), 0.0)


def metrics_from_confusion(cm: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro precision / recall / F1 and per-class figures of a confusion matrix.

    Macro averages run over the classes that occur (as truth or as prediction); see the module
    docstring.
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
        "macro_precision": float(macro_average(prec, used)),
        "macro_recall": float(macro_average(rec, used)),
        "macro_f1": float(macro_average(f1, used)),
        "per_class": per,
    }


# -- the bootstrap core --------------------------------------------------------------------------

def replicates(yt, P, n_classes: int, seed_w, img_w) -> dict:
    """Metrics of weighted resamples of S models' predictions on N images, all at once.

    Parameters
    ----------
    yt : int (N,)
        True class indices in ``[0, n_classes)``.
    P : int (S, N)
        Predicted indices in ``[0, n_classes]`` (``n_classes``: no class, always wrong).
    seed_w : (B, S)
        How many times each model is drawn in each replicate.
    img_w : (B, N)
        How many times each image is drawn in each replicate.

    Returns
    -------
    dict of float64 arrays: ``accuracy``, ``macro_precision``, ``macro_recall``, ``macro_f1`` (B,),
    the mean over the drawn models of each model's figure on the drawn images; ``precision``,
    ``recall``, ``f1`` (B, C), the same per class. A model's macro averages run over the classes
    that occur in the truth or in its predictions on the full sample.
    """
    yt = np.asarray(yt, dtype=np.int64)
    P = np.atleast_2d(np.asarray(P, dtype=np.int64))
    S, N = P.shape
    C = int(n_classes)
    seed_w = np.asarray(seed_w, dtype=np.float64)
    img_w = np.asarray(img_w, dtype=np.float64)
    T = np.eye(C + 1)[yt][:, :C]                          # (N, C) one-hot truth
    Ph = np.eye(C + 1)[P][:, :, :C]                       # (S, N, C) one-hot predictions
    used = T.any(0)[None, :] | Ph.any(1)                  # (S, C) classes each model's average covers
    correct = (P == yt[None, :]).astype(np.float64)       # (S, N)
    n_img = img_w.sum(1)                                  # (B,)
    w = seed_w / seed_w.sum(1, keepdims=True)             # (B, S) each drawn model's share
    # One matrix product per count: images are weighted, then models.
    tp = (img_w @ (Ph * T[None]).transpose(1, 0, 2).reshape(N, S * C)).reshape(-1, S, C)
    n_pred = (img_w @ Ph.transpose(1, 0, 2).reshape(N, S * C)).reshape(-1, S, C)
    n_true = np.broadcast_to((img_w @ T)[:, None, :], tp.shape)
    zero = np.zeros_like(tp)
    per_model = {
        "precision": np.divide(tp, n_pred, out=zero.copy(), where=n_pred > 0),
        "recall": np.divide(tp, n_true, out=zero.copy(), where=n_true > 0),
        "f1": np.divide(2 * tp, n_pred + n_true, out=zero.copy(), where=n_pred + n_true > 0),  # 2TP/(2TP+FP+FN)
    }
    out = {"accuracy": (w * (img_w @ correct.T / n_img[:, None])).sum(1)}
    for k, v in per_model.items():
        out[f"macro_{k}"] = (w * macro_average(v, used[None])).sum(1)
        out[k] = (w[:, :, None] * v).sum(1)
    return out


def resample_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``size`` resamples of ``n`` items as multiplicity counts (float64 (size, n)).

    Equivalent to drawing ``n`` indices with replacement; for ``n == 1`` it draws no random numbers.
    """
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)


def resample_draws(S: int, N: int, n_boot: int, seed: int, *, resample_seeds: bool = True,
                   chunk: int = CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of ``(seed_w (b, S), img_w (b, N))`` draws, ``n_boot`` in all, from one seeded generator.

    Two groups scored on the same draws (a paired difference) share every draw. With one model
    (``S == 1``) the draws do not depend on ``chunk``, so it is chosen from the memory it needs.
    """
    if S < 1 or N < 1:
        from ..errors import SemgenError

        raise SemgenError("bootstrap needs at least one model and one test image")
    if S == 1:
        chunk = max(1, min(chunk, 4_000_000 // N)) if N > 16_000 else chunk
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        sw = resample_counts(rng, S, b) if resample_seeds else np.ones((b, S))
        yield sw, resample_counts(rng, N, b)


def bootstrap_replicates(yt, P, n_classes: int, *, n_boot: int, seed: int = 0, resample_seeds: bool = True,
                         chunk: int = CHUNK) -> dict:
    """:func:`replicates` of ``n_boot`` joint model x image resamples (see :func:`resample_draws`)."""
    P = np.atleast_2d(P)
    parts = [replicates(yt, P, n_classes, sw, iw)
             for sw, iw in resample_draws(*P.shape, n_boot, seed, resample_seeds=resample_seeds, chunk=chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def percentile_interval(reps: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates (along the first axis)."""
    a = 100 * (1 - level) / 2
    lo, hi = np.percentile(reps, [a, 100 - a], axis=0)
    return lo, hi


def bootstrap_ci(y_true, y_pred, n_classes: int, *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict:
    """Percentile bootstrap CIs of accuracy and macro precision / recall / F1 of one model.

    The images are resampled (:func:`bootstrap_replicates`); ``{}`` for no image or ``n_boot <= 0``.
    """
    t = np.asarray(y_true, dtype=np.int64)
    if len(t) == 0 or n_boot <= 0:
        return {}
    reps = bootstrap_replicates(t, np.asarray(y_pred, dtype=np.int64)[None], n_classes, n_boot=n_boot, seed=seed)
    keys = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
    return {k: [float(x) for x in percentile_interval(reps[k], level)] for k in keys}
