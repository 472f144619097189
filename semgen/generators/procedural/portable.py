"""Filters and functions whose float32 result is the same on every CPU, for the generators.

The generators promise the same bytes for a seed on any machine. OpenCV's float filters
(``GaussianBlur``, ``sepFilter2D``, ``filter2D``, ``resize``, ``remap``, ``warpAffine``) and NumPy's
float32 ``exp``, ``sin``, ``cos``, ``tanh``, ... break it: each picks a SIMD code path for the CPU it
runs on, and the paths round differently (fused multiply-adds, other polynomial approximations).
``bench/bench_determinism.py --cpus avx2 x86-64-v2`` measured it: 18 % of images changed bytes
between an AVX2 machine and an SSE4.2 one, half from OpenCV, half from NumPy.

Here instead:

- the **filters** are compiled loops (numba, :mod:`semgen.jit`) of float32 ``+`` and ``*`` in a
  fixed order: LLVM vectorises them across pixels, but each pixel's sum runs tap by tap as written,
  with no reordering or fused multiply-add, whatever the vector width;
- the **transcendental functions** run in float64 and round to float32: two machines' float64
  results differ by an ulp or so at most, and that reaches the float32 result only when it falls
  on a rounding boundary (about once in 10^8 values).

The filters follow OpenCV's conventions (kernel sizes, border modes, pixel centres), so a call
replaces its OpenCV counterpart one for one; the bytes differ from OpenCV's by float32 rounding.

Examples
--------
>>> import numpy as np
>>> img = np.zeros((15, 15), np.float32); img[7, 7] = 1.0
>>> out = gaussian_blur(img, 1.0)
>>> out.dtype, round(float(out.sum()), 4), bool(out[7, 7] == out.max())
(dtype('float32'), 1.0, True)
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from numba import types

from ...jit import compiled
from .kernels import fold, pad_border

_IMG = types.Array(types.float32, 2, "C")
_MAP = types.Array(types.float32, 2, "C", readonly=True)
_KERN = types.Array(types.float32, 1, "C", readonly=True)
_ROW = types.Array(types.float32, 1, "C")
_U8 = types.Array(types.uint8, 2, "C")
_U16 = types.Array(types.uint16, 2, "C")

#: border modes: how a filter reads outside the image (OpenCV's names and values)
REFLECT = cv2.BORDER_REFLECT          # cba|abc
REFLECT_101 = cv2.BORDER_REFLECT_101  # dcb|abcd, OpenCV's default
REPLICATE = cv2.BORDER_REPLICATE      # aaa|abc
CONSTANT = cv2.BORDER_CONSTANT        # 000|abc
_BORDERS = {REFLECT: 0, REFLECT_101: 1, REPLICATE: 2, CONSTANT: 3}


def _border(border: int, allowed: tuple = (REFLECT, REFLECT_101)) -> int:
    if border not in allowed:
        names = {REFLECT: "REFLECT", REFLECT_101: "REFLECT_101", REPLICATE: "REPLICATE", CONSTANT: "CONSTANT"}
        raise ValueError(f"border {border} not supported here; use one of "
                         + ", ".join(f"cv2.BORDER_{names[b]}" for b in allowed))
    return _BORDERS[border]


@compiled(types.intp(types.intp, types.intp, types.intp))
def _index(i, n, mode):
    """Index ``i`` into ``0..n-1`` by border ``mode`` (:data:`_BORDERS`); -1 for a constant border."""
    if 0 <= i < n:
        return i
    if mode == 0 or mode == 1:
        return fold(i, n, mode == 0)
    if mode == 2:
        return min(max(i, 0), n - 1)
    return -1


@compiled(_IMG(_IMG, _KERN, _KERN, types.boolean, types.boolean, types.boolean))
def _sep_filter(img, kx, ky, repeat_edge, sym_x, sym_y):
    h, w = img.shape
    rx, ry = (kx.shape[0] - 1) // 2, (ky.shape[0] - 1) // 2
    rows = np.empty((h, w), np.float32)
    pad = np.empty(w + 2 * rx, np.float32)
    for y in range(h):
        src, acc = img[y], rows[y]
        pad[rx:rx + w] = src
        pad_border(pad, rx, repeat_edge)
        # tap by tap over the whole row: each pixel's sum runs in the order written, and the loop
        # over pixels vectorises. A symmetric kernel (k[t] == k[-1 - t]) adds the two pixels of a
        # tap pair first: half the multiplies, as OpenCV does.
        if sym_x:
            k0, p = kx[rx], pad[rx:rx + w]
            for x in range(w):
                acc[x] = k0 * p[x]
            for t in range(rx):
                k, p, q = kx[t], pad[t:t + w], pad[2 * rx - t:2 * rx - t + w]
                for x in range(w):
                    acc[x] += k * (p[x] + q[x])
        else:
            k0 = kx[0]
            for x in range(w):
                acc[x] = k0 * pad[x]
            for t in range(1, kx.shape[0]):
                k, p = kx[t], pad[t:t + w]
                for x in range(w):
                    acc[x] += k * p[x]
    out = np.empty((h, w), np.float32)
    for y in range(h):
        acc = out[y]
        if sym_y:
            r, k0 = rows[y], ky[ry]
            for x in range(w):
                acc[x] = k0 * r[x]
            for t in range(ry):
                r, q, k = rows[fold(y - ry + t, h, repeat_edge)], rows[fold(y + ry - t, h, repeat_edge)], ky[t]
                for x in range(w):
                    acc[x] += k * (r[x] + q[x])
        else:
            r, k0 = rows[fold(y - ry, h, repeat_edge)], ky[0]
            for x in range(w):
                acc[x] = k0 * r[x]
            for t in range(1, ky.shape[0]):
                r, k = rows[fold(y - ry + t, h, repeat_edge)], ky[t]
                for x in range(w):
                    acc[x] += k * r[x]
    return out


def sep_filter(img: np.ndarray, kx: np.ndarray, ky: np.ndarray, border: int = REFLECT_101) -> np.ndarray:
    """Separable correlation: the rows by ``kx``, then the columns by ``ky`` (``cv2.sepFilter2D``).

    Parameters
    ----------
    img : ndarray (H, W), float32
    kx, ky : ndarray (odd length,), float32; the centre tap is the middle one
    border : ``cv2.BORDER_REFLECT`` or ``cv2.BORDER_REFLECT_101`` (default)

    Returns
    -------
    ndarray (H, W), float32, a new array

    Examples
    --------
    >>> img = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> sep_filter(img, np.float32([0, 1, 0]), np.float32([0, 1, 0])).tolist() == img.tolist()
    True
    """
    kx, ky = (np.ascontiguousarray(k, np.float32).ravel() for k in (kx, ky))
    if len(kx) % 2 == 0 or len(ky) % 2 == 0:
        raise ValueError(f"kernel lengths must be odd, got {len(kx)} and {len(ky)}")
    sym_x, sym_y = bool(np.array_equal(kx, kx[::-1])), bool(np.array_equal(ky, ky[::-1]))
    return _sep_filter(np.ascontiguousarray(img, np.float32), kx, ky, _border(border) == 0, sym_x, sym_y)


@compiled(_IMG(_IMG, types.Array(types.float32, 2, "C", readonly=True), types.boolean))
def _filter2d_sym(img, k, repeat_edge):
    h, w = img.shape
    kh, kw = k.shape
    ry, rx = (kh - 1) // 2, (kw - 1) // 2
    pad = np.empty((h + 2 * ry, w + 2 * rx), np.float32)
    for y in range(h + 2 * ry):
        pad[y, rx:rx + w] = img[fold(y - ry, h, repeat_edge)]
        pad_border(pad[y], rx, repeat_edge)
    out = np.empty((h, w), np.float32)
    half = (kh * kw) // 2  # the taps before the centre, in row-major order; each has its mirror after it
    for y in range(h):
        acc = out[y]
        c, p = k[ry, rx], pad[y + ry, rx:rx + w]
        for x in range(w):
            acc[x] = c * p[x]
        for t in range(half):
            i, j = t // kw, t % kw
            kk = k[i, j]
            p, q = pad[y + i, j:j + w], pad[y + kh - 1 - i, kw - 1 - j:kw - 1 - j + w]
            for x in range(w):
                acc[x] += kk * (p[x] + q[x])
    return out


def filter2d_symmetric(img: np.ndarray, k: np.ndarray, border: int = REFLECT_101) -> np.ndarray:
    """2-D correlation with a point-symmetric kernel (``k[i, j] == k[-1 - i, -1 - j]``, as any
    centred Gaussian, astigmatic or not): ``cv2.filter2D`` the same on every CPU. Each tap pair
    adds its two pixels first, then multiplies: half the multiplies, in a fixed order.

    Parameters
    ----------
    img : ndarray (H, W), float32
    k : ndarray (kh, kw), odd sizes, point-symmetric
    border : ``cv2.BORDER_REFLECT`` or ``cv2.BORDER_REFLECT_101`` (default)

    Examples
    --------
    >>> img = np.arange(20, dtype=np.float32).reshape(4, 5)
    >>> k = np.float32([[0, 0, 0], [0.25, 0.5, 0.25], [0, 0, 0]])
    >>> bool(np.allclose(filter2d_symmetric(img, k), sep_filter(img, k[1], np.float32([0, 1, 0]))))
    True
    """
    k = np.ascontiguousarray(k, np.float32)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"the kernel must be 2-D with odd sizes, got {k.shape}")
    if not np.array_equal(k, k[::-1, ::-1]):
        raise ValueError("the kernel must be point-symmetric (k[i, j] == k[-1 - i, -1 - j])")
    return _filter2d_sym(np.ascontiguousarray(img, np.float32), k, _border(border) == 0)


@functools.lru_cache(maxsize=256)
def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of ``sigma`` pixels, float32, as OpenCV sizes it for float
    images: ``2 * round(4 sigma) + 1`` taps. Computed in float64, then rounded (see the module
    docstring). Read-only (cached).

    Examples
    --------
    >>> k = gaussian_kernel(1.0)
    >>> len(k), round(float(k.sum()), 6)
    (9, 1.0)
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    n = int(round(sigma * 8.0 + 1.0)) | 1
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    k = (k / k.sum()).astype(np.float32)
    k = (k + k[::-1]) * np.float32(0.5)  # exactly symmetric (the pair-first sums rely on it)
    k.flags.writeable = False
    return k


def gaussian_blur(img: np.ndarray, sigma: float, sigma_y: float | None = None,
                  border: int = REFLECT_101) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels (``sigma_y`` down the columns if given): what
    ``cv2.GaussianBlur(img, (0, 0), sigma, sigmaY=sigma_y, borderType=border)`` does, the same on
    every CPU.

    Parameters
    ----------
    img : ndarray (H, W), float32 (other dtypes are converted)
    sigma, sigma_y : float > 0, pixels
    border : ``cv2.BORDER_REFLECT`` or ``cv2.BORDER_REFLECT_101`` (default, as OpenCV)

    Returns
    -------
    ndarray (H, W), float32

    Examples
    --------
    >>> flat = np.full((8, 8), 0.25, np.float32)
    >>> bool(np.allclose(gaussian_blur(flat, 2.0), 0.25))
    True
    """
    sy = sigma if sigma_y is None else sigma_y
    # straight to the compiled filter: the kernels are odd, symmetric float32 (about 10 us saved
    # of a 50-100 us blur)
    return _sep_filter(np.ascontiguousarray(img, np.float32), gaussian_kernel(float(sigma)),
                       gaussian_kernel(float(sy)), _border(border) == 0, True, True)


@compiled([_IMG(_IMG, _MAP, _MAP, types.boolean, types.intp),
           _U8(_U8, _MAP, _MAP, types.boolean, types.intp),
           _U16(_U16, _MAP, _MAP, types.boolean, types.intp)])
def _remap(img, mx, my, linear, mode):
    h, w = img.shape
    oh, ow = mx.shape
    out = np.zeros((oh, ow), img.dtype)
    one, half, zero = np.float32(1.0), np.float32(0.5), np.float32(0.0)
    for y in range(oh):
        for x in range(ow):
            sx, sy = mx[y, x], my[y, x]
            if not linear:
                i, j = int(np.floor(sy + half)), int(np.floor(sx + half))
                if not (0 <= i < h and 0 <= j < w):
                    i, j = _index(i, h, mode), _index(j, w, mode)
                if i >= 0 and j >= 0:
                    out[y, x] = img[i, j]
                continue
            fx0, fy0 = np.floor(sx), np.floor(sy)
            fx, fy = sx - fx0, sy - fy0
            x0, y0 = int(fx0), int(fy0)
            gx = one - fx
            if 0 <= x0 and x0 + 1 < w and 0 <= y0 and y0 + 1 < h:  # inside: no border to read
                r0, r1 = img[y0], img[y0 + 1]
                out[y, x] = (one - fy) * (gx * r0[x0] + fx * r0[x0 + 1]) + fy * (gx * r1[x0] + fx * r1[x0 + 1])
                continue
            i0, i1 = _index(y0, h, mode), _index(y0 + 1, h, mode)
            j0, j1 = _index(x0, w, mode), _index(x0 + 1, w, mode)
            # (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d), in float32 and in
            # that order; a pixel outside a constant border adds nothing
            top, bot = zero, zero
            if i0 >= 0:
                if j0 >= 0:
                    top = gx * img[i0, j0]
                if j1 >= 0:
                    top = top + fx * img[i0, j1]
            if i1 >= 0:
                if j0 >= 0:
                    bot = gx * img[i1, j0]
                if j1 >= 0:
                    bot = bot + fx * img[i1, j1]
            out[y, x] = (one - fy) * top + fy * bot
    return out


def remap(img: np.ndarray, mx: np.ndarray, my: np.ndarray, linear: bool = True,
          border: int = REFLECT_101) -> np.ndarray:
    """``out[y, x] = img[my[y, x], mx[y, x]]``, bilinear (``linear``) or nearest, as ``cv2.remap``.

    Parameters
    ----------
    img : ndarray (H, W), float32 (linear or nearest), or uint8 or uint16 (labels: nearest only)
    mx, my : ndarray (H', W'), float32 source coordinates in pixels (pixel centres at integers)
    linear : bilinear interpolation, else the nearest pixel
    border : ``cv2.BORDER_REFLECT``, ``REFLECT_101`` (default), ``REPLICATE`` or ``CONSTANT`` (0)

    Returns
    -------
    ndarray (H', W'), the dtype of ``img``

    Examples
    --------
    >>> img = np.float32([[0, 1], [2, 3]])
    >>> remap(img, np.float32([[0.5]]), np.float32([[0.5]])).tolist()
    [[1.5]]
    """
    mode = _border(border, (REFLECT, REFLECT_101, REPLICATE, CONSTANT))
    mx, my = np.ascontiguousarray(mx, np.float32), np.ascontiguousarray(my, np.float32)
    if mx.shape != my.shape or mx.ndim != 2:
        raise ValueError(f"mx and my must be 2-D of one shape, got {mx.shape} and {my.shape}")
    img = np.ascontiguousarray(img)
    labels = img.dtype in (np.uint8, np.uint16)
    if labels and linear:
        raise ValueError(f"linear remap of {img.dtype} is not supported (labels and masks take the nearest pixel)")
    if not labels:
        img = img.astype(np.float32, copy=False)
    return _remap(img, mx, my, bool(linear), mode)


def shift(img: np.ndarray, dx: float, dy: float, border: int = CONSTANT) -> np.ndarray:
    """``img`` moved by (``dx``, ``dy``) pixels, bilinear (``cv2.warpAffine`` with a translation).

    Examples
    --------
    >>> shift(np.float32([[1, 0, 0]]), 1.0, 0.0).tolist()
    [[0.0, 1.0, 0.0]]
    """
    h, w = img.shape
    mx = np.broadcast_to(np.arange(w, dtype=np.float32) - np.float32(dx), (h, w))
    my = np.broadcast_to((np.arange(h, dtype=np.float32) - np.float32(dy))[:, None], (h, w))
    return remap(img, mx, my, True, border)


def upsample(img: np.ndarray, f: int) -> np.ndarray:
    """``img`` enlarged ``f`` times by bilinear interpolation, pixel centres as ``cv2.resize``
    (``INTER_LINEAR``) places them, the edges repeated.

    Examples
    --------
    >>> upsample(np.float32([[0, 4]]), 2).tolist()
    [[0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 3.0, 4.0]]
    """
    h, w = img.shape
    jx, fx = _linear_taps(w, int(f))
    jy, fy = _linear_taps(h, int(f))
    return _upsample(np.ascontiguousarray(img, np.float32), jx, fx, jy, fy)


def _linear_taps(n: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``n * f`` output pixels: the left source pixel (the right one is the next, edges
    repeated) and the weight of the right one, as :func:`remap` would take them."""
    # source coordinate of output pixel i: (i + 0.5) / f - 0.5, in float64, then rounded once
    c = ((np.arange(n * f, dtype=np.float64) + 0.5) / f - 0.5).astype(np.float32)
    j = np.floor(c)
    return j.astype(np.intp), (c - j).astype(np.float32)


@compiled(_IMG(_IMG, types.Array(types.intp, 1, "C"), _ROW, types.Array(types.intp, 1, "C"), _ROW))
def _upsample(img, jx, fx, jy, fy):
    """:func:`remap`'s bilinear arithmetic on a separable grid: each source row interpolated along x
    once, then output rows from pairs of those (the same float32 operations in the same order)."""
    h, w = img.shape
    ow, oh = jx.shape[0], jy.shape[0]
    one = np.float32(1.0)
    rows = np.empty((h, ow), np.float32)
    for i in range(h):
        src, dst = img[i], rows[i]
        for x in range(ow):
            j0 = min(max(jx[x], 0), w - 1)
            j1 = min(max(jx[x] + 1, 0), w - 1)
            dst[x] = (one - fx[x]) * src[j0] + fx[x] * src[j1]
    out = np.empty((oh, ow), np.float32)
    for y in range(oh):
        a = rows[min(max(jy[y], 0), h - 1)]
        b = rows[min(max(jy[y] + 1, 0), h - 1)]
        g, dst = fy[y], out[y]
        for x in range(ow):
            dst[x] = (one - g) * a[x] + g * b[x]
    return out


def _f64(fn):
    def wrapped(*args):
        r = fn(*(np.asarray(a, np.float64) for a in args))
        return r.astype(np.float32) if isinstance(r, np.ndarray) else np.float32(r)
    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = (f"``np.{fn.__name__}`` evaluated in float64 and rounded to float32: the same "
                       "float32 result on every CPU (see the module docstring).")
    return wrapped


exp, sin, cos, tanh, arctan2, power = (_f64(f) for f in (np.exp, np.sin, np.cos, np.tanh, np.arctan2, np.power))
