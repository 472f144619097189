"""Compiled one-pass kernels of the imaging model (numba), for :mod:`.imaging`.

Each NumPy step of the imaging chain was one or more full passes over the frame, with a float32
temporary each; at 256 x 256 the chain spent most of its ~2.6 ms on memory traffic and call
overhead, not arithmetic. These kernels do a step (or two that follow each other) in one pass.
Their loops run over 1-D slices from index 0 with no index folding inside (the border pixels are
done apart): LLVM vectorises such loops, and the same loop indexing the 2-D arrays ran up to 10x
slower.

Determinism: same inputs, same bytes, on every machine. The kernels use only float32 ``+ - * /``
and ``sqrt`` (correctly rounded IEEE operations), in the order written, with no fast-math: LLVM
may vectorise them but not reorder or fuse them (no FMA contraction), so the result does not
depend on the CPU's vector width (``tests/test_procedural_kernels.py`` compiles them for a plain
x86-64 CPU and compares). Constants are float32 (``_f``): a Python float would promote the
arithmetic to float64. The one sum that decides a value (the frame mean of :func:`scan_rows`)
runs in float64 in a fixed order. No transcendental function is evaluated inside a kernel;
callers pass tables and factors computed once per image.

Compiled code is cached next to this file (``cache=True``): the first process compiles (about 5 s),
later ones load it when they import this module (about 0.5 s with numba's own import).
"""

from __future__ import annotations

import numpy as np
from numba import types

from ...jit import compiled

_f = np.float32

# Explicit signatures (semgen.jit.compiled): float32 arrays only, C order; a float64 array is refused
# instead of compiling a float64 variant with other bytes.
_IMG = types.Array(types.float32, 2, "C")
_ROW = types.Array(types.float32, 1, "C")
_BASIS = types.Array(types.float32, 2, "C", readonly=True)
_F32 = types.float32


@compiled(types.intp(types.intp, types.intp, types.boolean))
def fold(i: int, n: int, repeat_edge: bool) -> int:
    """Index ``i`` folded into ``0..n-1``: ``cba|abc`` (OpenCV's BORDER_REFLECT) if ``repeat_edge``,
    else ``dcb|abcd`` (BORDER_REFLECT_101)."""
    if n == 1:
        return 0
    if repeat_edge:
        period = 2 * n
        i = i % period
        return i if i < n else period - 1 - i
    period = 2 * n - 2
    i = i % period
    return i if i < n else period - i


@compiled(types.void(_ROW, types.intp, types.boolean))
def pad_border(row, r, repeat_edge):
    """Fill the ``r`` cells at each end of ``row`` (a padded row, its pixels at ``r .. len - r``)
    by folding the pixels back (:func:`fold`), for a filter of radius ``r``."""
    w = row.shape[0] - 2 * r
    mid = row[r:r + w]
    for j in range(r):
        row[j] = mid[fold(j - r, w, repeat_edge)]
        row[r + w + j] = mid[fold(w + j, w, repeat_edge)]


@compiled(_F32(_ROW, _ROW, _ROW, types.intp, types.intp, types.intp, _F32, _F32), inline="always")
def _tilt(up, mid, dn, xm, x, xp, scale, asymmetry):
    """:func:`edge_tilt` at one pixel, from the rows above, at and below it and the columns to use."""
    one, two, eps = _f(1.0), _f(2.0), _f(1e-6)
    gx = ((up[xp] + two * mid[xp] + dn[xp]) - (up[xm] + two * mid[xm] + dn[xm])) * scale
    gy = ((dn[xm] + two * dn[x] + dn[xp]) - (up[xm] + two * up[x] + up[xp])) * scale
    t2 = gx * gx + gy * gy
    e = one - one / np.sqrt(t2 + one)
    if asymmetry != 0:
        e *= one - asymmetry * gx / (np.sqrt(t2) + eps)
    return e


@compiled(_IMG(_IMG, _F32, _F32))
def edge_tilt(height, scale, asymmetry):
    """``1 - cos(tilt)`` of a height map, optionally weighted towards +x-facing slopes.

    The slope is the 3 x 3 Sobel derivative (borders reflected, ``dcb|abcd``) times ``scale``
    (``1 / (8 * pixel_nm)``: nm of height per nm across). With ``asymmetry`` a, the value is
    multiplied by ``1 - a * gx / |g|`` (the cosine between the slope's downhill direction and +x).

    Parameters
    ----------
    height : ndarray, float32, (H, W)
    scale, asymmetry : float32

    Returns
    -------
    ndarray, float32, (H, W), values in [0, 1) (times up to ``1 + |a|`` with asymmetry)
    """
    h, w = height.shape
    out = np.empty((h, w), np.float32)
    for y in range(h):
        up, mid, dn = height[fold(y - 1, h, False)], height[y], height[fold(y + 1, h, False)]
        out[y, 0] = _tilt(up, mid, dn, fold(-1, w, False), 0, fold(1, w, False), scale, asymmetry)
        for x in range(1, w - 1):  # the interior, with no index folding: the loop LLVM vectorises
            out[y, x] = _tilt(up, mid, dn, x - 1, x, x + 1, scale, asymmetry)
        if w > 1:
            out[y, w - 1] = _tilt(up, mid, dn, w - 2, w - 1, fold(w, w, False), scale, asymmetry)
    return out


@compiled(types.void(_IMG, _F32, _IMG))
def add_scaled(y, a, e):
    """``y += a * e`` in place (float32)."""
    yf, ef = y.reshape(-1), e.reshape(-1)
    for i in range(yf.shape[0]):
        yf[i] += a * ef[i]


@compiled(types.Tuple((_IMG, types.float64))(_IMG, _ROW, _ROW))
def scan_rows(img, shift, row_gain):
    """Row ``i`` resampled at ``x + shift[i]`` (linear, borders reflected ``cba|abc``) and scaled by
    ``row_gain[i]``.

    Returns the new image and its mean (float64: each column summed down the rows, then the
    column sums from left to right; a fixed order).
    """
    h, w = img.shape
    out = np.empty((h, w), np.float32)
    one = _f(1.0)
    col = np.zeros(w, np.float64)  # column sums, each in row order
    for i in range(h):
        s = shift[i]
        k = int(np.floor(s))
        f = s - _f(k)
        keep, g = one - f, row_gain[i]
        row, dst = img[i], out[i]
        # the columns whose two source pixels lie inside the row: one plain loop over slices (LLVM
        # vectorises it; indexing the 2-D arrays inside the loop made it 10x slower); the few
        # others fold their indices back into the row
        x0 = min(max(-k, 0), w)
        x1 = max(min(w - 1 - k, w), x0)
        a, b, d = row[x0 + k:x1 + k], row[x0 + k + 1:x1 + k + 1], dst[x0:x1]
        for x in range(x1 - x0):
            d[x] = (a[x] * keep + b[x] * f) * g
        for x in range(x0):
            dst[x] = (row[fold(x + k, w, True)] * keep + row[fold(x + k + 1, w, True)] * f) * g
        for x in range(x1, w):
            dst[x] = (row[fold(x + k, w, True)] * keep + row[fold(x + k + 1, w, True)] * f) * g
        for x in range(w):
            col[x] += dst[x]
    total = 0.0
    for x in range(w):
        total += col[x]
    return out, total / (h * w)


@compiled(_IMG(_IMG, _F32, _F32, _F32))
def dark_tail_rows(img, mean, strength, decay):
    """Subtract ``strength`` times a causal exponential average of the signal above ``mean``.

    Along each row (the fast scan), ``t[x] = decay * t[x-1] + (1 - decay) * excess[x-1]`` with
    ``excess = max(img - mean, 0)``: the weights ``(1 - decay) decay^(k-1)`` of the pixels ``k``
    earlier sum to 1. Left of the frame the row continues as its first pixel, so
    ``t[0] = excess[0]``.
    """
    h, w = img.shape
    out = np.empty((h, w), np.float32)
    zero, one = _f(0.0), _f(1.0)
    keep = one - decay
    # eight rows side by side: each row's recursion is a chain of dependent steps, eight chains
    # keep the CPU busy (each row's arithmetic is the same as alone)
    t = np.empty(8, np.float32)
    for i0 in range(0, h, 8):
        m = min(8, h - i0)
        for j in range(m):
            t[j] = max(img[i0 + j, 0] - mean, zero)
        for x in range(w):
            for j in range(m):
                v = img[i0 + j, x]
                out[i0 + j, x] = v - strength * t[j]
                t[j] = decay * t[j] + keep * max(v - mean, zero)
    return out


@compiled(_IMG(_IMG, types.Array(types.uint16, 1, "C"), _ROW, _F32, _F32))
def shot_noise(img, u, kern, inv_dose, det_var):
    """``img + sqrt(max(img, 0) * inv_dose + det_var) * z``, z unit noise smeared along rows.

    ``u`` holds two 16-bit uniforms per pixel (``u[n]`` and ``u[n + H*W]`` for pixel n in raster
    order): ``z0 = (u1 + u2 - 65535) * sqrt(6) / 65536`` has mean 0 and variance 1 (triangular).
    ``z`` is ``z0`` convolved along the row with ``kern`` (odd length, unit energy, borders
    reflected as ``cba|abc``), summed tap by tap in order; ``kern = [1]`` leaves it as it is.
    """
    h, w = img.shape
    n = h * w
    r = kern.shape[0] // 2
    out = np.empty((h, w), np.float32)
    zp = np.empty(w + 2 * r, np.float32)
    z = np.empty(w, np.float32)
    zero = _f(0.0)
    c = _f(2.449489742783178 / 65536.0)
    for i in range(h):
        u1, u2, z0 = u[i * w:(i + 1) * w], u[n + i * w:n + (i + 1) * w], zp[r:r + w]
        for x in range(w):
            # exact in int32, so the same float32 as (float(u1) + float(u2) - 65535) * c
            z0[x] = _f(np.int32(u1[x]) + np.int32(u2[x]) - np.int32(65535)) * c
        pad_border(zp, r, True)
        k0 = kern[0]
        for x in range(w):
            z[x] = k0 * zp[x]
        for k in range(1, 2 * r + 1):
            kk, src = kern[k], zp[k:k + w]
            for x in range(w):
                z[x] += kk * src[x]
        src, dst = img[i], out[i]
        for x in range(w):
            v = src[x]
            dst[x] = v + np.sqrt(max(v, zero) * inv_dose + det_var) * z[x]
    return out


@compiled(_IMG(_BASIS, _IMG, _BASIS))
def cosine_field(cy, a, cx):
    """``cy @ a @ cx.T`` in float32, summed term by term in index order (no BLAS), unscaled.

    ``b = sum_i cy[:, i] a[i, :]``, then ``f = sum_j b[:, j] cx[:, j]``: the same products and sums,
    in the same order, as the NumPy expression they replace.
    """
    h, order = cy.shape
    w = cx.shape[0]
    b = np.empty((h, order), np.float32)
    for y in range(h):
        for j in range(order):
            s = cy[y, 0] * a[0, j]
            for i in range(1, order):
                s += cy[y, i] * a[i, j]
            b[y, j] = s
    cxt = np.ascontiguousarray(cx.T)
    f = np.empty((h, w), np.float32)
    for y in range(h):
        b0 = b[y, 0]
        for x in range(w):
            f[y, x] = b0 * cxt[0, x]
        for j in range(1, order):
            bj = b[y, j]
            for x in range(w):
                f[y, x] += bj * cxt[j, x]
    return f


@compiled(types.void(_IMG, _IMG, _F32))
def scale_by_field(y, field, amplitude):
    """``y *= 1 + amplitude * field`` in place (float32)."""
    one = _f(1.0)
    yf, ff = y.reshape(-1), field.reshape(-1)
    for i in range(yf.shape[0]):
        yf[i] *= ff[i] * amplitude + one


@compiled(types.Array(types.uint8, 2, "C")(_IMG, _F32, _F32, _F32))
def display_linear(img, mid, gain, offset):
    """``uint8(clip((img - mid) * gain + offset, 0, 1) * 255 + 0.5)``, float32 throughout."""
    out = np.empty(img.shape, np.uint8)
    src, dst = img.reshape(-1), out.reshape(-1)
    zero, one, full, half = _f(0.0), _f(1.0), _f(255.0), _f(0.5)
    for i in range(src.shape[0]):
        v = min(max((src[i] - mid) * gain + offset, zero), one)
        dst[i] = np.uint8(v * full + half)
    return out


@compiled(types.Array(types.uint8, 2, "C")(_IMG, _F32, _F32, types.Array(types.uint8, 1, "C")))
def display_table(img, scale, offset, table):
    """``table[int(clip(img * scale + offset, 0, len(table) - 1))]``, float32 arithmetic."""
    out = np.empty(img.shape, np.uint8)
    src, dst = img.reshape(-1), out.reshape(-1)
    zero, top = _f(0.0), _f(table.shape[0] - 1)
    for i in range(src.shape[0]):
        v = min(max(src[i] * scale + offset, zero), top)
        dst[i] = table[int(v)]
    return out