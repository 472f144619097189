"""The procedural simulator validates its own physics: roughness statistics, imaging model, masks."""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np
import pytest
from scipy import integrate

from semgen.errors import SemgenError, UnknownClassError
from semgen.generators.procedural import imaging
from semgen.generators.procedural.generation import generate_one
from semgen.generators.procedural.layouts.lines import make_line_grid
from semgen.generators.procedural.params import ParamSpace, ParamSpec
from semgen.generators.procedural.registry import create_generator, list_generators
from semgen.generators.procedural.roughness import edge_pair, palasantzas_acf, palasantzas_psd, rough_edges
from semgen.generators.procedural.scene import LINE, SUBSTRATE, Scene
from semgen.seeding import rng_for
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from roughness_fit import CASES, edge_correlation, fit_psd, ler_edges  # noqa: E402  (bench/roughness_fit.py)

LINES = {"layout": "lines"}


# -- roughness -------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma,xi,alpha", [(2.0, 10.0, 0.5), (1.0, 30.0, 0.9), (3.0, 5.0, 0.3)])
def test_palasantzas_psd_integrates_to_sigma_squared(sigma, xi, alpha):
    total, _ = integrate.quad(lambda f: palasantzas_psd(np.array([f]), sigma, xi, alpha)[0], -np.inf, np.inf,
                              limit=400)
    assert total == pytest.approx(sigma ** 2, rel=2e-3)
    # the ACF is the Fourier transform of the PSD: compare at a lag of one correlation length
    acf, _ = integrate.quad(lambda f: 2 * palasantzas_psd(np.array([f]), sigma, xi, alpha)[0], 0, np.inf,
                            weight="cos", wvar=2 * math.pi * xi)
    assert acf == pytest.approx(palasantzas_acf(np.array([xi]), sigma, xi, alpha)[0], rel=2e-2)
    assert palasantzas_acf(np.array([0.0]), sigma, xi, alpha)[0] == pytest.approx(sigma ** 2)


def test_thorsos_edges_have_requested_rms_and_spectrum():
    rng = np.random.default_rng(0)
    e = rough_edges(64, 512, 1.0, 2.0, 15.0, 0.6, rng)
    assert e.shape == (64, 512)
    assert e.std() == pytest.approx(2.0, rel=0.08)
    fit = fit_psd(e, 1.0)
    assert fit["sigma"] == pytest.approx(2.0, rel=0.08)
    assert fit["xi"] == pytest.approx(15.0, rel=0.2)
    assert fit["alpha"] == pytest.approx(0.6, rel=0.2)


@pytest.mark.parametrize("rho", [-0.6, 0.0, 0.9])
def test_left_right_edge_correlation_sets_lwr(rho):
    rng = np.random.default_rng(1)
    left, right = edge_pair(200, 256, 1.0, 2.0, 10.0, 0.7, rho, rng)
    lc = left - left.mean(axis=1, keepdims=True)
    rc = right - right.mean(axis=1, keepdims=True)
    corr = float((lc * rc).sum() / math.sqrt((lc ** 2).sum() * (rc ** 2).sum()))
    assert corr == pytest.approx(rho, abs=0.06)
    lwr = float((rc - lc).std())  # width roughness
    assert lwr == pytest.approx(2.0 * math.sqrt(2 * (1 - rho)), rel=0.1, abs=0.15)


@pytest.mark.parametrize("sigma,xi,alpha,rho", CASES)
def test_generator_edges_recover_requested_roughness(sigma, xi, alpha, rho):
    """Fit sigma, xi, alpha on the edge arrays the ``ler`` generator made for its scenes (8 of 128 px)."""
    left, right, dy = ler_edges(sigma, xi, alpha, rho, n_images=8, size=128)
    assert left.shape == right.shape and left.shape[0] >= 40  # several edge pairs per scene
    fit = fit_psd(np.vstack([left, right]), dy)
    assert fit["sigma"] == pytest.approx(sigma, rel=0.1)
    assert fit["xi"] == pytest.approx(xi, rel=0.25)
    assert fit["alpha"] == pytest.approx(alpha, rel=0.2)
    assert edge_correlation(left, right) == pytest.approx(rho, abs=0.1)


def test_ler_is_rougher_than_clean_in_pixels():
    """ler edges wiggle by pixels; clean ones by a fraction of a pixel (what a person can see)."""
    def rms_px(name):
        out = []
        for i in range(12):
            rng = rng_for(i)
            gen = create_generator(name)
            p = gen.sample_params(rng, LINES)
            s = gen.build(p, rng, 128)
            out.append(float(np.std(s.edges["left_nm"])) / s.pixel_nm)
        return float(np.median(out))
    assert rms_px("ler") > 0.6
    assert rms_px("clean") < 0.35
    assert rms_px("ler") > 3 * rms_px("clean")


# -- params -----------------------------------------------------------------------------------------

def test_param_space_sampling_and_overrides():
    space = ParamSpace([
        ParamSpec("a", "float", 1.0, 0.5, 2.0), ParamSpec("b", "int", 3, 1, 5),
        ParamSpec("c", "choice", "x", choices=("x", "y")), ParamSpec("d", "bool", 0.5),
        ParamSpec("e", "float", 1.0, 1.0, 10.0, log=True, when={"c": ("y",)}),
    ])
    p1 = space.sample(np.random.default_rng(0))
    p2 = space.sample(np.random.default_rng(0), {"a": "1.5"})
    assert p2["a"] == 1.5 and p2["b"] == p1["b"] and p2["c"] == p1["c"]  # fixing one leaves the rest
    for seed in range(20):
        p = space.sample(np.random.default_rng(seed))
        assert 0.5 <= p["a"] <= 2.0 and 1 <= p["b"] <= 5 and isinstance(p["d"], bool)
        assert ("e" in p) == (p["c"] == "y")
    with pytest.raises(SemgenError, match="unknown parameter.*valid: a, b, c, d, e"):
        space.sample(np.random.default_rng(0), {"zz": 1})
    with pytest.raises(SemgenError, match=r"out of range \[0.5, 2\]"):
        space.sample(np.random.default_rng(0), {"a": 3})
    with pytest.raises(SemgenError, match="not one of x, y"):
        space.check_overrides({"c": "z"})
    with pytest.raises(SemgenError, match="not a valid int"):
        space.check_overrides({"b": "2.5"})
    assert space.check_overrides({"d": "false", "b": "4"}) == {"d": False, "b": 4}


def test_registry_resolves_labels_and_aliases():
    names = list_generators()
    for c in ("clean", "ler", "bridge", "open"):
        assert c in names
    assert create_generator("short").label == "bridge"
    assert create_generator("necking").label == "open"
    with pytest.raises(UnknownClassError, match="Valid classes"):
        create_generator("brige-x")


# -- imaging ----------------------------------------------------------------------------------------

def _step_scene(n=64):
    h = np.zeros((n, n), np.float32)
    h[:, n // 4: n // 2] = 50.0
    return Scene(height=h, material=np.where(h > 0, LINE, SUBSTRATE), pixel_nm=2.0)


def _quiet(**kw):
    p = imaging.IMAGING.defaults()
    p.update(dict(dose=1e5, frames=1, detector_sigma=0.0, jitter_px=0.0, drift_px=0.0, charging=0.0,
                  tail_strength=0.0, bg_amplitude=0.0, brightness=0.0, contrast=1.0, gamma=1.0, auto_levels=False,
                  astig_ratio=1.0, edge_asymmetry=0.0))
    p.update(kw)
    return p


def test_imaging_levels_and_bright_edges():
    s = _step_scene()
    img = imaging.render(s, _quiet(top_level=0.6, substrate_level=0.2, edge_gain=0.5, psf_sigma_px=0.8),
                         np.random.default_rng(0))
    row = img[32].astype(float)
    assert row[24] == pytest.approx(0.6 * 255, abs=4)        # line top
    assert row[50] == pytest.approx(0.2 * 255, abs=4)        # substrate
    assert row[16] > row[24] + 20 and row[31] > row[24] + 20  # bright edges (edge effect)


def test_imaging_edge_asymmetry_brightens_one_side():
    s = _step_scene()
    img = imaging.render(s, _quiet(edge_asymmetry=0.5, edge_gain=0.4), np.random.default_rng(0)).astype(float)
    left_edge, right_edge = img[:, 14:19].max(1).mean(), img[:, 29:34].max(1).mean()
    assert right_edge > left_edge + 10  # the line's right sidewall faces +x (the detector): brighter
    flip = imaging.render(s, _quiet(edge_asymmetry=-0.5, edge_gain=0.4), np.random.default_rng(0)).astype(float)
    assert flip[:, 14:19].max(1).mean() > flip[:, 29:34].max(1).mean() + 10


def test_imaging_noise_follows_dose_and_frames():
    flat = Scene(height=np.zeros((96, 96), np.float32), material=np.full((96, 96), LINE, np.uint8), pixel_nm=2.0)

    def sd(**kw):
        img = imaging.render(flat, _quiet(top_level=0.5, noise_smear_px=0.0, **kw), np.random.default_rng(3))
        return float(img.astype(float).std()) / 255.0

    s1 = sd(dose=20.0, frames=1)
    assert s1 == pytest.approx(math.sqrt(0.5 / 20.0), rel=0.1)   # Poisson: var = signal / dose
    assert sd(dose=20.0, frames=4) == pytest.approx(s1 / 2, rel=0.12)  # 4 frames halve the noise
    assert sd(dose=1e5, detector_sigma=0.04) == pytest.approx(0.04, rel=0.1)


def test_imaging_psf_blurs_and_astigmatism_is_directional():
    s = _step_scene()
    sharp = imaging.render(s, _quiet(psf_sigma_px=0.1, edge_gain=0.0), np.random.default_rng(0)).astype(float)
    blur = imaging.render(s, _quiet(psf_sigma_px=3.0, edge_gain=0.0), np.random.default_rng(0)).astype(float)
    assert np.abs(np.diff(sharp[32])).max() > 2 * np.abs(np.diff(blur[32])).max()
    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.random((96, 96), dtype=np.float32), (0, 0), 0.7)
    for sig, ratio, ang in [(2.0, 1.6, 30.0), (1.0, 1.4, 120.0), (2.4, 1.6, 90.0), (2.0, 1.5, 0.0)]:
        ref = cv2.filter2D(img, -1, imaging.psf_kernel(sig, ratio, ang), borderType=cv2.BORDER_REFLECT)
        assert np.abs(imaging.apply_psf(img, sig, ratio, ang) - ref).max() < 5e-3  # fast paths = 2-D kernel
    k = imaging.psf_kernel(2.0, 3.0, 0.0)
    var_x = (k.sum(0) * (np.arange(k.shape[1]) - k.shape[1] // 2) ** 2).sum()
    var_y = (k.sum(1) * (np.arange(k.shape[0]) - k.shape[0] // 2) ** 2).sum()
    assert var_x / var_y == pytest.approx(9.0, rel=0.15)
    assert k.sum() == pytest.approx(1.0)


def test_imaging_scan_artefacts():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64), np.float32)
    img[:, 20:24] = 1.0
    shifted = imaging.scan_distort(img, 1.0, 0.0, rng)
    centres = (shifted * np.arange(64)).sum(1) / shifted.sum(1)
    assert centres.std() > 0.5                              # rows land shifted: jitter
    tail = imaging.dark_tail(img, 0.5, 5.0)
    assert tail[:, 30].mean() < -0.01 and tail[:, 10].mean() == pytest.approx(0.0, abs=1e-6)  # only after
    flat = Scene(height=np.zeros((64, 64), np.float32), material=np.full((64, 64), LINE, np.uint8), pixel_nm=2.0)
    ch = imaging.render(flat, _quiet(top_level=0.4, charging=0.5), np.random.default_rng(0)).astype(float)
    assert ch[-4:].mean() > ch[:4].mean() * 1.3             # charging builds up along the slow scan
    f = imaging.smooth_field((64, 80), np.random.default_rng(2))
    assert f.shape == (64, 80) and np.abs(f).max() == pytest.approx(1.0)


def test_imaging_display_mapping_and_clipping():
    v = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0]], np.float32)
    out = imaging.to_uint8(v, 0.0, 1.0, 1.0)
    assert out.dtype == np.uint8 and out.tolist() == [[0, 0, 128, 255, 255]]
    assert imaging.to_uint8(v, 0.1, 1.0, 1.0)[0, 2] == 153
    assert imaging.to_uint8(v, 0.0, 1.0, 2.0)[0, 2] == 64


# -- layouts and masks ------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", ["vertical", "horizontal", "diagonal"])
def test_lines_orientation_pitch_and_duty(orientation):
    gen = create_generator("clean")
    rng = rng_for(7)
    p = gen.sample_params(rng, dict(LINES, orientation=orientation, periods=8, duty=0.4, sigma_nm=0.0,
                                    cd_variation=0, placement_nm=0, angle_deg=45, diag_flip=False))
    s = gen.build(p, rng, 128)
    frac = float((s.material == LINE).mean())
    assert frac == pytest.approx(0.4, abs=0.05)
    if orientation != "diagonal":
        prof = s.height.mean(axis=0 if orientation == "vertical" else 1)  # across the lines
        spec = np.abs(np.fft.rfft(prof - prof.mean()))
        assert int(np.argmax(spec)) == 8                    # 8 periods across the image
        along = s.height.mean(axis=1 if orientation == "vertical" else 0)
        assert along.std() < 0.05 * prof.std()              # and constant along them
    else:
        # lines at 45 deg: constant along one diagonal, periodic along the other
        assert s.meta["angle_deg"] == pytest.approx(45.0)
        i = np.arange(128)
        across = s.height[i, i]
        along = s.height[i[30:98], 127 - i[30:98]]
        spec = np.abs(np.fft.rfft(across - across.mean()))
        assert int(np.argmax(spec)) in (11, 12)             # 8 periods * sqrt(2) along the diagonal
        assert along.std() < 0.2 * across.std()


def _grid_for(gen, seed, sets, size):
    """The undisturbed line grid of a defect image (same rng stream as the generator's build)."""
    rng = rng_for(seed)
    p = gen.sample_params(rng, sets)
    return p, make_line_grid(p, rng, size)


@pytest.mark.parametrize("kind", ["full", "micro", "footing"])
def test_bridge_mask_spans_the_space_between_two_lines(kind):
    gen = create_generator("bridge")
    for seed in range(4):
        sets = dict(LINES, bridge_type=kind, n_bridges=1, periods=8, bridge_span=1 + seed % 2)
        rng = rng_for(seed)
        p = gen.sample_params(rng, sets)
        scene = gen.build(p, rng, 128)
        _, grid = _grid_for(gen, seed, sets, 128)
        line0 = grid.coverage() > 0.5
        m = scene.mask == 1
        assert m.sum() >= 2 and set(np.unique(scene.mask)) == {0, 1}
        joined = scene.meta["defects"][0]["lines"]
        assert len(joined) == (2 + seed % 2 if kind == "full" else 2)  # span only widens full bridges
        k0, k1 = joined[0], joined[-1]
        assert (m & line0 & (grid.cell == k0)).any(), "mask must touch the first line"
        assert (m & line0 & (grid.cell == k1)).any(), "mask must touch the last line"
        assert (m & ~line0).any(), "mask must cover the space between them"
        assert set(np.unique(grid.cell[m])) <= set(joined)
        # the bridge is there: material joins the lines inside the mask
        if kind != "footing":
            assert (scene.height[m & ~line0] > 0.3 * p["line_height_nm"]).mean() > 0.8
        x0, y0, x1, y1 = scene.bboxes()[0]
        ys, xs = np.nonzero(m)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("kind", ["break", "pinch", "partial"])
def test_open_mask_lies_on_one_line_where_material_is_missing(kind):
    gen = create_generator("open")
    for seed in range(4):
        sets = dict(LINES, open_type=kind, n_opens=1, periods=6)
        rng = rng_for(seed)
        p = gen.sample_params(rng, sets)
        scene = gen.build(p, rng, 128)
        _, grid = _grid_for(gen, seed, sets, 128)
        cov0 = grid.coverage()
        m = scene.mask == 1
        assert m.sum() >= 2
        k = scene.meta["defects"][0]["line"]
        assert set(np.unique(grid.cell[m])) == {k}           # on one line
        assert (cov0[m] > 0.5).all()                         # where the line was
        removed = scene.height < 0.5 * p["line_height_nm"]
        if kind in ("break", "partial"):
            assert removed[m].mean() > 0.9                   # and is no more
        else:
            assert removed[m].mean() > 0.2                   # the neck keeps a core
            # a pinched line is narrower inside the mask than outside
            assert removed[m].mean() > removed[(grid.cell == k) & (cov0 > 0.5) & ~m].mean() + 0.15
        if kind == "break":                                  # the line is cut through: two pieces
            line = ((scene.height > 0.5 * p["line_height_nm"]) & (grid.cell == k)).astype(np.uint8)
            n, lab = cv2.connectedComponents(line, connectivity=8)
            assert n - 1 >= 2


def test_defect_classes_make_masks_and_clean_does_not():
    for name in ("bridge", "open"):
        for seed in range(6):
            s = generate_one(name, seed, 96)
            assert s.mask is not None and s.mask.dtype == np.uint16 and s.mask.any()
            assert len(s.bboxes) == int(s.mask.max())
    for name in ("clean", "ler"):
        s = generate_one(name, 3, 96, LINES)
        assert s.mask is None and s.bboxes == []


def test_generate_one_is_a_pure_function_of_its_inputs():
    a = generate_one("bridge", 123, 80)
    b = generate_one("bridge", 123, 80)
    c = generate_one("bridge", 124, 80)
    assert np.array_equal(a.image, b.image) and a.params == b.params and a.meta == b.meta
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.image.shape == (80, 80)
    d = generate_one("bridge", 123, 80, {"dose": 50})
    assert d.params["dose"] == 50 and d.params["top_level"] == a.params["top_level"]
