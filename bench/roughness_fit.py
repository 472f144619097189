"""Fit the Palasantzas PSD back to line edges: how the ``ler`` generator's roughness is checked.

Measurement, not generation (it left the package, issue 15): ``tests/test_procedural_physics.py``
fits edges made by :mod:`semgen.generators.procedural.roughness` and by the ``ler`` generator, and

    python bench/roughness_fit.py

prints the table of docs/procedural.md (requested vs fitted sigma, xi, alpha and the measured
left/right correlation, on the edge arrays of 8 ``ler`` scenes of 128 px per row).
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from scipy.optimize import least_squares

from semgen.generators.procedural.roughness import palasantzas_psd

#: (sigma nm, xi nm, alpha, lr_correlation) of the docs table and the test
CASES = ((2.0, 12.0, 0.7, 0.0), (1.5, 20.0, 0.5, 0.5), (2.5, 8.0, 0.9, -0.5))


def edge_psd(edges: np.ndarray, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Averaged two-sided periodogram of edges (mean removed, Hann window).

    Returns
    -------
    f : ndarray
        Frequencies (1/nm), ``0 < f <= Nyquist``.
    psd : ndarray
        PSD estimate at ``f`` (nm^3), same normalisation as :func:`palasantzas_psd`.
    """
    e = np.atleast_2d(np.asarray(edges, dtype=np.float64))
    e = e - e.mean(axis=1, keepdims=True)
    n = e.shape[1]
    w = np.hanning(n)
    spec = np.abs(np.fft.rfft(e * w, axis=1)) ** 2
    psd = spec.mean(axis=0) * dy / (w * w).sum()
    f = np.arange(n // 2 + 1) / (n * dy)
    return f[1:], psd[1:]


def fit_psd(edges: np.ndarray, dy: float, *, fmin_bins: int = 2) -> dict:
    """Fit sigma, xi, alpha of the Palasantzas PSD to edges.

    Least squares on log PSD (log-spaced frequency bins weigh the decades evenly), starting
    from the sample RMS and the 1/e point of the autocorrelation.

    Returns
    -------
    dict with ``sigma``, ``xi``, ``alpha`` (fit), ``sigma_rms`` (direct RMS of the edges) and
    ``correlation_length_acf`` (lag where the measured autocorrelation falls to 1/e).
    """
    e = np.atleast_2d(np.asarray(edges, dtype=np.float64))
    f, psd = edge_psd(e, dy)
    f, psd = f[fmin_bins - 1:], psd[fmin_bins - 1:]
    # average into log-spaced bins so that the many high-frequency points do not dominate
    nb = min(40, len(f))
    edges_f = np.geomspace(f[0], f[-1] * 1.0001, nb + 1)
    idx = np.clip(np.searchsorted(edges_f, f, side="right") - 1, 0, nb - 1)
    cnt = np.bincount(idx, minlength=nb)
    ok = cnt > 0
    fb = (np.bincount(idx, weights=np.log(f), minlength=nb)[ok] / cnt[ok])
    pb = (np.bincount(idx, weights=np.log(psd), minlength=nb)[ok] / cnt[ok])
    fb = np.exp(fb)
    # the mean of log(periodogram) of a chi^2_2 variable is biased by -gamma (Euler); undo it
    # where bins average few periodogram values over few edges... we average the log of the
    # edge-averaged periodogram, whose bias is small for many edges: correct it to first order
    m = e.shape[0]
    pb = pb + 1.0 / (2.0 * m)

    sig0 = float(e.std())
    acf_xi = acf_correlation_length(e, dy)

    def resid(x):
        s, xi_, a = np.exp(x)
        return np.log(palasantzas_psd(fb, s, xi_, a)) - pb

    x0 = np.log([max(sig0, 1e-6), max(acf_xi, dy), 0.5])
    r = least_squares(resid, x0, bounds=(np.log([1e-6, dy * 0.05, 0.05]), np.log([1e6, 1e7, 5.0])))
    s, xi_, a = np.exp(r.x)
    return {"sigma": float(s), "xi": float(xi_), "alpha": float(a), "sigma_rms": sig0,
            "correlation_length_acf": acf_xi}


def acf_correlation_length(edges: np.ndarray, dy: float) -> float:
    """Lag (nm) at which the edges' mean autocorrelation first falls below 1/e of its zero lag."""
    e = np.atleast_2d(np.asarray(edges, dtype=np.float64))
    e = e - e.mean(axis=1, keepdims=True)
    n = e.shape[1]
    spec = np.abs(np.fft.rfft(e, n=2 * n, axis=1)) ** 2
    acf = np.fft.irfft(spec, axis=1)[:, :n].mean(axis=0)
    acf /= np.arange(n, 0, -1)  # unbiased
    below = np.nonzero(acf < acf[0] / math.e)[0]
    if len(below) == 0:
        return float(n * dy)
    k = int(below[0])
    # linear interpolation between k-1 and k
    a0, a1 = acf[k - 1], acf[k]
    frac = (a0 - acf[0] / math.e) / max(a0 - a1, 1e-12)
    return float((k - 1 + frac) * dy)


def ler_edges(sigma: float, xi: float, alpha: float, rho: float, *, n_images: int = 8, size: int = 128,
              seed: int = 1000) -> tuple[np.ndarray, np.ndarray, float]:
    """Left and right edge arrays (nm) of ``n_images`` ``ler`` scenes, and their sample spacing (nm)."""
    from semgen.generators.procedural.registry import create_generator
    from semgen.seeding import rng_for

    gen = create_generator("ler")
    sets = dict(layout="lines", orientation="vertical", sigma_nm=sigma, xi_nm=xi, alpha=alpha, lr_correlation=rho,
                pitch_nm=40, periods=6, duty=0.5, cd_variation=0, placement_nm=0)
    lefts, rights = [], []
    for i in range(n_images):
        rng = rng_for(seed + i)
        p = gen.sample_params(rng, sets)
        scene = gen.build(p, rng, size)
        lefts.append(scene.edges["left_nm"])
        rights.append(scene.edges["right_nm"])
        dy = scene.pixel_nm
    return np.vstack(lefts), np.vstack(rights), float(dy)


def edge_correlation(left: np.ndarray, right: np.ndarray) -> float:
    """Pearson correlation of left and right edge deviations (each edge's mean removed)."""
    lc, rc = left - left.mean(1, keepdims=True), right - right.mean(1, keepdims=True)
    return float((lc * rc).sum() / math.sqrt((lc ** 2).sum() * (rc ** 2).sum()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="ler scenes per row (default 8)")
    ap.add_argument("--size", type=int, default=128, help="image size in px (default 128)")
    args = ap.parse_args(argv)
    print("| requested sigma, xi, alpha, lr_correlation | fitted sigma, xi, alpha | measured correlation |")
    print("|---|---|---|")
    for sigma, xi, alpha, rho in CASES:
        left, right, dy = ler_edges(sigma, xi, alpha, rho, n_images=args.images, size=args.size)
        fit = fit_psd(np.vstack([left, right]), dy)
        print(f"| {sigma} nm, {xi:g} nm, {alpha}, {rho} | {fit['sigma']:.2f} nm, {fit['xi']:.1f} nm, "
              f"{fit['alpha']:.2f} | {edge_correlation(left, right):.2f} |")
    print(f"({left.shape[0]} edge pairs of {left.shape[1]} samples at {dy:g} nm per row)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
