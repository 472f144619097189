"""Line-edge roughness: Palasantzas PSD, Thorsos synthesis, left/right correlation.

Edges are deviations ``d(y)`` (nm) of a line edge from its nominal position, sampled every
``dy`` nm along the line. Their power spectral density is the Palasantzas (K-correlation /
Matern) form used in the LER literature (Palasantzas 1993; Mack, "Generating random rough
edges, surfaces, and volumes", Appl. Opt. 52, 2013)::

    PSD(f) = 2 sqrt(pi) Gamma(alpha + 1/2) / Gamma(alpha) * sigma^2 xi / (1 + (2 pi f xi)^2)^(alpha + 1/2)

a two-sided PSD normalised so that its integral over all f is ``sigma^2``; ``xi`` is the
correlation length and ``alpha`` (0..1 for real edges, any > 0 here) the roughness exponent
(high-frequency slope ``-(2 alpha + 1)`` in log-log). Its autocorrelation is
``sigma^2 2^(1-alpha) / Gamma(alpha) (t/xi)^alpha K_alpha(t/xi)``.

Synthesis follows Thorsos (J. Acoust. Soc. Am. 83, 1988): complex Gaussian Fourier
coefficients with variance ``PSD(f_j) df`` and Hermitian symmetry, inverse FFT. The sequence is
periodic, so we synthesise a longer one (``oversample`` x) and crop, which keeps the low
frequencies and removes the wrap-around correlation. Fitting sigma, xi, alpha back from edges
(how the tests check this module) is measurement, not generation: ``bench/roughness_fit.py``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, kv


def palasantzas_psd(f: np.ndarray, sigma: float, xi: float, alpha: float) -> np.ndarray:
    """Two-sided Palasantzas PSD (nm^2 * nm) at spatial frequencies ``f`` (1/nm)."""
    f = np.asarray(f, dtype=np.float64)
    pref = 2.0 * math.sqrt(math.pi) * math.exp(gammaln(alpha + 0.5) - gammaln(alpha)) * sigma ** 2 * xi
    return pref / (1.0 + (2.0 * math.pi * f * xi) ** 2) ** (alpha + 0.5)


def palasantzas_acf(tau: np.ndarray, sigma: float, xi: float, alpha: float) -> np.ndarray:
    """Autocorrelation (nm^2) of the Palasantzas model at lags ``tau`` (nm)."""
    t = np.abs(np.asarray(tau, dtype=np.float64)) / xi
    out = np.full(t.shape, sigma ** 2, dtype=np.float64)
    nz = t > 1e-12
    out[nz] = sigma ** 2 * 2.0 ** (1.0 - alpha) / math.gamma(alpha) * t[nz] ** alpha * kv(alpha, t[nz])
    return out


def rough_edges(n_edges: int, n_points: int, dy: float, sigma: float, xi: float, alpha: float,
                rng: np.random.Generator, *, oversample: int = 2) -> np.ndarray:
    """Independent random edges with a Palasantzas PSD (Thorsos method).

    Parameters
    ----------
    n_edges, n_points : int
        Number of edges and samples per edge.
    dy : float
        Sample spacing along the edge (nm).
    sigma, xi, alpha : float
        RMS roughness (nm), correlation length (nm), roughness exponent.
    rng : numpy.random.Generator
    oversample : int
        Synthesise ``oversample * n_points`` samples and keep the first ``n_points``.

    Returns
    -------
    ndarray, float64, (n_edges, n_points)
        Edge deviations in nm.
    """
    n = max(8, int(oversample) * int(n_points))
    n += n % 2
    df = 1.0 / (n * dy)
    f = np.arange(n // 2 + 1) * df
    amp = np.sqrt(palasantzas_psd(f, sigma, xi, alpha) * df)
    z = rng.standard_normal((n_edges, n // 2 + 1)) + 1j * rng.standard_normal((n_edges, n // 2 + 1))
    z *= amp / math.sqrt(2.0)
    # the f = 0 and Nyquist terms are their own conjugates: real, full variance
    z[:, 0] = z[:, 0].real * math.sqrt(2.0)
    z[:, -1] = z[:, -1].real * math.sqrt(2.0)
    edges = np.fft.irfft(z, n=n, axis=1) * n
    return edges[:, :n_points]


def edge_pair(n_lines: int, n_points: int, dy: float, sigma: float, xi: float, alpha: float,
              correlation: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Left and right edges of ``n_lines`` lines with correlation ``correlation`` between them.

    ``correlation = 1``: the edges move together (the line wiggles, its width is constant: LER
    without LWR); ``0``: independent; ``-1``: they mirror each other (width varies most). Each
    edge keeps RMS ``sigma``; the line width roughness is ``sigma * sqrt(2 (1 - correlation))``.
    """
    e = rough_edges(2 * n_lines, n_points, dy, sigma, xi, alpha, rng)
    a, b = e[:n_lines], e[n_lines:]
    c = float(np.clip(correlation, -1.0, 1.0))
    return a, c * a + math.sqrt(max(0.0, 1.0 - c * c)) * b
