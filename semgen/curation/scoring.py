"""Accept or reject one image from its metrics: generic sanity rules, bands, class typicality.

Three layers, each adding reasons:

1. **Sanity** (always): ``blank``, ``too_dark``, ``too_bright``, ``saturated``, ``low_contrast``,
   ``too_blurry``, ``too_noisy``. Thresholds in :data:`SANITY_DEFAULTS` were set so that none of
   the 240 real ``train`` images trips them (their smallest noise-corrected sharpness is 25.6).
2. **Bands** from a config file: ``{class or "*": {metric: [lo, hi]}}``; outside -> ``atypical_for_class:<metric>``.
3. **Reference** (``--reference DIR``): per class, the median and MAD-based scale of each metric
   (log-scaled where it spans decades) over the reference images. An image whose robust z-score
   exceeds ``z_max`` on a metric gets ``atypical_for_class:<metric>``. Its *typicality* score is
   ``exp(-d^2 / 8)`` with ``d`` the RMS of its (clipped) z-scores: 1 at the class median, 0.61 at
   two robust sigmas.

Without a reference the score is a generic quality score in (0, 1] from SNR, contrast and sharpness.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import SemgenError
from ..taxonomy import CLASSES, canonical
from .metrics import METRIC_NAMES

SANITY_DEFAULTS: dict[str, float] = {
    "min_std": 3.0,            # blank
    "min_mean": 25.0,          # too_dark
    "max_mean": 230.0,         # too_bright
    "max_clipped": 0.5,        # saturated
    "min_dynamic_range": 20.0,  # low_contrast
    "min_sharpness": 20.0,     # too_blurry (Laplacian variance minus its white-noise part)
    "min_snr_db": 0.0,         # too_noisy
}

#: Metrics that take part in the typicality score (orientation is arbitrary for most classes).
TYPICALITY_METRICS: tuple[str, ...] = tuple(m for m in METRIC_NAMES if m != "orientation_deg")
#: Metrics compared on a log scale (they span decades).
LOG_METRICS = frozenset({"sharpness", "noise_sigma", "glcm_contrast", "period_px"})
#: Smallest scale (in the metric's, possibly log, units) of a class band: many real classes have
#: no clipping at all (MAD 0), and 3 % clipped pixels must not then be "30 sigmas" away.
SCALE_FLOOR: dict[str, float] = {
    "mean": 4.0, "std": 3.0, "dynamic_range": 8.0, "clipped_frac": 0.03, "sharpness": 0.15,
    "noise_sigma": 0.3, "entropy": 0.1, "glcm_contrast": 0.1, "glcm_homogeneity": 0.02,
    "glcm_energy": 0.02, "glcm_correlation": 0.05, "edge_density": 0.01, "period_px": 0.1,
    "orientation_deg": 5.0, "periodicity": 0.03, "snr_db": 1.5,
}
#: Default robust z beyond which a metric is atypical for its class.
Z_MAX = 6.0
#: Robust z-scores are clipped here before the RMS, so one wild metric cannot dominate the score.
Z_CLIP = 6.0


def _t(metric: str, x):
    return np.log1p(np.maximum(x, 0.0)) if metric in LOG_METRICS else x


def detail_sharpness(m: dict) -> float:
    """Laplacian variance minus what white noise of the measured sigma adds (20 sigma^2 for the 3x3
    kernel), so that noise does not pass for detail: a blurred image with added noise is still blurry."""
    return max(m["sharpness"] - 20.0 * m["noise_sigma"] ** 2, 0.0)


def sanity_reasons(m: dict, rules: dict | None = None) -> list[str]:
    """Reasons from the generic rules (empty list = passes)."""
    r = {**SANITY_DEFAULTS, **(rules or {})}
    out = []
    if m["std"] < r["min_std"]:
        out.append("blank")
    if m["mean"] < r["min_mean"]:
        out.append("too_dark")
    if m["mean"] > r["max_mean"]:
        out.append("too_bright")
    if m["clipped_frac"] > r["max_clipped"]:
        out.append("saturated")
    if m["dynamic_range"] < r["min_dynamic_range"] and "blank" not in out:
        out.append("low_contrast")
    # with strong noise the Laplacian cannot measure blur (20 sigma^2 swamps the detail): left to
    # too_noisy and the reference bands
    judgeable = 20.0 * m["noise_sigma"] ** 2 < 10.0 * r["min_sharpness"]
    if judgeable and detail_sharpness(m) < r["min_sharpness"] and "blank" not in out:
        out.append("too_blurry")
    if m["snr_db"] < r["min_snr_db"] and "blank" not in out:
        out.append("too_noisy")
    return out


def generic_score(m: dict) -> float:
    """A quality score in (0, 1] for use without a reference: higher = more SNR, contrast, sharpness."""
    snr = 1.0 / (1.0 + math.exp(-(m["snr_db"] - 15.0) / 5.0))
    contrast = min(m["dynamic_range"], 200.0) / 200.0
    sharp = 1.0 / (1.0 + math.exp(-(math.log10(max(m["sharpness"], 1e-3)) - 2.0) * 2.0))
    return round(float((snr * max(contrast, 1e-3) * sharp) ** (1 / 3)), 6)


class ReferenceModel:
    """Per-class robust location and scale of each metric, learned from reference records.

    Parameters
    ----------
    stats : {class: {metric: [median, scale, n]}}; class ``"*"`` pools all classes and stands in
        for classes the reference lacks.
    """

    def __init__(self, stats: dict):
        self.stats = stats

    @classmethod
    def fit(cls, records: list[dict], min_per_class: int = 5) -> "ReferenceModel":
        """Fit from records that carry ``metrics`` and ``label``."""
        if not records:
            raise SemgenError("the reference holds no readable images")
        by_cls: dict[str, list[dict]] = {}
        for r in records:
            by_cls.setdefault(r["label"], []).append(r["metrics"])
        by_cls["*"] = [r["metrics"] for r in records]
        pooled_scale = {}
        stats: dict = {}
        for label in ["*"] + sorted(k for k in by_cls if k != "*"):
            ms = by_cls[label]
            if label != "*" and len(ms) < min_per_class:
                continue
            st = {}
            for k in TYPICALITY_METRICS:
                v = _t(k, np.array([m[k] for m in ms], np.float64))
                med = float(np.median(v))
                scale = 1.4826 * float(np.median(np.abs(v - med)))
                if label == "*":
                    pooled_scale[k] = max(scale, SCALE_FLOOR[k])
                # a small class can have a zero MAD: never narrower than 1/4 of the pooled scale
                scale = max(scale, 0.25 * pooled_scale[k], SCALE_FLOOR[k])
                st[k] = [round(med, 6), round(scale, 6), len(ms)]
            stats[label] = st
        return cls(stats)

    def for_class(self, label: str) -> tuple[str, dict]:
        return (label, self.stats[label]) if label in self.stats else ("*", self.stats["*"])

    def zscores(self, label: str, m: dict) -> dict[str, float]:
        _, st = self.for_class(label)
        return {k: (float(_t(k, m[k])) - st[k][0]) / st[k][1] for k in TYPICALITY_METRICS}

    def score(self, label: str, m: dict, z_max: float = Z_MAX) -> tuple[float, list[str], dict]:
        """(typicality in (0, 1], reasons, z-scores) of one image."""
        z = self.zscores(label, m)
        zc = np.clip(np.array(list(z.values())), -Z_CLIP, Z_CLIP)
        d2 = float((zc ** 2).mean())
        reasons = [f"atypical_for_class:{k}" for k, v in z.items() if abs(v) > z_max]
        return round(math.exp(-d2 / 8.0), 6), reasons, {k: round(v, 3) for k, v in z.items()}

    def to_json(self) -> dict:
        return self.stats


def load_config(path) -> dict:
    """Read a curation config (YAML or JSON): ``sanity``, ``z_max``, ``bands``.

    ``bands`` maps a class (or alias, or ``"*"``) to ``{metric: [lo, hi]}``; ``null`` leaves a
    side open. Unknown keys, classes and metrics are errors naming what is valid.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SemgenError(f"cannot read config {p}: {e.strerror or e}") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            cfg = yaml.safe_load(text) or {}
        else:
            cfg = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is a config error
        raise SemgenError(f"config {p} does not parse: {e}") from None
    if not isinstance(cfg, dict):
        raise SemgenError(f"config {p} must be a mapping")
    unknown = set(cfg) - {"sanity", "z_max", "bands"}
    if unknown:
        raise SemgenError(f"config {p}: unknown keys {sorted(unknown)}; valid: sanity, z_max, bands")
    bad = set(cfg.get("sanity") or {}) - set(SANITY_DEFAULTS)
    if bad:
        raise SemgenError(f"config {p}: unknown sanity rules {sorted(bad)}; valid: {', '.join(SANITY_DEFAULTS)}")
    bands = {}
    for label, spec in (cfg.get("bands") or {}).items():
        key = "*" if label == "*" else canonical(label)
        if not isinstance(spec, dict):
            raise SemgenError(f"config {p}: bands.{label} must map metrics to [lo, hi]")
        for metric, lohi in spec.items():
            if metric not in METRIC_NAMES:
                raise SemgenError(f"config {p}: unknown metric {metric!r}; valid: {', '.join(METRIC_NAMES)}")
            if not (isinstance(lohi, (list, tuple)) and len(lohi) == 2):
                raise SemgenError(f"config {p}: bands.{label}.{metric} must be [lo, hi]")
        bands[key] = {k: [None if v is None else float(v) for v in lohi] for k, lohi in spec.items()}
    return {"sanity": dict(cfg.get("sanity") or {}), "z_max": float(cfg.get("z_max", Z_MAX)), "bands": bands}


def band_reasons(label: str, m: dict, bands: dict) -> list[str]:
    out = []
    for key in ("*", label):
        for metric, (lo, hi) in (bands.get(key) or {}).items():
            v = m[metric]
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                r = f"atypical_for_class:{metric}"
                if r not in out:
                    out.append(r)
    return out


__all__ = ["SANITY_DEFAULTS", "TYPICALITY_METRICS", "ReferenceModel", "sanity_reasons", "generic_score",
           "load_config", "band_reasons", "CLASSES"]
