"""semgen.generators.procedural.portable: OpenCV's filters, the same on every CPU."""

import cv2
import numpy as np
import pytest

from semgen.generators.procedural import portable as pt

RNG = np.random.default_rng(0)
SMOOTH = cv2.GaussianBlur(RNG.standard_normal((37, 29)).astype(np.float32), (0, 0), 2.0)
NOISE = RNG.standard_normal((37, 29)).astype(np.float32)


@pytest.mark.parametrize("border", [cv2.BORDER_REFLECT, cv2.BORDER_REFLECT_101])
@pytest.mark.parametrize("sigma,sigma_y", [(0.8, None), (1.5, 3.0), (6.0, None), (20.0, 0.5)])
def test_gaussian_blur_matches_opencv(border, sigma, sigma_y):
    """Same kernel, same borders: equal to OpenCV's float32 blur within float32 rounding (sigma 20:
    a kernel wider than the image, folded more than once)."""
    ref = cv2.GaussianBlur(NOISE, (0, 0), sigma, sigmaY=sigma_y or 0, borderType=border)
    got = pt.gaussian_blur(NOISE, sigma, sigma_y, border)
    assert got.dtype == np.float32 and got.shape == NOISE.shape
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_sep_filter_matches_opencv_and_checks_input():
    kx, ky = np.float32([0.1, 0.5, 0.2, 0.15, 0.05]), np.float32([-1, 0, 2])
    ref = cv2.sepFilter2D(NOISE, -1, kx, ky, borderType=cv2.BORDER_REFLECT)
    np.testing.assert_allclose(pt.sep_filter(NOISE, kx, ky, cv2.BORDER_REFLECT), ref, atol=2e-6)
    with pytest.raises(ValueError, match="odd"):
        pt.sep_filter(NOISE, np.float32([0.5, 0.5]), ky)
    with pytest.raises(ValueError, match="BORDER_REFLECT"):
        pt.sep_filter(NOISE, kx, ky, cv2.BORDER_WRAP)
    with pytest.raises(ValueError, match="sigma"):
        pt.gaussian_blur(NOISE, 0.0)


@pytest.mark.parametrize("border", [cv2.BORDER_REFLECT, cv2.BORDER_REFLECT_101, cv2.BORDER_REPLICATE,
                                    cv2.BORDER_CONSTANT])
def test_remap_matches_opencv(border):
    """Bilinear: OpenCV rounds the fractions to 1/32 pixel, so equal within 1/64 of a pixel's step;
    nearest: the same pixels wherever the coordinate is not within 1e-3 of a half."""
    h, w = SMOOTH.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mx = xx + 3.3 * np.sin(yy / 5).astype(np.float32) - 1.7
    my = yy + 2.1 * np.cos(xx / 4).astype(np.float32) + 0.6
    ref = cv2.remap(SMOOTH, mx, my, cv2.INTER_LINEAR, borderMode=border)
    got = pt.remap(SMOOTH, mx, my, True, border)
    step = np.abs(np.diff(SMOOTH, axis=0)).max() + np.abs(np.diff(SMOOTH, axis=1)).max()
    assert np.abs(got - ref).max() <= step / 32
    labels = (RNG.random((h, w)) * 5).astype(np.uint8)
    sure = (np.abs(mx - np.floor(mx) - 0.5) > 1e-3) & (np.abs(my - np.floor(my) - 0.5) > 1e-3)
    near = pt.remap(labels, mx, my, False, border)
    assert near.dtype == np.uint8
    np.testing.assert_array_equal(near[sure], cv2.remap(labels, mx, my, cv2.INTER_NEAREST, borderMode=border)[sure])
    with pytest.raises(ValueError, match="uint8"):
        pt.remap(labels, mx, my, True)


def test_shift_and_upsample_match_opencv():
    h, w = SMOOTH.shape
    M = np.float32([[1, 0, 2.25], [0, 1, -1.5]])
    ref = cv2.warpAffine(SMOOTH, M, (w, h), flags=cv2.INTER_LINEAR)
    np.testing.assert_allclose(pt.shift(SMOOTH, 2.25, -1.5), ref, atol=1e-5)
    for f in (2, 3, 5):
        ref = cv2.resize(SMOOTH, (w * f, h * f), interpolation=cv2.INTER_LINEAR)
        step = np.abs(np.diff(SMOOTH, axis=0)).max() + np.abs(np.diff(SMOOTH, axis=1)).max()
        assert np.abs(pt.upsample(SMOOTH, f) - ref).max() <= step / 32


def test_float64_functions_round_to_float32():
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    for ours, ref in ((pt.exp, np.exp), (pt.sin, np.sin), (pt.cos, np.cos), (pt.tanh, np.tanh),
                      (lambda v: pt.power(np.abs(v), 0.7), lambda v: np.power(np.abs(v), 0.7))):
        got = ours(x)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref(x.astype(np.float64)).astype(np.float32))
    assert pt.arctan2(np.float32(1), np.float32(1)).dtype == np.float32


def test_upsample_is_remap_on_its_grid_and_symmetric_kernels_take_the_pair_path():
    """The separable upsample does remap's float32 arithmetic exactly; a symmetric kernel's
    pair-first sums equal the tap-by-tap ones within rounding."""
    for f in (2, 3, 4):
        h, w = SMOOTH.shape
        c = lambda n: ((np.arange(n * f, dtype=np.float64) + 0.5) / f - 0.5).astype(np.float32)  # noqa: E731
        mx, my = np.broadcast_to(c(w), (h * f, w * f)), np.broadcast_to(c(h)[:, None], (h * f, w * f))
        np.testing.assert_array_equal(pt.upsample(SMOOTH, f), pt.remap(SMOOTH, mx, my, True, cv2.BORDER_REPLICATE))
    k = pt.gaussian_kernel(1.7)
    assert np.array_equal(k, k[::-1])
    lop = np.concatenate([k, np.zeros(1, np.float32)])[1:]  # not symmetric: the tap-by-tap path
    ref = cv2.sepFilter2D(NOISE, -1, lop, k, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(pt.sep_filter(NOISE, lop, k), ref, atol=2e-6)


def test_filter2d_symmetric_matches_opencv_and_checks_its_kernel():
    from semgen.generators.procedural.imaging import psf_kernel

    for sigma, ratio, angle in ((0.7, 1.3, 30.0), (1.2, 1.5, 70.0), (0.4, 1.2, 10.0)):
        k = psf_kernel(sigma, ratio, angle)
        assert np.array_equal(k, k[::-1, ::-1])
        for border in (cv2.BORDER_REFLECT, cv2.BORDER_REFLECT_101):
            ref = cv2.filter2D(NOISE, -1, k, borderType=border)
            np.testing.assert_allclose(pt.filter2d_symmetric(NOISE, k, border), ref, atol=2e-6)
    with pytest.raises(ValueError, match="point-symmetric"):
        pt.filter2d_symmetric(NOISE, np.float32([[0, 1, 2]]))
    with pytest.raises(ValueError, match="odd"):
        pt.filter2d_symmetric(NOISE, np.ones((2, 3), np.float32))
