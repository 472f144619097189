"""The SEM imaging model: a :class:`~.scene.Scene` (topography + materials) to an 8-bit image.

The chain follows the physics of a secondary-electron (SE) image, in this order:

1. **SE yield by material**: a per-material level (``top_level`` for lines, ``substrate_level``
   for the floor, the others from :data:`~.scene.SE_YIELD` spread by ``material_contrast``).
2. **Edge effect**: SE yield grows as ``1/cos(theta)`` with the local surface tilt theta, and SEs
   escape through sidewalls, so edges glow. We take ``1 - cos(theta)`` from the height gradient,
   spread it over ``edge_width_px`` (the SE escape / interaction range) and add ``edge_gain`` of
   it. ``edge_asymmetry`` makes edges facing the detector (+x) brighter than the others.
3. **Beam point-spread**: a Gaussian of ``psf_sigma_px``, astigmatic with ``astig_ratio`` along
   ``astig_angle_deg``.
4. **Scan artefacts**: each scan line (row) lands shifted by ``jitter_px`` (line-to-line jitter)
   plus a slow drift of ``drift_px`` across the frame; ``charging`` brightens (or darkens) the
   frame progressively along the slow scan; bright features leave a dark tail of relative depth
   ``tail_strength`` and length ``tail_px`` along the fast scan (detector / charging recovery).
5. **Noise**: shot noise of a Poisson process with ``dose`` electrons per pixel per frame,
   averaged over ``frames`` frames (so the variance is ``signal / (dose * frames)``), plus detector
   Gaussian noise ``detector_sigma``; the detector's finite bandwidth correlates noise along the
   scan over ``noise_smear_px``. For speed the Poisson draw uses its Gaussian approximation of
   equal mean and variance (exact in distribution to within a few % for ``dose*frames*signal >~ 10``,
   which the default ranges keep).
6. **Background non-uniformity**: a smooth multiplicative field of relative amplitude ``bg_amplitude``.
7. **Display**: as an operator does, ``auto_levels`` maps the signal's 1-99 % range to full scale
   (else the raw 0..1 signal); then ``brightness`` offset, ``contrast`` gain around mid-grey,
   ``gamma``, clipped to 8 bits.

Lengths are in output pixels: real SEM crops come from figures of every magnification, so what
matters to the picture is the blur relative to the pixel, not the beam size in nm.
All steps work on float32: compiled separable filters for the blurs (:mod:`.portable`) and
compiled one-pass kernels (:mod:`.kernels`, numba) for the rest (about 1 ms for 256 x 256).

Determinism: the same seed must give the same bytes in every process. Each step therefore uses only
operations whose float32 result depends on the values alone, never on where malloc put the
buffer (vendor SIMD kernels such as IPP's ``cv2.magnitude`` round the elements they peel off
to reach an aligned address differently), on BLAS's run-time choices (``smooth_field``) or on the
CPU's instruction sets (OpenCV's float filters and NumPy's float32 ``sin`` and ``exp`` take other
SIMD paths, with other rounding, on other CPUs: :mod:`.portable` replaces them); the compiled
kernels use plain IEEE arithmetic in a fixed order, whatever the CPU's vector width.
``tests/test_determinism.py`` and ``bench/bench_determinism.py`` check it across fresh processes.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from . import kernels, portable
from .allocator import keep_heap
from .params import ParamSpace, ParamSpec
from .scene import LINE, N_MATERIALS, SE_YIELD, SUBSTRATE, Scene

# Every process that images scenes (generation workers, pretraining streams) reuses its heap pages
# instead of page-faulting fresh ones for each temporary: about a third of render's CPU time.
keep_heap()

# Default ranges are tuned against the real dev_test crops (bench/realism_distance.py, docs/classes.md):
# those are resized figures, nearly noise-free and evenly lit, so most images get a high dose and
# little jitter, shading and blur, while the low-dose end (~14 %, as ~12 % of real crops) stays visibly noisy.
# The ranges are the same for every class on purpose: class-dependent imaging is a classifier shortcut.
IMAGING = ParamSpace([
    ParamSpec("top_level", "float", 0.55, 0.40, 0.72, limits=(0.0, 1.0),
              doc="SE yield of line tops (relative, 0..1)"),
    ParamSpec("substrate_level", "float", 0.25, 0.10, 0.38, limits=(0.0, 1.0),
              doc="SE yield of the floor between lines (relative, 0..1)"),
    ParamSpec("material_contrast", "float", 1.0, 0.7, 1.3, limits=(0.0, 3.0),
              doc="spread of the other materials' yields around their mean"),
    ParamSpec("edge_gain", "float", 0.35, 0.15, 0.6, limits=(0.0, 2.0),
              doc="extra SE yield at a vertical sidewall (edge effect)"),
    ParamSpec("edge_width_px", "float", 1.4, 0.8, 2.6, limits=(0.0, 10.0), unit="px",
              doc="spread of the edge glow (SE escape range), Gaussian sigma"),
    ParamSpec("edge_asymmetry", "float", 0.0, -0.35, 0.35, limits=(-1.0, 1.0),
              doc="relative brightness of +x-facing edges over -x-facing ones (detector side)"),
    ParamSpec("psf_sigma_px", "float", 0.7, 0.3, 1.3, limits=(0.0, 8.0), unit="px",
              doc="beam point-spread, Gaussian sigma"),
    ParamSpec("astig_ratio", "float", 1.0, 1.0, 1.6, limits=(1.0, 4.0),
              doc="astigmatism: ratio of the PSF's long to short axis"),
    ParamSpec("astig_angle_deg", "float", 0.0, 0.0, 180.0, limits=(0.0, 180.0), unit="deg",
              doc="direction of the PSF's long axis"),
    ParamSpec("dose", "float", 5000.0, 500.0, 50000.0, log=True, limits=(0.5, 1e5), unit="e/px",
              doc="primary electrons per pixel per frame (shot noise)"),
    ParamSpec("frames", "int", 2, 1, 4, limits=(1, 64),
              doc="frames averaged (noise variance / frames)"),
    ParamSpec("detector_sigma", "float", 0.002, 0.0, 0.006, limits=(0.0, 0.5),
              doc="detector / amplifier Gaussian noise (fraction of full scale)"),
    ParamSpec("noise_smear_px", "float", 1.0, 0.4, 2.0, limits=(0.0, 10.0), unit="px",
              doc="noise correlation along the fast scan (detector bandwidth)"),
    ParamSpec("jitter_px", "float", 0.05, 0.0, 0.2, limits=(0.0, 5.0), unit="px",
              doc="line-to-line scan jitter, RMS shift of each row"),
    ParamSpec("drift_px", "float", 0.5, 0.0, 2.0, limits=(0.0, 20.0), unit="px",
              doc="slow horizontal drift across the frame (peak)"),
    ParamSpec("charging", "float", 0.0, -0.08, 0.1, limits=(-0.9, 2.0),
              doc="relative brightness change from the first to the last scan line (charging)"),
    ParamSpec("tail_strength", "float", 0.06, 0.0, 0.15, limits=(0.0, 0.8),
              doc="depth of the dark tail after bright features along the scan"),
    ParamSpec("tail_px", "float", 6.0, 2.0, 14.0, limits=(0.5, 100.0), unit="px",
              doc="decay length of the dark tail"),
    ParamSpec("bg_amplitude", "float", 0.03, 0.0, 0.08, limits=(0.0, 0.8),
              doc="smooth background non-uniformity, relative amplitude"),
    ParamSpec("auto_levels", "bool", 0.85,
              doc="the operator set brightness/contrast to the signal's 1-99 % range (else raw levels)"),
    ParamSpec("brightness", "float", -0.03, -0.12, 0.05, limits=(-1.0, 1.0),
              doc="display offset (fraction of full scale)"),
    ParamSpec("contrast", "float", 0.7, 0.45, 0.9, limits=(0.05, 10.0),
              doc="display gain around mid-grey (of the 1-99 % range with auto_levels, else of 0..1)"),
    ParamSpec("gamma", "float", 1.05, 0.85, 1.3, limits=(0.2, 5.0),
              doc="display gamma (output = input ** gamma)"),
])


# -- building blocks (pure functions on float32 arrays) -------------------------------------------

def yield_map(scene: Scene, p: dict) -> np.ndarray:
    """Flat-surface SE yield per pixel, float32."""
    lut = np.zeros(N_MATERIALS, np.float32)
    others = np.array([SE_YIELD[k] for k in SE_YIELD if k not in (LINE, SUBSTRATE)], np.float32)
    mean = float(others.mean())
    for k, v in SE_YIELD.items():
        lut[k] = mean + (v - mean) * p["material_contrast"]
    lut[LINE] = p["top_level"]
    lut[SUBSTRATE] = p["substrate_level"]
    # cv2.LUT: the same table look-up as lut[material], several times faster than fancy indexing
    y = cv2.LUT(scene.material, np.pad(lut, (0, 256 - N_MATERIALS)))
    if scene.se_offset is not None:
        y += scene.se_offset
    return y


def edge_signal(height: np.ndarray, pixel_nm: float, width_px: float, asymmetry: float = 0.0) -> np.ndarray:
    """Edge-effect signal in [0, ~1]: ``1 - cos(tilt)`` of the surface, spread over ``width_px``.

    Normalised so that a sharp vertical step gives a peak near 1 whatever the spread.
    """
    # one compiled pass (Sobel slope, 1 - cos, asymmetry) instead of two Sobels and ~8 NumPy passes
    e = kernels.edge_tilt(np.ascontiguousarray(height, np.float32), np.float32(1.0 / (8.0 * pixel_nm)),
                          np.float32(asymmetry))
    if width_px > 0.05:
        e = portable.gaussian_blur(e, width_px, border=portable.REFLECT)
        e *= max(1.0, math.sqrt(2.0 * math.pi) * width_px / 2.0)
    return e


def psf_kernel(sigma: float, ratio: float = 1.0, angle_deg: float = 0.0) -> np.ndarray:
    """Normalised (possibly astigmatic) Gaussian kernel; long axis ``sigma * sqrt(ratio)``."""
    s1, s2 = sigma * math.sqrt(ratio), sigma / math.sqrt(ratio)
    r = int(math.ceil(3.0 * max(s1, 0.3)))
    ax = np.arange(-r, r + 1, dtype=np.float64)  # float64, rounded once at the end (:mod:`.portable`)
    xx, yy = np.meshgrid(ax, ax)
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / max(s1, 1e-3)) ** 2 + (v / max(s2, 1e-3)) ** 2))
    k = (k / k.sum()).astype(np.float32)
    return (k + k[::-1, ::-1]) * np.float32(0.5)  # exactly point-symmetric, as it is in exact arithmetic


def apply_psf(img: np.ndarray, sigma: float, ratio: float = 1.0, angle_deg: float = 0.0,
              tol: float = 1e-4) -> np.ndarray:
    """Blur by the beam point-spread: the Gaussian of :func:`psf_kernel`.

    Separable (one Gaussian pass) when isotropic or when the long axis lies along x or y. Otherwise
    the kernel is split by SVD into a sum of separable terms, kept until the dropped energy is
    below ``tol`` (2-3 terms for the astigmatism of real beams; equal to the 2-D convolution
    within ~0.3 % of the signal); kernels of up to 9 x 9 that need more than one term are
    convolved directly instead, which is cheaper there.
    """
    if sigma <= 0.05:
        return img
    if ratio <= 1.001:
        return portable.gaussian_blur(img, sigma, border=portable.REFLECT)
    s1, s2 = sigma * math.sqrt(ratio), sigma / math.sqrt(ratio)
    a = float(angle_deg) % 180.0
    if min(a, abs(a - 90.0), 180.0 - a) < 0.5:
        sx, sy = (s1, s2) if min(a, 180.0 - a) < 0.5 else (s2, s1)
        return portable.gaussian_blur(img, sx, sy, border=portable.REFLECT)
    k = psf_kernel(sigma, ratio, angle_deg)
    u, sv, vt = np.linalg.svd(k.astype(np.float64))
    energy = np.cumsum(sv ** 2) / float((sv ** 2).sum())
    rank = int(np.searchsorted(energy, 1.0 - tol)) + 1
    if rank > 1 and k.size <= 81:  # up to 9 x 9, one direct pass costs less than 2-3 separable ones
        return portable.filter2d_symmetric(img, k, portable.REFLECT)
    out = None
    for i in range(min(rank, len(sv))):
        kx = (vt[i] * sv[i]).astype(np.float32)
        ky = u[:, i].astype(np.float32)
        term = portable.sep_filter(img, kx, ky, portable.REFLECT)
        out = term if out is None else out + term
    return out


def scan_shift(h: int, jitter_px: float, drift_px: float, rng: np.random.Generator) -> np.ndarray:
    """Where each of ``h`` scan lines really landed along x: line-to-line jitter plus a smooth drift.

    Returns float32 shifts in pixels, one per row.
    """
    jit = rng.standard_normal(h).astype(np.float32) * np.float32(jitter_px)
    # slow drift: a random smooth curve (two random low-frequency sines) with peak ~drift_px
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)
    a = rng.uniform(-1.0, 1.0, 2).astype(np.float32)
    ph = rng.uniform(0.0, 2.0 * np.pi, 2).astype(np.float32)
    drift = (a[0] * portable.sin(np.pi * t + ph[0]) + 0.5 * a[1] * portable.sin(2.0 * np.pi * t + ph[1])) \
        * np.float32(drift_px)
    return (jit + drift).astype(np.float32)


def scan_distort(img: np.ndarray, jitter_px: float, drift_px: float, rng: np.random.Generator) -> np.ndarray:
    """Shift each row by line-to-line jitter plus a smooth drift (linear resampling, borders reflected)."""
    shift = scan_shift(img.shape[0], jitter_px, drift_px, rng)
    return kernels.scan_rows(np.ascontiguousarray(img, np.float32), shift, np.ones(img.shape[0], np.float32))[0]


def dark_tail(img: np.ndarray, strength: float, length_px: float, mean: float | None = None) -> np.ndarray:
    """Subtract a causal exponential tail (along +x, decay length ``length_px``) of the signal above the mean.

    ``mean``: the frame's mean if already known (:func:`render` gets it from the scan pass).
    """
    if strength <= 0:
        return img
    img = np.ascontiguousarray(img, np.float32)
    if mean is None:
        mean = kernels.scan_rows(img, np.zeros(img.shape[0], np.float32), np.ones(img.shape[0], np.float32))[1]
    return kernels.dark_tail_rows(img, np.float32(mean), np.float32(strength), np.float32(math.exp(-1.0 / length_px)))


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, order: int = 4) -> np.ndarray:
    """A smooth random field, zero mean, peak |value| 1: random low-order cosine modes.

    ``F = Cy @ A @ Cx.T`` with cosine bases of ``order`` modes per axis and coefficients that
    fall with frequency; one small matrix product instead of a resampling pass.

    Examples
    --------
    >>> f = smooth_field((32, 48), np.random.default_rng(0))
    >>> f.shape, f.dtype, float(np.abs(f).max())
    ((32, 48), dtype('float32'), 1.0)
    """
    h, w = shape
    kk = np.arange(order, dtype=np.float32)
    a = rng.standard_normal((order, order)).astype(np.float32) / (1.0 + kk[:, None] + kk[None, :])
    a[0, 0] = 0.0
    cy, cx = _cosine_basis(h, order), _cosine_basis(w, order)
    # float32 products summed term by term in a fixed order (one compiled pass), not through ``@``:
    # BLAS picks kernels, blocking and threads at run time, so its sums may differ between set-ups
    # and thread counts; same seed must give the same bytes. (float32: the field scales a <= 8 %
    # background, far above float32's resolution.)
    f = kernels.cosine_field(cy, a, cx)
    peak = max(float(f.max()), -float(f.min()))  # == np.abs(f).max(), without the temporary
    f *= np.float32(1.0 / max(peak, 1e-6))
    return f


@functools.lru_cache(maxsize=16)
def _cosine_basis(n: int, order: int) -> np.ndarray:
    """``cos(pi (i + 0.5) / n * k)`` for ``i < n``, ``k < order``: float32, read-only.

    The same for every image of a size, so computed once per process.
    """
    kk = np.arange(order, dtype=np.float32)
    c = portable.cos(np.pi * (np.arange(n, dtype=np.float32)[:, None] + 0.5) / n * kk[None, :])
    c.flags.writeable = False
    return c


def add_noise(img: np.ndarray, dose_total: float, detector_sigma: float, smear_px: float,
              rng: np.random.Generator) -> np.ndarray:
    """Shot + detector noise of the right variance, correlated along the scan by ``smear_px``.

    Variance per pixel: ``signal / dose_total`` (Poisson counts of ``dose_total * signal`` electrons,
    rescaled) plus ``detector_sigma ** 2``. The unit noise is the sum of two 16-bit uniforms per
    pixel, cut from the generator's raw 64-bit output (four per word: a quarter of the cost of two
    float32 uniforms, a tenth of a Gaussian draw), centred and scaled: triangular, with mean 0 and
    variance 1 exact to 1 part in 4e9, Gaussian to the eye once smeared along the scan.
    """
    n = int(img.size)
    # little-endian 16-bit views of the words: the same numbers on every platform semgen runs on
    u = rng.bit_generator.random_raw((n + 1) // 2).view("<u2")
    if smear_px > 0.05:
        k = max(3, int(math.ceil(3 * smear_px)) * 2 + 1)
        kern = cv2.getGaussianKernel(k, smear_px, cv2.CV_32F).ravel()
        kern /= np.float32(math.sqrt(float((kern * kern).sum())))  # keep unit variance
    else:
        kern = np.ones(1, np.float32)
    return kernels.shot_noise(np.ascontiguousarray(img, np.float32), u, kern, np.float32(1.0 / dose_total),
                              np.float32(detector_sigma ** 2))


def signal_levels(img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> tuple[float, float]:
    """The ``lo_pct`` / ``hi_pct`` percentiles of an image (on a 1-in-9 subsample, for speed)."""
    sub = img[1::3, 1::3].ravel() if min(img.shape) > 1 else img.ravel()
    # np.percentile's linear interpolation between order statistics, from one np.partition (exact
    # selection: the same values on every machine) instead of its slower general path
    n = sub.size
    pos = [q / 100.0 * (n - 1) for q in (lo_pct, hi_pct)]
    part = np.partition(sub, sorted({min(int(q) + d, n - 1) for q in pos for d in (0, 1)}))

    def at(q: float) -> float:
        i = int(q)
        a, b = float(part[i]), float(part[min(i + 1, n - 1)])
        return a + (b - a) * (q - i)

    lo, hi = at(pos[0]), at(pos[1])
    if hi - lo < 1e-3:
        lo, hi = lo - 0.5e-3, hi + 0.5e-3
    return float(lo), float(hi)


#: steps over the displayed range 0..1 of :func:`to_uint8`'s gamma table (16 per output grey level)
_GAMMA_STEPS = 4096


def to_uint8(img: np.ndarray, brightness: float, contrast: float, gamma: float,
             levels: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Display mapping and 8-bit clipping with rounding.

    ``levels = (lo, hi)`` is the signal range mapped to full scale at ``contrast = 1``; the output is
    ``clip((img - mid) / (hi - lo) * contrast + 0.5 + brightness) ** gamma`` with ``mid = (lo + hi) / 2``
    (for ``gamma != 1``, of that value rounded to the nearest of 4096 steps over 0..1).

    Examples
    --------
    >>> to_uint8(np.array([[-1.0, 0.0, 0.5, 1.0]], np.float32), 0.0, 1.0, 2.0).tolist()
    [[0, 0, 64, 255]]
    """
    lo, hi = levels
    img = np.ascontiguousarray(img, np.float32)
    if abs(gamma - 1.0) > 1e-6:
        # np.power over the frame cost more than the rest of the mapping: the signal is put on a grid of
        # _GAMMA_STEPS steps over 0..1 (rounded; a step is 1/16 grey level at gamma 1) and each step's
        # 8-bit value looked up in a table computed with the same formula.
        n = _GAMMA_STEPS
        scale = contrast / (hi - lo) * n
        offset = np.float32((0.5 + brightness) * n - (lo + hi) / 2.0 * scale + 0.5)
        # in float64: NumPy's float32 power takes another code path on a CPU with AVX-512 than on one
        # without, whose results differ in the last bit and so, now and then, in a table entry; float64
        # results differ (if at all) by 1e-16, which no entry's rounding is that close to
        lut = np.power(np.arange(n + 1, dtype=np.float64) / n, float(gamma)) * 255.0 + 0.5
        return kernels.display_table(img, np.float32(scale), offset, lut.astype(np.uint8))
    # one compiled pass: the same float32 operations, in the same order, as the plain expression
    return kernels.display_linear(img, np.float32((lo + hi) / 2.0), np.float32(contrast / (hi - lo)),
                                  np.float32(0.5 + brightness))


def render(scene: Scene, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Image a scene.

    Parameters
    ----------
    scene : Scene
    p : dict
        Imaging parameters (the names of :data:`IMAGING`; extra keys are ignored).
    rng : numpy.random.Generator
        Used for the noise and scan artefacts (after the scene has been built).

    Returns
    -------
    ndarray, uint8, (H, W)
    """
    y = yield_map(scene, p)
    kernels.add_scaled(y, np.float32(p["edge_gain"]),
                       edge_signal(scene.height, scene.pixel_nm, p["edge_width_px"], p["edge_asymmetry"]))
    y = apply_psf(y, p["psf_sigma_px"], p["astig_ratio"], p["astig_angle_deg"])
    h = y.shape[0]
    shift = scan_shift(h, p["jitter_px"], p["drift_px"], rng)
    # charging: the brightness drifts from the first to the last scan line, in the same pass as the shift
    gain = np.float32(1.0) + np.float32(p["charging"]) * np.linspace(0.0, 1.0, h, dtype=np.float32)
    y, mean = kernels.scan_rows(np.ascontiguousarray(y, np.float32), shift, gain)
    y = dark_tail(y, p["tail_strength"], p["tail_px"], mean)
    y = add_noise(y, p["dose"] * p["frames"], p["detector_sigma"], p["noise_smear_px"], rng)
    if p["bg_amplitude"] > 0:
        kernels.scale_by_field(y, smooth_field(y.shape, rng), np.float32(p["bg_amplitude"]))
    levels = signal_levels(y) if p.get("auto_levels", False) else (0.0, 1.0)
    return to_uint8(y, p["brightness"], p["contrast"], p["gamma"], levels)
