"""The throughput rewrites of issue 16 compute exactly what the plain versions computed (same bytes)."""

import math

import numpy as np
import pytest

from semgen.generators.procedural.allocator import keep_heap
from semgen.generators.procedural.imaging import smooth_field, to_uint8, yield_map
from semgen.generators.procedural.scene import N_MATERIALS, Scene, mask_bboxes


def _bboxes_plain(mask):
    out = []
    if not mask.any():
        return out
    ids = np.unique(mask)
    for k in ids[ids > 0]:
        ys, xs = np.nonzero(mask == k)
        out.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
    return out


@pytest.mark.parametrize("n_ids", [0, 1, 2, 5, 300])
def test_mask_bboxes_matches_plain(n_ids):
    rng = np.random.default_rng(n_ids)
    mask = np.zeros((40, 48), np.uint16)
    for k in range(1, n_ids + 1):
        y, x = rng.integers(0, 40), rng.integers(0, 48)
        mask[y:y + rng.integers(1, 9), x:x + rng.integers(1, 9)] = k
    mask[rng.random(mask.shape) < 0.02] = rng.integers(1, max(2, n_ids + 1)) if n_ids else 0
    assert mask_bboxes(mask) == _bboxes_plain(mask)


def _smooth_field_plain(shape, rng, order=4):
    h, w = shape
    kk = np.arange(order, dtype=np.float32)
    a = rng.standard_normal((order, order)).astype(np.float32) / (1.0 + kk[:, None] + kk[None, :])
    a[0, 0] = 0.0
    # the basis's cosine in float64, rounded to float32 (the same on every CPU)
    cy = np.cos((np.pi * (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h * kk[None, :]).astype(np.float64))
    cx = np.cos((np.pi * (np.arange(w, dtype=np.float32)[:, None] + 0.5) / w * kk[None, :]).astype(np.float64))
    cy, cx = cy.astype(np.float32), cx.astype(np.float32)
    b = np.zeros((h, order), np.float32)
    for i in range(order):
        b += cy[:, i:i + 1] * a[i:i + 1, :]
    f = np.zeros((h, w), np.float32)
    for j in range(order):
        f += b[:, j:j + 1] * cx[None, :, j]
    return f * np.float32(1.0 / max(float(np.abs(f).max()), 1e-6))


@pytest.mark.parametrize("shape", [(32, 32), (48, 40), (32, 32)])
def test_smooth_field_matches_plain(shape):
    for seed in range(3):
        got = smooth_field(shape, np.random.default_rng(seed))
        want = _smooth_field_plain(shape, np.random.default_rng(seed))
        assert got.dtype == np.float32 and np.array_equal(got, want)


def _to_uint8_plain(img, b, c, gamma, lo, hi):
    v = (img - np.float32((lo + hi) / 2.0)) * np.float32(c / (hi - lo)) + np.float32(0.5 + b)
    np.clip(v, 0.0, 1.0, out=v)
    if abs(gamma - 1.0) > 1e-6:
        v = np.power(v, np.float32(gamma))
    return (v * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


@pytest.mark.parametrize("gamma", [1.0, 0.85, 0.87, 1.3, 3.0])
def test_to_uint8_matches_plain(gamma):
    """Exact at gamma 1; with a gamma, the 4096-step table is within one grey level of np.power."""
    img = np.random.default_rng(1).normal(0.5, 0.3, (128, 96)).astype(np.float32)
    lo, hi, b, c = 0.1, 0.85, -0.03, 0.7
    got, want = to_uint8(img, b, c, gamma, (lo, hi)), _to_uint8_plain(img, b, c, gamma, lo, hi)
    diff = got.astype(int) - want
    if gamma == 1.0:
        assert np.array_equal(got, want)
    else:
        assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.05 and abs(diff.mean()) < 0.005
        assert got.min() == 0 and got.max() == 255  # the clipped ends stay black and white


def test_yield_map_is_the_table_lookup():
    rng = np.random.default_rng(2)
    mat = rng.integers(0, 11, (20, 24)).astype(np.uint8)
    scene = Scene(height=np.zeros(mat.shape), material=mat, pixel_nm=1.0)
    p = {"material_contrast": 1.2, "top_level": 0.6, "substrate_level": 0.2}
    y = yield_map(scene, p)
    lut = np.array([y[mat == k][0] if (mat == k).any() else np.nan for k in range(N_MATERIALS)], np.float32)
    assert y.dtype == np.float32 and y.shape == mat.shape
    assert np.array_equal(y, lut[mat])
    assert y[mat == 1][0] == np.float32(0.6) and y[mat == 0][0] == np.float32(0.2)


def test_keep_heap_is_idempotent():
    first = keep_heap()
    assert isinstance(first, bool) and keep_heap() == first


def _polylines_plain(shape, paths, ss=3):
    import cv2

    h, w = shape
    canvas = np.zeros((h * ss, w * ss), np.uint8)
    for pts, widths in paths:
        p = np.round(np.asarray(pts, np.float64) * ss).astype(np.int64)
        wd = np.asarray(widths, np.float64) * ss
        for k in range(len(p) - 1):
            t = int(max(1, round((wd[k] + wd[k + 1]) / 2)))
            cv2.line(canvas, (int(p[k, 0]), int(p[k, 1])), (int(p[k + 1, 0]), int(p[k + 1, 1])), 255, t,
                     lineType=cv2.LINE_8)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def test_polylines_coverage_matches_plain():
    from semgen.generators.procedural.layouts.shapes import polylines_coverage, random_path

    rng = np.random.default_rng(3)
    # half-integer mean widths (x 3) hit round()'s ties; paths leave the frame; a one-point path draws nothing
    paths = [(random_path(rng, (rng.uniform(-5, 45), rng.uniform(-5, 45)), rng.uniform(0, 6), 60, wander=0.3),
              None) for _ in range(4)]
    paths = [(p, rng.choice([0.5, 1.0 / 6, 0.3, 2.5, 4.0], len(p))) for p, _ in paths]
    paths.append((np.array([[10.0, 10.0]]), np.array([2.0])))
    got = polylines_coverage((40, 44), paths)
    assert got.dtype == np.float32 and got.tobytes() == _polylines_plain((40, 44), paths).tobytes()
    assert got.max() == 1.0
    # short marks inside the frame (drawn in their own box), near or across its edges, and outside it
    for i in range(40):
        start = (rng.uniform(-30, 75), rng.uniform(-30, 70))
        paths = [(random_path(rng, start, rng.uniform(0, 6), rng.uniform(2, 30), wander=0.4),
                  None) for _ in range(int(rng.integers(1, 3)))]
        paths = [(p, rng.uniform(0.2, 9.0, len(p))) for p, _ in paths]
        got = polylines_coverage((40, 44), paths)
        assert got.tobytes() == _polylines_plain((40, 44), paths).tobytes(), i


def _splat_plain(shape, s, soft=0.7, value=1.0):
    """One shape's coverage in float64 NumPy over its window, the kernels' formulas (:mod:`.raster`)
    with the harmonics as ``arctan2`` and ``cos``: the definition the compiled splat must meet."""
    from semgen.generators.procedural.layouts.shapes import _box

    out = np.zeros(shape, np.float32)
    box = _box(shape, *s.center(), *s.extents())
    if box is None:
        return out
    y0, y1, x0, x1 = box
    X = np.arange(x0, x1, dtype=np.float64)[None] + 0.5
    Y = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    g = s.geom
    if s.kind == "capsule":
        ax, ay, bx, by, r = map(float, g)
        px, py, vx, vy = X - ax, Y - ay, bx - ax, by - ay
        t = np.minimum(np.maximum((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-6), 0.0), 1.0)
        ex, ey = px - t * vx, py - t * vy
        d = np.sqrt(ex * ex + ey * ey) - r
    else:
        ang = float(g[4] if s.kind == "ellipse" else g[5])
        c, sn = (math.cos(ang), math.sin(ang)) if ang else (1.0, 0.0)
        px, py = X - g[0], Y - g[1]
        if s.kind == "ellipse":
            rx, ry = max(g[2], 1e-3), max(g[3], 1e-3)
            ux, uy = (c * px + sn * py) / rx, (-sn * px + c * py) / ry
            rho = np.sqrt(ux * ux + uy * uy)
            scale = 1.0
            if s.harmonics:
                th = np.arctan2(uy, ux)
                scale = np.maximum(1.0 + sum(a * np.cos(k * th + ph) for k, a, ph in s.harmonics), 0.2)
            d = (rho - scale) * min(rx, ry)
        else:
            hx, hy = g[2], g[3]
            rc = min(g[4], hx, hy)
            qx, qy = np.abs(c * px + sn * py) - (hx - rc), np.abs(-sn * px + c * py) - (hy - rc)
            d = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2) + np.minimum(np.maximum(qx, qy), 0.0) - rc
    out[y0:y1, x0:x1] = np.clip(0.5 - d / (2.0 * soft), 0.0, 1.0).astype(np.float32) * np.float32(value)
    return out


def test_compiled_splat_matches_the_plain_definition():
    """Ellipses (rotated, with radial harmonics of orders 0-7), rounded rectangles and capsules,
    inside and across the frame's edges, at three edge softnesses and two values: the compiled
    one-pass splat gives the float64 definition's bytes (the harmonics by complex powers instead
    of arctan2 and cos, and its shortcut for pixels out of reach, changed none here), and a shape
    unions into what is there (max)."""
    from semgen.generators.procedural.layouts.shapes import Shape

    rng = np.random.default_rng(0)
    kinds = ("ellipse", "rect", "capsule", "harmonics")
    for i in range(800):
        kind = kinds[i % 4]
        cx, cy = rng.uniform(-10, 60, 2)
        if kind == "capsule":
            s = Shape("capsule", (cx, cy, cx + rng.uniform(-20, 20), cy + rng.uniform(-20, 20), rng.uniform(0.2, 6)))
        elif kind == "rect":
            s = Shape("rect", (cx, cy, *rng.uniform(0.3, 15, 2), rng.uniform(0, 5), float(rng.choice([0, rng.uniform(-3, 3)]))))
        else:
            harm = ([(int(k), rng.uniform(0.01, 0.25), rng.uniform(0, 6.3)) for k in rng.integers(0, 8, rng.integers(1, 6))]
                    if kind == "harmonics" else [])
            s = Shape("ellipse", (cx, cy, *rng.uniform(0.5, 20, 2), float(rng.choice([0, rng.uniform(-3, 3)]))),
                      harmonics=harm)
        soft, value = float(rng.choice([0.7, 0.3, 1.5])), float(rng.choice([1.0, 0.6]))
        cov = np.zeros((50, 60), np.float32)
        s.splat(cov, soft, value)
        assert cov.tobytes() == _splat_plain((50, 60), s, soft, value).tobytes(), (i, kind)
    base = np.full((50, 60), 0.5, np.float32)
    Shape("ellipse", (30.0, 25.0, 8.0, 5.0, 0.3)).splat(base)
    assert base.max() == 1.0 and base.min() == 0.5
    with pytest.raises(ValueError, match="C-ordered 2-D float32"):
        Shape("ellipse", (3.0, 3.0, 2.0, 2.0, 0.0)).splat(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="integers >= 0"):
        Shape("ellipse", (3.0, 3.0, 2.0, 2.0, 0.0), harmonics=[(1.5, 0.1, 0.0)]).splat(np.zeros((8, 8), np.float32))


def test_plain_fast_paths_keep_values_and_types():
    from semgen.generators.procedural.generation import _plain

    v = {"a": 1, "b": 2.5, "c": True, "d": None, "e": "s", "f": float("nan"), "g": np.float64(0.1),
         "h": np.float32(0.25), "i": np.int64(3), "j": np.bool_(False), "k": (1, np.int32(2)), 5: [float("inf")]}
    got = _plain(v)
    assert got == {"a": 1, "b": 2.5, "c": True, "d": None, "e": "s", "f": None, "g": 0.1, "h": 0.25, "i": 3,
                   "j": False, "k": [1, 2], "5": [None]}
    assert [type(got[k]) for k in "abcgij"] == [int, float, bool, float, int, bool]
