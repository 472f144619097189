"""Calibrated rejection: temperature scaling and the threshold for a target precision.

At the end of training, one temperature T is fitted on the validation split (minimum negative
log-likelihood of ``softmax(logits / T)``; Guo et al. 2017) and stored in ``RUN/calibration.json``
with the validation confidences and correctness, from which ``semgen evaluate --reject-below auto
--target-precision P`` picks the lowest threshold whose accepted validation images reach precision
P (so the test images never choose it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import SemgenError
from ..imageio import write_bytes_atomic

CALIBRATION_FILE = "calibration.json"


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``."""
    lp = _log_softmax(np.asarray(logits, np.float64) / temperature)
    return float(-lp[np.arange(len(y)), y].mean())


def fit_temperature(logits, y, *, lo: float = 0.05, hi: float = 20.0, iters: int = 60) -> float:
    """The temperature minimising the NLL on ``(logits, y)``.

    The NLL is convex in ``1 / T``, so a golden-section search over ``1 / T`` in ``[1/hi, 1/lo]``
    finds the minimum. Returns 1.0 when there is nothing to fit on.
    """
    logits, y = np.asarray(logits, np.float64), np.asarray(y, np.int64)
    if len(y) == 0:
        return 1.0
    a, b = 1.0 / hi, 1.0 / lo
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, y, 1 / c), nll(logits, y, 1 / d)
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, y, 1 / c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, y, 1 / d)
    return float(2.0 / (a + b))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Re-soften probabilities: ``softmax(log(p) / T)`` equals ``softmax(logits / T)``."""
    if temperature == 1.0:
        return np.asarray(probs)
    lp = np.log(np.clip(np.asarray(probs, np.float64), 1e-30, None)) / temperature
    lp -= lp.max(1, keepdims=True)
    e = np.exp(lp)
    return e / e.sum(1, keepdims=True)


def rejected_mask(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Images rejected at ``threshold``: confidence below it; a threshold of 1 rejects all of
    them (a float probability of exactly 1.0 is rounding, not certainty), 0 none."""
    confidence = np.asarray(confidence)
    if threshold >= 1.0:
        return np.ones(len(confidence), bool)
    return confidence < threshold


def coverage_precision(confidence, correct) -> dict:
    """The coverage / precision curve: for each distinct confidence t (descending), the share of
    images with confidence >= t (coverage) and the accuracy among them (precision)."""
    conf = np.asarray(confidence, np.float64)
    ok = np.asarray(correct, bool)
    if len(conf) == 0:
        return {"threshold": [], "coverage": [], "precision": []}
    order = np.argsort(-conf, kind="stable")
    c, k = conf[order], ok[order]
    cum = np.cumsum(k)
    n = np.arange(1, len(c) + 1)
    last = np.r_[c[1:] != c[:-1], True]  # ties accepted together
    return {"threshold": c[last].tolist(), "coverage": (n[last] / len(c)).tolist(),
            "precision": (cum[last] / n[last]).tolist()}


def threshold_for_precision(confidence, correct, target: float) -> dict:
    """The lowest threshold whose accepted images reach ``target`` precision (largest coverage).

    Returns ``threshold``, ``coverage``, ``precision`` and ``met``; when no threshold reaches the
    target, the one with the highest precision (then the largest coverage), with ``met`` false.
    """
    if not 0.0 < target <= 1.0:
        raise SemgenError(f"--target-precision must be in (0, 1], got {target}")
    cur = coverage_precision(confidence, correct)
    if not cur["threshold"]:
        raise SemgenError("no validation predictions to choose a threshold on")
    t, cov, prec = map(np.asarray, (cur["threshold"], cur["coverage"], cur["precision"]))
    ok = np.nonzero(prec >= target - 1e-12)[0]
    if len(ok):
        i = int(ok[-1])  # the last one meeting the target accepts the most images
        met = True
    else:
        best = prec.max()
        i = int(np.nonzero(prec >= best - 1e-12)[0][-1])
        met = False
    return {"threshold": float(t[i]), "coverage": float(cov[i]), "precision": float(prec[i]), "met": met,
            "target": float(target)}


def calibrate_run(out, val_probs: np.ndarray, val_y: np.ndarray, classes: list[str]) -> dict:
    """Fit the temperature on validation probabilities, write ``calibration.json`` and the
    validation coverage / precision plot; returns the record."""
    val_probs = np.asarray(val_probs, np.float64)
    val_y = np.asarray(val_y, np.int64)
    logits = np.log(np.clip(val_probs, 1e-30, None))
    t = fit_temperature(logits, val_y) if len(val_y) else 1.0
    cal = apply_temperature(val_probs, t) if len(val_y) else val_probs
    conf = cal.max(1) if len(val_y) else np.zeros(0)
    correct = (cal.argmax(1) == val_y) if len(val_y) else np.zeros(0, bool)
    rec = {
        "temperature": t, "fitted_on": "validation", "n": int(len(val_y)), "classes": list(classes),
        "nll_before": nll(logits, val_y, 1.0) if len(val_y) else None,
        "nll_after": nll(logits, val_y, t) if len(val_y) else None,
        "ece_before": expected_calibration_error(val_probs, val_y) if len(val_y) else None,
        "ece_after": expected_calibration_error(cal, val_y) if len(val_y) else None,
        "val_confidence": [round(float(c), 6) for c in conf], "val_correct": [bool(c) for c in correct],
    }
    out = Path(out)
    write_bytes_atomic(out / CALIBRATION_FILE, (json.dumps(rec, indent=1) + "\n").encode())
    if len(val_y):
        plot_coverage_precision({"validation (calibrated)": coverage_precision(conf, correct)},
                                out / "coverage_precision_val.png", title=f"validation, T = {t:.3f}")
    return rec


def read_calibration(run_dir) -> dict | None:
    """``calibration.json`` of a run (None for runs trained before calibration existed)."""
    p = Path(run_dir) / CALIBRATION_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        raise SemgenError(f"{p} is not valid JSON; retrain the run or delete the file") from None


def expected_calibration_error(probs, y, bins: int = 15) -> float:
    """ECE with equal-width confidence bins."""
    probs = np.asarray(probs)
    conf, pred = probs.max(1), probs.argmax(1)
    ok = pred == np.asarray(y)
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs(ok[m].mean() - conf[m].mean())
    return float(e)


def plot_coverage_precision(curves: dict, path, *, marks: dict | None = None, title: str = "") -> None:
    """Precision on the accepted images against coverage, one line per curve; ``marks``:
    ``{label: (coverage, precision)}`` points (the chosen threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.0), dpi=120)
    for label, c in curves.items():
        if c["coverage"]:
            ax.plot([0.0] + list(c["coverage"]), [c["precision"][0]] + list(c["precision"]), label=label,
                    drawstyle="steps-post")
    for label, (cov, prec) in (marks or {}).items():
        ax.plot([cov], [prec], "o", label=label)
    ax.set_xlabel("coverage (share of images accepted)")
    ax.set_ylabel("precision on the accepted images")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
