"""Accuracy / macro-F1 with bootstrap confidence intervals over test images *and* seeds.

A group is S trained models (one per seed) that predicted the same N test images. The point estimate
is the mean over seeds of the metric on the whole test set. A bootstrap replicate resamples the
seeds (S draws with replacement) and the images (N draws with replacement) jointly, and takes the
mean over the drawn seeds of the metric on the drawn images, so the interval covers both the
test-set sampling error and the seed-to-seed spread (subset draw + training noise). The 95 % CI is
the 2.5 / 97.5 percentile of the replicates.

The metrics and the resampling are :mod:`semgen.classifier.metrics`' (one bootstrap core, one
macro-F1 for ``semgen evaluate`` and ``semgen ablate``): each model's macro-F1 is
``sklearn.metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)``, over the classes
that occur in the test set or in that model's predictions. An empty prediction (an image the
classifier could not read) is no class: simply wrong.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..classifier.metrics import (bootstrap_replicates, percentile_interval, replicates,
                                  resample_draws)
from ..errors import SemgenError


def encode(y_true: Sequence[str], preds: Sequence[Sequence[str]], classes: Sequence[str] | None = None):
    """Turn label strings into ints.

    Parameters
    ----------
    y_true : sequence of str, length N
    preds : sequence of S sequences of str, each length N
    classes : the classes reported one by one (default: those in ``y_true``, sorted). Every other
        label some model predicted follows them (it counts in that model's macro averages); an empty
        prediction maps to index ``len(labels)``, never a class.

    Returns
    -------
    yt : int64 (N,), P : int64 (S, N), labels : list of str (``classes`` first)
    """
    classes = _reported(y_true, classes)
    extra = sorted({p for row in preds for p in row if p and p not in set(classes)})
    labels = classes + extra
    index = {c: i for i, c in enumerate(labels)}
    out = len(labels)
    try:
        yt = np.array([index[y] for y in y_true], dtype=np.int64)
    except KeyError as e:
        raise SemgenError(f"test label {e.args[0]!r} is not among the scored classes {classes}") from None
    P = np.array([[index.get(p, out) for p in row] for row in preds], dtype=np.int64).reshape(len(preds), len(yt))
    return yt, P, labels


def bootstrap(y_true, preds, classes=None, *, n_boot: int = 2000, seed: int = 0, chunk: int = 250,
              resample_seeds: bool = True) -> dict:
    """Mean and 95 % percentile CI of accuracy, macro-F1 and per-class F1 / recall.

    Parameters
    ----------
    y_true : N true labels (str); preds : S lists of N predicted labels (one per seed)
    classes : classes reported per class (default: those in ``y_true``); see :func:`encode`
    n_boot : bootstrap replicates; seed : the bootstrap's own random seed
    resample_seeds : resample seeds too (the default); False keeps every seed in every replicate

    Returns
    -------
    dict: ``n_seeds``, ``n_images``, ``classes``, ``accuracy``/``macro_f1`` as
    ``{"mean", "lo", "hi", "seed_sd"}``, ``per_class`` ``{cls: {"f1": {...}, "recall": {...}, "support"}}``
    """
    classes = _reported(y_true, classes)
    yt, P, labels = encode(y_true, preds, classes)
    reps = bootstrap_replicates(yt, P, len(labels), n_boot=n_boot, seed=seed, resample_seeds=resample_seeds,
                                chunk=chunk)
    return _summarize(yt, P, labels, len(classes), reps)


def _reported(y_true, classes) -> list[str]:
    return list(classes) if classes is not None else sorted(set(y_true))


def _interval(point: float, reps: np.ndarray, per_seed: np.ndarray | None = None) -> dict:
    lo, hi = percentile_interval(reps)
    out = {"mean": float(point), "lo": float(lo), "hi": float(hi)}
    if per_seed is not None:
        out["seed_sd"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    return out


def _whole(yt, P, C: int, seeds=None) -> dict:
    """:func:`replicates` on the whole test set: every seed together, or (``seeds``) each alone."""
    S, N = P.shape
    return replicates(yt, P, C, np.eye(S) if seeds else np.ones((1, S)), np.ones((S if seeds else 1, N)))


def _summarize(yt, P, labels, n_report: int, reps) -> dict:
    """The report of :func:`bootstrap`: per-class figures for the first ``n_report`` labels."""
    S, N = P.shape
    C = len(labels)
    full = _whole(yt, P, C, seeds=True)  # row s = seed s alone, all images
    point = _whole(yt, P, C)
    support = np.bincount(yt, minlength=C)
    per_class = {}
    for j, c in enumerate(labels[:n_report]):
        per_class[c] = {
            "f1": _interval(point["f1"][0, j], reps["f1"][:, j], full["f1"][:, j]),
            "recall": _interval(point["recall"][0, j], reps["recall"][:, j], full["recall"][:, j]),
            "support": int(support[j]),
        }
    return {
        "n_seeds": int(S), "n_images": int(N), "classes": list(labels[:n_report]),
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
    classes = _reported(y_true, classes)
    yt, P, labels = encode(y_true, list(preds_a) + list(preds_b), classes)
    S, C = len(preds_a), len(labels)
    PA, PB = P[:S], P[S:]
    da, db = [], []
    for sw, iw in resample_draws(S, len(yt), n_boot, seed, chunk=chunk):
        da.append(replicates(yt, PA, C, sw, iw))
        db.append(replicates(yt, PB, C, sw, iw))
    ra = {k: np.concatenate([p[k] for p in da]) for k in da[0]}
    rb = {k: np.concatenate([p[k] for p in db]) for k in db[0]}
    pa, pb = _whole(yt, PA, C), _whole(yt, PB, C)
    out = {k: _interval(pb[k][0] - pa[k][0], rb[k] - ra[k]) for k in ("accuracy", "macro_f1")}
    out["per_class"] = {c: {"f1": _interval(pb["f1"][0, j] - pa["f1"][0, j], rb["f1"][:, j] - ra["f1"][:, j])}
                        for j, c in enumerate(classes)}
    return out


def point_metrics(y_true, y_pred, classes=None) -> dict:
    """Accuracy, macro-F1 and per-class precision / recall / F1 of one model (no resampling)."""
    classes = _reported(y_true, classes)
    yt, P, labels = encode(y_true, [y_pred], classes)
    m = _whole(yt, P, len(labels))
    support = np.bincount(yt, minlength=len(labels))
    return {
        "accuracy": float(m["accuracy"][0]),
        "macro_f1": float(m["macro_f1"][0]),
        "per_class": {c: {"precision": float(m["precision"][0, j]), "recall": float(m["recall"][0, j]),
                          "f1": float(m["f1"][0, j]), "support": int(support[j])}
                      for j, c in enumerate(classes)},
    }
