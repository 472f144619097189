"""The compiled loops behind :mod:`.metrics`: image statistics in one pass, without temporary arrays.

They replaced chains of NumPy / OpenCV calls whose cost was mostly the calls themselves and the
temporaries between them (issue 16: the curation analysis at 1,000 images/s on 2 cores needs
about 2 ms per 256 x 256 image, decoding included). Integer statistics are computed exactly in
integers (``int64``), so the variances and histograms do not depend on a summation order; float
features are summed in a fixed order.

Two entry points, :func:`image_stats` and :func:`spectral_peak`, each compiled with an explicit
signature and cached (:func:`semgen.jit.compiled`, which refuses other dtypes and layouts); the
loops they call are compiled into them. Loading a cached function costs about 50 ms of a worker's
start, so there are as few as the work needs. :mod:`.metrics` is the public, checked interface.

Examples
--------
>>> import numpy as np
>>> img = np.zeros((5, 5), np.uint8)
>>> img[2, 2] = 1
>>> st = image_stats(img, 4)
>>> st.lap_sum, st.lap_sumsq  # the 3 x 3 Laplacian: -4 at the dot, 1 at its 4 neighbours
(0, 20)
>>> st.pixels, st.grey_sum, st.grey_sumsq, st.p1, st.p99
(25, 1, 1, 0, 1)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import types

from ..jit import compiled, inner

_U8 = types.Array(types.uint8, 2, "C", readonly=True)
_I64_1 = types.Array(types.int64, 1, "C")
_F32_3 = types.Array(types.float32, 3, "C", readonly=True)
_F64_1 = types.Array(types.float64, 1, "C")


@inner
def _laplacian_moments(img):
    """Sum and sum of squares of the 3 x 3 Laplacian (``cv2.Laplacian(img, ksize=1)``, its
    default reflect-101 border) over every pixel, as exact integers."""
    h, w = img.shape
    s = 0
    s2 = 0
    for y in range(h):
        up = y - 1 if y > 0 else 1
        dn = y + 1 if y < h - 1 else h - 2
        for x in range(w):
            lf = x - 1 if x > 0 else 1
            rt = x + 1 if x < w - 1 else w - 2
            v = (np.int64(img[up, x]) + np.int64(img[dn, x]) + np.int64(img[y, lf]) + np.int64(img[y, rt])
                 - 4 * np.int64(img[y, x]))
            s += v
            s2 += v * v
    return s, s2


@inner
def _haar_hh_hist(img):
    """Histogram of ``|a - b - c + d|`` (twice the finest Haar diagonal coefficient's magnitude, an
    integer 0-510) over the image's 2 x 2 blocks; an odd last row or column is left out."""
    h, w = img.shape
    out = np.zeros(511, np.int64)
    for y in range(0, h - 1, 2):
        for x in range(0, w - 1, 2):
            v = (np.int64(img[y, x]) - np.int64(img[y, x + 1]) - np.int64(img[y + 1, x])
                 + np.int64(img[y + 1, x + 1]))
            out[abs(v)] += 1
    return out


@inner
def _hist_summary(hist):
    """From a 256-bin grey-level histogram: (pixels, sum, sum of squares, p1, p99, entropy in bits).

    The sums are exact integers. The percentiles are the first levels whose cumulative share
    reaches 0.01 and 0.99 (``np.searchsorted`` on the running share, as before).
    """
    n = 0
    s = 0
    s2 = 0
    for v in range(256):
        n += hist[v]
        s += v * hist[v]
        s2 += v * v * hist[v]
    p1 = -1
    p99 = -1
    cum = 0
    ent = 0.0
    for v in range(256):
        cum += hist[v]
        share = cum / n
        if p1 < 0 and share >= 0.01:
            p1 = v
        if p99 < 0 and share >= 0.99:
            p99 = v
        if hist[v] > 0:
            p = hist[v] / n
            ent -= p * math.log2(p)
    return n, s, s2, p1, p99, ent


@inner
def _glcm_counts(img, shift):
    """The co-occurrence histograms of :data:`.metrics.GLCM_OFFSETS` on the image of
    ``L = 256 >> shift`` levels (``img >> shift``), not yet symmetrised: ``out[k * L * L + a * L + b]``
    counts the pixel pairs of offset ``k`` whose first pixel has level ``a`` and second ``b``."""
    h, w = img.shape
    lv = 256 >> shift
    m = lv * lv
    out = np.zeros(4 * m, np.int64)
    for y in range(h - 1):
        r0 = img[y]
        r1 = img[y + 1]
        # the first and last columns have no (1, -1) or no (0, 1) / (1, 1) pair: the interior loop
        # below is then free of branches
        a = (np.int64(r0[0]) >> shift) * lv
        out[2 * m + a + (np.int64(r1[0]) >> shift)] += 1
        if w > 1:
            out[a + (np.int64(r0[1]) >> shift)] += 1
            out[m + a + (np.int64(r1[1]) >> shift)] += 1
            a = (np.int64(r0[w - 1]) >> shift) * lv
            out[2 * m + a + (np.int64(r1[w - 1]) >> shift)] += 1
            out[3 * m + a + (np.int64(r1[w - 2]) >> shift)] += 1
        for x in range(1, w - 1):
            a = (np.int64(r0[x]) >> shift) * lv
            out[a + (np.int64(r0[x + 1]) >> shift)] += 1                  # (0, 1)
            out[m + a + (np.int64(r1[x + 1]) >> shift)] += 1              # (1, 1)
            out[2 * m + a + (np.int64(r1[x]) >> shift)] += 1              # (1, 0)
            out[3 * m + a + (np.int64(r1[x - 1]) >> shift)] += 1          # (1, -1)
    r0 = img[h - 1]
    for x in range(w - 1):
        out[(np.int64(r0[x]) >> shift) * lv + (np.int64(r0[x + 1]) >> shift)] += 1
    return out


@inner
def _glcm_props(counts, levels):
    """Contrast, homogeneity, energy and correlation of each symmetrised, normalised co-occurrence
    histogram in ``counts`` (:func:`glcm_counts`'s layout), averaged over them."""
    m = levels * levels
    k = counts.shape[0] // m
    out = np.zeros(4, np.float64)
    for o in range(k):
        c = counts[o * m:(o + 1) * m]
        tot = 0
        for i in range(levels):
            for j in range(levels):
                tot += c[i * levels + j] + c[j * levels + i]
        if tot == 0:
            continue
        mu = 0.0
        for i in range(levels):
            for j in range(levels):
                mu += i * ((c[i * levels + j] + c[j * levels + i]) / tot)
        con = hom = asm = var = cov = 0.0
        for i in range(levels):
            for j in range(levels):
                p = (c[i * levels + j] + c[j * levels + i]) / tot
                d2 = (i - j) * (i - j)
                con += p * d2
                hom += p / (1.0 + d2)
                asm += p * p
                var += (i - mu) * (i - mu) * p
                cov += (i - mu) * (j - mu) * p
        out[0] += con
        out[1] += hom
        out[2] += math.sqrt(asm)
        out[3] += cov / var if var > 1e-12 else 1.0
    return out / k


@inner
def _strongest_bin(dft):
    """(non-DC power, row, column of the strongest bin) of an OpenCV 2-channel DFT, DC at [0, 0].

    The power is ``re^2 + im^2`` in float32; bins within 2 of DC (circularly: slow shading) count
    as zero, as does everything when the image is flat. The first strongest bin in row-major order
    wins, as ``np.argmax`` would pick.
    """
    h, w = dft.shape[0], dft.shape[1]
    total = 0.0
    best = np.float32(-1.0)
    by = 0
    bx = 0
    for y in range(h):
        fy = y if y <= h // 2 else y - h  # fftfreq's signed index (h // 2 is negative for even h: same square)
        for x in range(w):
            fx = x if x <= w // 2 else x - w
            if fy * fy + fx * fx <= 4:
                p = np.float32(0.0)
            else:
                p = dft[y, x, 0] * dft[y, x, 0] + dft[y, x, 1] * dft[y, x, 1]
            total += p
            if p > best:
                best, by, bx = p, y, x
    return total, by, bx


@inner
def _around(k, n, out):
    """The distinct indices among k - 1, k, k + 1 modulo n, into ``out``; returns how many."""
    m = 0
    for d in range(-1, 2):
        i = (k + d) % n
        new = True
        for j in range(m):
            new = new and out[j] != i
        if new:
            out[m] = i
            m += 1
    return m


@inner
def _peak_power(dft, ky, kx):
    """Power in the 3 x 3 bins around (``ky``, ``kx``), circularly, each bin once, bins near DC
    as zero (as :func:`_strongest_bin` counts them)."""
    h, w = dft.shape[0], dft.shape[1]
    ys = np.empty(3, np.int64)
    xs = np.empty(3, np.int64)
    ny = _around(ky, h, ys)
    nx = _around(kx, w, xs)
    s = 0.0
    for a in range(ny):
        y = ys[a]
        fy = y if y <= h // 2 else y - h
        for b in range(nx):
            x = xs[b]
            fx = x if x <= w // 2 else x - w
            if fy * fy + fx * fx > 4:
                s += dft[y, x, 0] * dft[y, x, 0] + dft[y, x, 1] * dft[y, x, 1]
    return s


@inner
def _grey_hist(img):
    """256-bin histogram of the grey levels, exact int64 counts."""
    h, w = img.shape
    out = np.zeros(256, np.int64)
    for y in range(h):
        for x in range(w):
            out[img[y, x]] += 1
    return out


class ImageStats(NamedTuple):
    """What :func:`image_stats` measures: every integer statistic :mod:`.metrics` needs, in one call."""

    pixels: int              #: number of pixels
    grey_sum: int            #: sum of the grey levels
    grey_sumsq: int          #: sum of their squares
    p1: int                  #: first grey level whose cumulative share reaches 0.01
    p99: int                 #: ... and 0.99
    clipped: int             #: pixels at 0 or 255
    entropy: float           #: Shannon entropy of the grey-level histogram, bits
    lap_sum: int             #: sum of the 3 x 3 Laplacian (reflect-101 border, OpenCV's default)
    lap_sumsq: int           #: sum of its squares
    hh_hist: np.ndarray      #: int64[511], histogram of |a - b - c + d| over the 2 x 2 blocks
    glcm: np.ndarray         #: float64[4], contrast, homogeneity, energy, correlation (offsets averaged)


_STATS = types.Tuple((types.int64, types.int64, types.int64, types.int64, types.int64, types.int64, types.float64,
                      types.int64, types.int64, _I64_1, _F64_1))


@compiled(_STATS(_U8, types.int64))
def _image_stats(img, shift):
    hist = _grey_hist(img)
    n, s, s2, p1, p99, ent = _hist_summary(hist)
    ls, ls2 = _laplacian_moments(img)
    hh = _haar_hh_hist(img)
    glcm = _glcm_props(_glcm_counts(img, shift), 256 >> shift)
    return n, s, s2, p1, p99, hist[0] + hist[255], ent, ls, ls2, hh, glcm


def image_stats(img: np.ndarray, shift: int) -> ImageStats:
    """Grey-level, Laplacian, Haar and co-occurrence statistics of a C-contiguous 2-D uint8 image.

    ``shift`` quantises the image to ``256 >> shift`` levels for the co-occurrence matrices
    (4: 16 levels). At least 2 x 2 pixels.
    """
    return ImageStats(*_image_stats(img, shift))


@compiled(types.Tuple((types.float64, types.int64, types.int64, types.float64))(_F32_3))
def spectral_peak(dft):
    """(non-DC power, row, column, peak power) of the strongest bin of an OpenCV 2-channel DFT.

    The power is ``re^2 + im^2`` in float32; bins within 2 of DC (circularly: slow shading) count
    as zero. The first strongest bin in row-major order wins, as ``np.argmax`` would pick. The
    peak power is that of the bin's 3 x 3 neighbourhood and of its conjugate twin's (each bin of a
    neighbourhood once, circularly), the twin left out where it is the bin itself.
    """
    h, w = dft.shape[0], dft.shape[1]
    total, ky, kx = _strongest_bin(dft)
    peak = _peak_power(dft, ky, kx)
    ty, tx = (-ky) % h, (-kx) % w
    if ty != ky or tx != kx:
        peak += _peak_power(dft, ty, tx)
    return total, ky, kx, peak
