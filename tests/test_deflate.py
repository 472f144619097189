"""semgen's own deflate encoder: valid zlib streams, bytes that depend on the input alone."""

from __future__ import annotations

import hashlib
import io
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from semgen import deflate
from semgen.generators.procedural.generation import generate_one
from semgen.imageio import encode_png


def _cases():
    rng = np.random.default_rng(0)
    yield b""
    yield b"a"
    yield b"ab" * 3
    yield bytes(259)  # one run past the longest match (258)
    yield bytes(200_000)  # runs across many matches
    yield bytes(range(256)) * 4  # every literal
    yield rng.integers(0, 256, 70_000, dtype=np.uint8).tobytes()  # incompressible: stored blocks
    yield rng.integers(0, 5, 100_000, dtype=np.uint8).tobytes()
    yield (rng.integers(0, 2, 30_000, dtype=np.uint8) * 255).tobytes()
    # Fibonacci-like symbol counts: an unlimited Huffman code would need more than 15 bits
    fib = [1, 1]
    while len(fib) < 26:
        fib.append(fib[-1] + fib[-2])
    yield b"".join(bytes([2 * i + 1]) * n for i, n in enumerate(fib))[::-1]


@pytest.mark.parametrize("data", list(_cases()), ids=lambda d: f"{len(d)}B")
def test_every_stream_inflates_to_its_input(data):
    out = deflate.compress(data)
    assert zlib.decompress(out) == data
    assert zlib.decompress(deflate.compress(data, store=True)) == data
    assert len(out) <= len(data) + 5 * (len(data) // 65535 + 1) + 6  # never worse than storing


def test_code_lengths_are_limited_and_complete():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    freq = np.array(fib + [0] * 5, np.int64)
    for limit in (7, 15):
        lengths = deflate._code_lengths(freq, limit)
        used = lengths[freq > 0]
        assert used.max() <= limit and (lengths[freq == 0] == 0).all()
        assert sum(2.0 ** -used) == pytest.approx(1.0)  # a complete prefix code (Kraft)
    assert list(deflate._code_lengths(np.array([0, 5, 0], np.int64), 15)) == [0, 1, 0]


def test_the_bytes_are_pinned():
    """The same input gives these bytes on every machine and in every later semgen: changing the
    encoder changes every file's sha256 and needs a generator version bump."""
    data = bytes((i * i // 7 + (i >> 5)) % 251 for i in range(50_000)) + bytes(3000)
    assert hashlib.sha256(deflate.compress(data)).hexdigest() == PINNED


PINNED = "709169d64c2f8a2a8769f5869c88aa45ce910df2ad9d4e4d682a9c6b7d5e50e2"


def test_png_of_a_generated_image_decodes_everywhere_and_is_as_small_as_zlib():
    img = generate_one("ler", 7, 128).image
    png = encode_png(img)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), img)
    assert np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED), img)
    h, w = img.shape
    raw = np.empty((h, w + 1), np.uint8)
    raw[:, 0] = 2
    raw[0, 1:] = img[0]
    np.subtract(img[1:], img[:-1], out=raw[1:, 1:])
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    zlen = len(z.compress(raw.tobytes()) + z.flush())
    assert len(deflate.compress(raw.tobytes())) < 1.02 * zlen
