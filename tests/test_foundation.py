"""Taxonomy, seeding, image I/O, torchvision compatibility."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from semgen import taxonomy
from semgen.errors import ImageReadError, UnknownClassError
from semgen.imageio import decode_png, encode_png, read_gray, sha256_bytes
from semgen.seeding import image_seed


def test_canonical_and_aliases():
    assert taxonomy.canonical("Bridge") == "bridge"
    assert taxonomy.canonical("short") == "bridge"
    assert taxonomy.canonical("gap") == "open"
    assert taxonomy.canonical("malformed_via") == "via"
    assert taxonomy.canonical("foreign-material") == "particle"
    assert taxonomy.canonical("normal") == "clean"
    assert set(taxonomy.ALIASES.values()) <= set(taxonomy.CLASSES)


def test_unknown_class_names_valid_ones_and_closest():
    with pytest.raises(UnknownClassError) as e:
        taxonomy.canonical("brige")
    msg = str(e.value)
    assert "Did you mean 'bridge'" in msg
    for c in taxonomy.CLASSES:
        assert c in msg


def test_class_phrases_come_from_the_taxonomy():
    """One table: captions name classes with the taxonomy's phrases, the words trained models know."""
    from semgen.generators.diffusion import captions

    assert captions.CLASS_PHRASES is taxonomy.CLASS_PHRASES
    assert list(taxonomy.CLASS_PHRASES) == list(taxonomy.CLASSES) == list(taxonomy.DESCRIPTIONS)
    assert taxonomy.CLASS_PHRASES == {
        "clean": "clean pattern, no defect", "bridge": "bridge defect", "open": "open defect, broken line",
        "ler": "line edge roughness defect", "via": "via defect", "crack": "crack defect",
        "particle": "particle defect", "cmp": "CMP defect", "scratch": "scratch defect", "other": "other defect"}


def test_image_seed_depends_on_each_part_and_is_stable():
    a = image_seed(0, "bridge", 5)
    assert a == image_seed(0, "bridge", 5)
    assert len({a, image_seed(1, "bridge", 5), image_seed(0, "open", 5), image_seed(0, "bridge", 6)}) == 4


def test_image_seeds_are_signed_64_bit():
    # Arrow / pandas / JSON readers keep a seed exact only below 2^63 (above: float64)
    seeds = [image_seed(m, c, i) for m in (0, 7, 2 ** 64 - 1) for c in taxonomy.CLASSES for i in range(40)]
    assert all(isinstance(s, int) and 0 <= s < 2 ** 63 for s in seeds)
    assert len(set(seeds)) == len(seeds) and max(seeds) >= 2 ** 62  # the whole range is used


def test_png_roundtrip_is_deterministic():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (33, 47), dtype=np.uint8)
    a, b = encode_png(img), encode_png(img.copy())
    assert a == b and sha256_bytes(a) == sha256_bytes(b)
    np.testing.assert_array_equal(decode_png(a), img)
    mask = rng.integers(0, 600, (8, 8)).astype(np.uint16)
    np.testing.assert_array_equal(decode_png(encode_png(mask)), mask)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_read_gray_converts_modes(tmp_path, mode):
    img = Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
    p = tmp_path / "x.png"
    img.save(p)
    arr = read_gray(p)
    assert arr.dtype == np.uint8 and arr.shape == (10, 20)


def test_read_gray_16bit_scaled_or_refused(tmp_path):
    arr16 = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    p = tmp_path / "x.tif"
    Image.fromarray(arr16).save(p)
    out = read_gray(p)
    assert out.min() == 0 and out.max() == 255
    with pytest.raises(ImageReadError) as e:
        read_gray(p, allow_16bit=False)
    assert e.value.reason == "high_bit_depth"


def test_read_gray_classifies_failures(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image at all")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, "PNG")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cases = {tmp_path / "nope.png": "missing", empty: "empty_file", text: "not_an_image", trunc: "truncated"}
    for path, reason in cases.items():
        with pytest.raises(ImageReadError) as e:
            read_gray(path)
        assert e.value.reason == reason, (path, e.value)
    big = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(big)
    with pytest.raises(ImageReadError) as e:
        read_gray(big, max_pixels=100 * 100)
    assert e.value.reason == "too_large"


def test_import_timm_works_after_compat_step():
    # a fresh interpreter: the compatibility step must come before timm's first import
    code = (
        "from semgen.compat import import_timm\n"
        "timm = import_timm()\n"
        "m = timm.create_model('mobilenetv3_small_050', pretrained=False, in_chans=1, num_classes=3)\n"
        "import torch\n"
        "print(tuple(m(torch.zeros(1, 1, 64, 64)).shape))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(1, 3)"


def test_accelerate_launcher_imports_after_compat_step():
    # `accelerate launch` imports timm (so torchvision) before any user code; semgen.launch does not
    out = subprocess.run([sys.executable, "-m", "semgen.launch", "--help"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "python -m semgen.launch" in out.stdout and "--num_processes" in out.stdout
