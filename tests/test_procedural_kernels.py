"""The imaging model's compiled kernels (issue 16) against plain NumPy / OpenCV versions of the same steps.

Where a kernel does the same float32 operations in the same order as the plain version, the test
asks for equal bytes; where the order differs (OpenCV's Sobel), for agreement to float32 rounding.
The last test compiles the kernels for a plain x86-64 CPU (SSE2, no FMA) in a fresh process and
asks for the same image bytes as this machine's build: the bytes must not depend on the vector
width the kernels were compiled for.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO
from semgen.generators.procedural import imaging, kernels
from semgen.generators.procedural.generation import generate_one
from semgen.generators.procedural.registry import list_generators
from semgen.seeding import image_seed

f32 = np.float32


def _rand(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).random(shape, dtype=np.float32) * f32(scale)).astype(np.float32)


@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (17, 9), (64, 48)])
@pytest.mark.parametrize("asym", [0.0, 0.3, -0.5])
def test_edge_tilt_is_one_minus_cos_of_the_sobel_slope(shape, asym):
    h = _rand(shape, 1, 40.0)
    scale = 1.0 / (8.0 * 2.0)
    gx = cv2.Sobel(h, cv2.CV_64F, 1, 0, ksize=3) * scale  # BORDER_REFLECT_101, as the kernel
    gy = cv2.Sobel(h, cv2.CV_64F, 0, 1, ksize=3) * scale
    t = np.hypot(gx, gy)
    want = 1.0 - 1.0 / np.sqrt(t * t + 1.0)
    if asym:
        want *= 1.0 - asym * gx / (t + 1e-6)
    got = kernels.edge_tilt(h, f32(scale), f32(asym))
    assert got.dtype == np.float32 and got.shape == shape
    assert np.abs(got - want).max() < 2e-6


@pytest.mark.parametrize("w", [1, 2, 7, 40])
def test_scan_rows_resamples_each_row_with_reflected_borders(w):
    h = 9
    img = _rand((h, w), 2)
    shift = np.array([0.0, 1.0, -1.0, 0.25, -0.75, 3.5, -2.25, 2 * w + 0.5, -3 * w - 0.4], np.float32)
    gain = np.linspace(0.5, 1.5, h, dtype=np.float32)
    out, mean = kernels.scan_rows(img, shift, gain)
    padded = np.pad(img, ((0, 0), (8 * w, 8 * w)), mode="symmetric")  # cba|abc, as BORDER_REFLECT
    for i in range(h):
        k = int(math.floor(shift[i]))
        f = shift[i] - f32(k)
        a = padded[i, 8 * w + k:8 * w + k + w]
        b = padded[i, 8 * w + k + 1:8 * w + k + 1 + w]
        want = (a * (f32(1) - f) + b * f) * gain[i]  # the same float32 operations, in the same order
        assert np.array_equal(out[i], want), i
    assert mean == pytest.approx(float(out.astype(np.float64).mean()), rel=1e-12)
    same, _ = kernels.scan_rows(img, np.zeros(h, np.float32), np.ones(h, np.float32))
    assert np.array_equal(same, img)  # no shift, no gain: the image itself, bit for bit


def test_dark_tail_rows_is_the_exponential_recursion():
    img = _rand((13, 30), 3)  # 13 rows: the kernel's blocks of 8 and a remainder
    mean, strength, decay = f32(img.mean()), f32(0.3), f32(math.exp(-1 / 4.0))
    want = np.empty_like(img)
    for i in range(img.shape[0]):
        t = max(img[i, 0] - mean, f32(0))
        for x in range(img.shape[1]):
            want[i, x] = img[i, x] - strength * t
            t = decay * t + (f32(1) - decay) * max(img[i, x] - mean, f32(0))
    assert np.array_equal(kernels.dark_tail_rows(img, mean, strength, decay), want)


@pytest.mark.parametrize("taps", [1, 3, 7])
def test_shot_noise_is_signal_plus_scaled_smeared_uniform_noise(taps):
    h, w = 6, 11
    img = _rand((h, w), 4) - f32(0.1)  # a few negative values: no shot noise there
    u = np.random.default_rng(5).bit_generator.random_raw(h * w).view("<u2")
    kern = np.exp(-0.5 * ((np.arange(taps) - taps // 2) / 1.2) ** 2).astype(np.float32)
    kern /= np.float32(math.sqrt(float((kern * kern).sum())))
    inv_dose, det_var = f32(1 / 300.0), f32(1e-5)
    n = h * w
    z0 = (((u[:n].astype(np.float32) + u[n:2 * n].astype(np.float32)) - f32(65535)) * f32(math.sqrt(6.0) / 65536.0))
    z0 = z0.reshape(h, w)
    r = taps // 2
    zp = np.pad(z0, ((0, 0), (r, r)), mode="symmetric")
    z = kern[0] * zp[:, :w]
    for k in range(1, taps):
        z = z + kern[k] * zp[:, k:k + w]
    want = img + np.sqrt(np.maximum(img, f32(0)) * inv_dose + det_var) * z
    assert np.array_equal(kernels.shot_noise(img, u, kern, inv_dose, det_var), want)


def test_unit_noise_of_the_kernel_has_unit_variance():
    img = np.zeros((256, 256), np.float32)
    u = np.random.default_rng(0).bit_generator.random_raw(256 * 256).view("<u2")
    z = kernels.shot_noise(img, u, np.ones(1, np.float32), f32(0), f32(1.0))  # detector noise of sigma 1
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1.0) < 0.02


def test_kernels_refuse_other_dtypes_and_imaging_converts():
    with pytest.raises(TypeError):
        kernels.edge_tilt(np.zeros((4, 4)), f32(1), f32(0))  # float64: no silent float64 variant
    img = np.zeros((8, 8))
    img[:, 3] = 1.0
    tail = imaging.dark_tail(img, 0.5, 2.0)  # the building blocks take any real array
    assert tail.dtype == np.float32 and tail[:, 5].mean() < 0


def test_signal_levels_are_numpys_linear_percentiles():
    for n in (8, 31, 256):  # (a 1-value subsample is widened by 1e-3 on purpose)
        img = _rand((n, n), n)
        sub = img[1::3, 1::3].astype(np.float64)
        lo, hi = imaging.signal_levels(img)
        assert (lo, hi) == pytest.approx(tuple(np.percentile(sub, [1, 99])), abs=1e-7)


_CHILD = (
    "import hashlib, json, sys\n"
    "import numpy as np\n"
    "from semgen.generators.procedural.generation import generate_one\n"
    "from semgen.generators.procedural.imaging import to_uint8\n"
    "jobs = json.loads(sys.argv[1])\n"
    "out = [hashlib.sha256(generate_one(n, s, z).image.tobytes()).hexdigest() for n, s, z in jobs]\n"
    "ramp = np.linspace(-0.1, 1.1, 40000, dtype=np.float32)[None]\n"
    "out.append(hashlib.sha256(b''.join(to_uint8(ramp, 0.0, 1.0, g).tobytes() for g in np.linspace(0.6, 1.6, 41)))"
    ".hexdigest())\n"
    "print(json.dumps(out))\n"
)


def _hashes_in_a_fresh_process(jobs, extra_env: dict, tmp_path) -> list[str]:
    env = dict(os.environ, **extra_env, OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(jobs)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _hashes_here(jobs) -> list[str]:
    """What :data:`_CHILD` prints, made in this process: the images' sha256s, then the display
    mapping's over a ramp of signals at 41 gammas (each table entry once, the sensitive check)."""
    out = [hashlib.sha256(generate_one(n, s, z).image.tobytes()).hexdigest() for n, s, z in jobs]
    ramp = np.linspace(-0.1, 1.1, 40000, dtype=np.float32)[None]
    out.append(hashlib.sha256(b"".join(imaging.to_uint8(ramp, 0.0, 1.0, g).tobytes()
                                       for g in np.linspace(0.6, 1.6, 41))).hexdigest())
    return out


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="NUMBA_CPU_NAME=generic is x86-64's baseline")
def test_image_bytes_do_not_depend_on_the_cpu_the_kernels_were_compiled_for(tmp_path):
    jobs = [[name, image_seed(5, name, i), 64] for name in ("ler", "bridge", "particle", "cmp") for i in range(2)]
    got = _hashes_in_a_fresh_process(jobs, {"NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
                                     tmp_path)
    assert got == _hashes_here(jobs)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="emulates an x86-64 CPU")
@pytest.mark.parametrize("cpu", ["avx2", "x86-64-v2"])
def test_every_class_makes_the_same_bytes_on_an_older_cpu(cpu, tmp_path):
    """NumPy, OpenCV and numba told to use no AVX-512 (``avx2``: most laptops and desktops), or
    nothing past SSE4.2 (``x86-64-v2``), make the same images as this machine. Where this machine
    lacks the instruction sets the runs take the same code paths; on one with them (the development
    machine), ``avx2`` found the gamma table's float32 power, and ``x86-64-v2`` OpenCV's float
    filters and NumPy's float32 sin, exp and tanh (18 % of images differed, bench/bench_determinism.py
    --cpus native avx2 x86-64-v2, before :mod:`semgen.generators.procedural.portable`)."""
    from bench_scripts import load_bench

    env = load_bench("bench_determinism").cpu_env(cpu, str(tmp_path / "numba"))
    jobs = [[name, image_seed(5, name, i), 96] for name in list_generators() for i in range(3)]
    got = _hashes_in_a_fresh_process(jobs, env, tmp_path)
    assert got == _hashes_here(jobs)
