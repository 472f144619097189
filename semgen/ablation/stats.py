"""Accuracy / macro-F1 with bootstrap confidence intervals over test images *and* seeds.

A group is S trained models (one per seed) that predicted the same N test images. The point estimate
is the mean over seeds of the metric on the whole test set. A bootstrap replicate resamples the
seeds (S draws with replacement) and the images (N draws with replacement) jointly, and takes the
mean over the drawn seeds of the metric on the drawn images, so the interval covers both the
test-set sampling error and the seed-to-seed spread (subset draw + training noise). The 95 % CI is
the 2.5 / 97.5 percentile of the replicates.

Macro-F1 follows ``sklearn.metrics.f1_score(average="macro", labels=classes, zero_division=0)``
over the classes of the test set; a prediction of any other label is simply wrong.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import SemgenError


def encode(y_true: Sequence[str], preds: Sequence[Sequence[str]], classes: Sequence[str] | None = None):
    """Turn label strings into ints.

    Parameters
    ----------
    y_true : sequence of str, length N
    preds : sequence of S sequences of str, each length N
    classes : the classes scored (default: those in ``y_true``, sorted). Predictions outside them map
        to index ``len(classes)`` ("outside"), which is never a true label.

    Returns
    -------
    yt : int64 (N,), P : int64 (S, N), classes : list of str
    """
    classes = list(classes) if classes is not None else sorted(set(y_true))
    index = {c: i for i, c in enumerate(classes)}
    out = len(classes)
    try:
        yt = np.array([index[y] for y in y_true], dtype=np.int64)
    except KeyError as e:
        raise SemgenError(f"test label {e.args[0]!r} is not among the scored classes {classes}") from None
    P = np.array([[index.get(p, out) for p in row] for row in preds], dtype=np.int64).reshape(len(preds), len(yt))
    return yt, P, classes


def replicates(yt: np.ndarray, P: np.ndarray, n_classes: int, seed_w: np.ndarray, img_w: np.ndarray) -> dict:
    """Metrics for weighted resamples (the vectorised core of the bootstrap).

    Parameters
    ----------
    yt : int (N,), true class indices in ``[0, n_classes)``
    P : int (S, N), predicted indices in ``[0, n_classes]`` (``n_classes`` = outside the scored set)
    seed_w : (B, S) how many times each seed is drawn in each replicate
    img_w : (B, N) how many times each image is drawn in each replicate

    Returns
    -------
    dict of float64 arrays: ``accuracy`` (B,), ``macro_f1`` (B,), ``f1`` (B, C), ``recall`` (B, C)
    """
    yt = np.asarray(yt)
    P = np.asarray(P)
    S, N = P.shape
    C = int(n_classes)
    seed_w = np.asarray(seed_w, dtype=np.float64)
    img_w = np.asarray(img_w, dtype=np.float64)
    T = np.eye(C + 1)[yt][:, :C]                          # (N, C) one-hot truth
    Ph = np.eye(C + 1)[P][:, :, :C]                       # (S, N, C) one-hot predictions
    correct = (P == yt[None, :]).astype(np.float64)       # (S, N)
    n_img = img_w.sum(1)                                  # (B,)
    n_seed = seed_w.sum(1)                                # (B,)
    acc_s = img_w @ correct.T / n_img[:, None]            # (B, S)
    acc = (seed_w * acc_s).sum(1) / n_seed
    # One matrix product per statistic: images are weighted, then seeds.
    tp = (img_w @ (Ph * T[None]).transpose(1, 0, 2).reshape(N, S * C)).reshape(-1, S, C)
    n_pred = (img_w @ Ph.transpose(1, 0, 2).reshape(N, S * C)).reshape(-1, S, C)
    n_true = (img_w @ T)[:, None, :]                      # (B, 1, C)
    denom = n_pred + n_true                               # = 2 TP + FP + FN
    f1_s = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    rec_s = np.divide(tp, np.broadcast_to(n_true, tp.shape), out=np.zeros_like(tp), where=n_true > 0)
    w = seed_w[:, :, None] / n_seed[:, None, None]
    f1 = (w * f1_s).sum(1)
    recall = (w * rec_s).sum(1)
    macro = (seed_w * f1_s.mean(2)).sum(1) / n_seed
    return {"accuracy": acc, "macro_f1": macro, "f1": f1, "recall": recall}


def _draws(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``size`` resamples of ``n`` items as multiplicity counts (equivalent to index resampling)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)


def bootstrap(y_true, preds, classes=None, *, n_boot: int = 2000, seed: int = 0, chunk: int = 250,
              resample_seeds: bool = True) -> dict:
    """Mean and 95 % percentile CI of accuracy, macro-F1 and per-class F1 / recall.

    Parameters
    ----------
    y_true : N true labels (str); preds : S lists of N predicted labels (one per seed)
    classes : scored classes (default: those in ``y_true``)
    n_boot : bootstrap replicates; seed : the bootstrap's own random seed
    resample_seeds : resample seeds too (the default); False keeps every seed in every replicate

    Returns
    -------
    dict: ``n_seeds``, ``n_images``, ``classes``, ``accuracy``/``macro_f1`` as
    ``{"mean", "lo", "hi", "seed_sd"}``, ``per_class`` ``{cls: {"f1": {...}, "recall": {...}, "support"}}``
    """
    yt, P, classes = encode(y_true, preds, classes)
    reps = _bootstrap_reps(yt, P, len(classes), n_boot, seed, chunk, resample_seeds)
    return _summarize(yt, P, classes, reps)


def _bootstrap_reps(yt, P, C, n_boot, seed, chunk, resample_seeds):
    S, N = P.shape
    if S < 1 or N < 1:
        raise SemgenError("bootstrap needs at least one seed and one test image")
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        sw = _draws(rng, S, b) if resample_seeds else np.ones((b, S))
        iw = _draws(rng, N, b)
        parts.append(replicates(yt, P, C, sw, iw))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _interval(point: float, reps: np.ndarray, per_seed: np.ndarray | None = None) -> dict:
    lo, hi = np.percentile(reps, [2.5, 97.5])
    out = {"mean": float(point), "lo": float(lo), "hi": float(hi)}
    if per_seed is not None:
        out["seed_sd"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    return out


def _summarize(yt, P, classes, reps) -> dict:
    S, N = P.shape
    C = len(classes)
    full = replicates(yt, P, C, np.eye(S), np.ones((S, N)))  # row s = seed s alone, all images
    point = replicates(yt, P, C, np.ones((1, S)), np.ones((1, N)))
    support = np.bincount(yt, minlength=C)
    per_class = {}
    for j, c in enumerate(classes):
        per_class[c] = {
            "f1": _interval(point["f1"][0, j], reps["f1"][:, j], full["f1"][:, j]),
            "recall": _interval(point["recall"][0, j], reps["recall"][:, j], full["recall"][:, j]),
            "support": int(support[j]),
        }
    return {
        "n_seeds": int(S), "n_images": int(N), "classes": list(classes),
        "accuracy": _interval(point["accuracy"][0], reps["accuracy"], full["accuracy"]),
        "macro_f1": _interval(point["macro_f1"][0], reps["macro_f1"], full["macro_f1"]),
        "per_class": per_class,
    }


def paired_difference(y_true, preds_a, preds_b, classes=None, *, n_boot: int = 2000, seed: int = 0,
                      chunk: int = 250) -> dict:
    """Bootstrap CI of (B - A) for two groups evaluated on the same images with the same seeds.

    Seeds are paired by position (seed s of A and of B share the real subset), and each replicate
    uses the same seed and image draws for both, so shared noise cancels.

    Returns ``{"accuracy": {...}, "macro_f1": {...}, "per_class": {cls: {"f1": {...}}}}``.
    """
    if len(preds_a) != len(preds_b):
        raise SemgenError(f"paired difference needs the same seeds ({len(preds_a)} vs {len(preds_b)})")
    yt, PA, classes = encode(y_true, preds_a, classes)
    _, PB, _ = encode(y_true, preds_b, classes)
    S, N = PA.shape
    C = len(classes)
    rng = np.random.default_rng(seed)
    da, db = [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        sw, iw = _draws(rng, S, b), _draws(rng, N, b)
        da.append(replicates(yt, PA, C, sw, iw))
        db.append(replicates(yt, PB, C, sw, iw))
    ra = {k: np.concatenate([p[k] for p in da]) for k in da[0]}
    rb = {k: np.concatenate([p[k] for p in db]) for k in db[0]}
    pa = replicates(yt, PA, C, np.ones((1, S)), np.ones((1, N)))
    pb = replicates(yt, PB, C, np.ones((1, S)), np.ones((1, N)))
    out = {k: _interval(pb[k][0] - pa[k][0], rb[k] - ra[k]) for k in ("accuracy", "macro_f1")}
    out["per_class"] = {c: {"f1": _interval(pb["f1"][0, j] - pa["f1"][0, j], rb["f1"][:, j] - ra["f1"][:, j])}
                        for j, c in enumerate(classes)}
    return out


def point_metrics(y_true, y_pred, classes=None) -> dict:
    """Accuracy, macro-F1 and per-class precision / recall / F1 of one model (no resampling)."""
    from ..classifier.metrics import confusion_matrix, per_class_prf

    yt, P, classes = encode(y_true, [y_pred], classes)
    C = len(classes)
    p = P[0]
    # index C collects predictions outside `classes`: they count against recall, never as a class
    cm = confusion_matrix(yt, p, C + 1)
    prec, rec, f1 = (a[:C] for a in per_class_prf(cm))
    n_true = cm.sum(1)[:C]
    return {
        "accuracy": float((p == yt).mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {c: {"precision": float(prec[j]), "recall": float(rec[j]), "f1": float(f1[j]),
                          "support": int(n_true[j])} for j, c in enumerate(classes)},
    }
