"""Compiled shape rasterisers (numba): signed distance, coverage and union in one pass per shape.

:meth:`.shapes.Shape.splat` drew a shape as about ten NumPy passes over its window (offsets,
rotation, distance, ``arctan2`` and a ``cos`` per radial harmonic, the coverage ramp, the max),
each a small temporary array and a Python-level call; a layout of a few hundred vias or particles
spent 1-2 ms per image there. Each kernel here visits the window's pixels once.

A shape's coverage of a pixel is ``clip(0.5 - d / (2 soft), 0, 1)`` of its signed distance ``d``
(pixels, negative inside): 1 inside, 0 outside, a ramp ``2 soft`` pixels wide across the outline.
Arithmetic: float64 per pixel (the window's pixel centres ``i + 0.5`` are exact), the coverage
rounded to float32 once. No transcendental function is
evaluated per pixel: the radial harmonics ``a cos(k theta + phi)`` are sums of ``cos k theta`` and
``sin k theta``, the powers of the unit vector ``(x + i y) / r`` by complex multiplication, and
the caller passes ``a cos phi`` and ``a sin phi``. Only ``+ - * /`` and ``sqrt`` remain (correctly
rounded IEEE operations, no fast-math, no FMA contraction), so the bytes do not depend on the CPU.

Pixels the shape cannot reach are skipped without the harmonics: where even the largest radius
``smax`` leaves the pixel a full ``soft`` outside, its coverage is exactly 0; where the smallest
radius ``smin`` leaves it a full ``soft`` inside, exactly 1 (both bounds widened by ``1e-9``, more
than the rounding of the harmonic sum, so the shortcut never changes a value).
"""

from __future__ import annotations

import math

import numpy as np
from numba import types

from ....jit import compiled

_IMG = types.Array(types.float32, 2, "C")
_COEF = types.Array(types.float64, 1, "C", readonly=True)
_I, _D, _F32 = types.intp, types.float64, types.float32


@compiled(_F32(_D))
def _clip01(v):
    """``clip(v, 0, 1)`` rounded to float32: a pixel's coverage from ``v = 0.5 - d / (2 soft)``."""
    # numba's inline="always" would drop this function's float32 return type: a product with the
    # float32 value would then be rounded once from float64 instead of twice, as NumPy does
    if v <= 0.0:
        return np.float32(0.0)
    if v >= 1.0:
        return np.float32(1.0)
    return np.float32(v)


@compiled(types.void(_IMG, _I, _I, _I, _I, _D, _D, _D, _D, _D, _D, _COEF, _COEF, _D, _D, _D, _F32))
def splat_ellipse(cov, y0, y1, x0, x1, cx, cy, c, s, rx, ry, hc, hs, smin, smax, soft, value):
    """Max-union an ellipse with radial harmonics into ``cov[y0:y1, x0:x1]`` (in place).

    ``(c, s)``: cosine and sine of its angle; ``hc[k]``, ``hs[k]``: the sums of ``a cos phi``
    and ``a sin phi`` over its harmonics of order ``k`` (empty: none); ``smin`` / ``smax``: the
    least and largest radius factor, ``max(0.2, 1 - sum |a|)`` and ``1 + sum |a|``.
    """
    m = min(rx, ry)
    kmax = len(hc) - 1
    out_at = soft + 1e-9 * m  # (rho - smax') * m >= soft: coverage exactly 0
    in_at = -soft - 1e-9 * m
    for y in range(y0, y1):
        py = y + 0.5 - cy
        row = cov[y]
        for x in range(x0, x1):
            px = x + 0.5 - cx
            ux = (c * px + s * py) / rx
            uy = (-s * px + c * py) / ry
            rho = math.sqrt(ux * ux + uy * uy)
            if (rho - smax) * m >= out_at:
                continue
            if kmax < 0:
                d = (rho - 1.0) * m
            elif (rho - smin) * m <= in_at:
                d = -soft  # coverage exactly 1
            else:
                zc, zs = (ux / rho, uy / rho) if rho > 0.0 else (1.0, 0.0)  # arctan2(0, 0) = 0
                scale = 1.0 + hc[0]
                pc, ps = 1.0, 0.0
                for k in range(1, kmax + 1):
                    pc, ps = pc * zc - ps * zs, pc * zs + ps * zc
                    scale += pc * hc[k] - ps * hs[k]
                d = (rho - max(scale, 0.2)) * m
            v = _clip01(0.5 - d / (2.0 * soft)) * value
            if v > row[x]:
                row[x] = v


@compiled(types.void(_IMG, _I, _I, _I, _I, _D, _D, _D, _D, _D, _D, _D, _D, _F32))
def splat_round_rect(cov, y0, y1, x0, x1, cx, cy, c, s, hx, hy, rc, soft, value):
    """Max-union a rectangle of half sizes ``(hx, hy)``, corner radius ``rc`` and angle cosine and
    sine ``(c, s)`` into ``cov[y0:y1, x0:x1]`` (in place)."""
    ex, ey = hx - rc, hy - rc
    for y in range(y0, y1):
        py = y + 0.5 - cy
        row = cov[y]
        for x in range(x0, x1):
            px = x + 0.5 - cx
            qx = abs(c * px + s * py) - ex
            qy = abs(-s * px + c * py) - ey
            ox, oy = max(qx, 0.0), max(qy, 0.0)
            d = math.sqrt(ox * ox + oy * oy) + min(max(qx, qy), 0.0) - rc
            v = _clip01(0.5 - d / (2.0 * soft)) * value
            if v > row[x]:
                row[x] = v


@compiled(types.void(_IMG, _I, _I, _I, _I, _D, _D, _D, _D, _D, _D, _F32))
def splat_capsule(cov, y0, y1, x0, x1, ax, ay, bx, by, r, soft, value):
    """Max-union the segment ``a``-``b`` thickened to radius ``r`` into ``cov[y0:y1, x0:x1]``."""
    vx, vy = bx - ax, by - ay
    vv = max(vx * vx + vy * vy, 1e-6)
    for y in range(y0, y1):
        py = y + 0.5 - ay
        row = cov[y]
        for x in range(x0, x1):
            px = x + 0.5 - ax
            t = min(max((px * vx + py * vy) / vv, 0.0), 1.0)
            ex, ey = px - t * vx, py - t * vy
            d = math.sqrt(ex * ex + ey * ey) - r
            v = _clip01(0.5 - d / (2.0 * soft)) * value
            if v > row[x]:
                row[x] = v
