"""A small, fast, deterministic PNG encoder for grayscale arrays.

SEM images are mostly noise, which deflate cannot shrink much, so OpenCV's default
(adaptive filters + full deflate) spends ~2 ms on a 256 x 256 image to save a few percent. Here
every row uses the PNG "Up" filter (one vectorised subtraction) and zlib's run-length strategy,
about 4x faster for a file 0-5 % larger; masks (long zero runs) shrink to a few hundred bytes.
The bytes depend only on the array (and zlib), so the same image gives the same sha256.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIG = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_gray_png(image: np.ndarray, level: int = 1) -> bytes:
    """Encode a 2-D uint8 or uint16 array as a grayscale PNG.

    Parameters
    ----------
    image : ndarray, (H, W), uint8 or uint16
    level : int
        zlib level (1 is fast; the run-length strategy makes higher levels gain little).
    """
    a = np.asarray(image)
    if a.ndim != 2 or a.dtype not in (np.uint8, np.uint16) or a.size == 0:
        raise ValueError(f"encode_gray_png wants a non-empty 2-D uint8/uint16 array, got {a.dtype} {a.shape}")
    h, w = a.shape
    depth = 8 if a.dtype == np.uint8 else 16
    rowb = a.astype(">u2").view(np.uint8).reshape(h, 2 * w) if depth == 16 else a
    raw = np.empty((h, rowb.shape[1] + 1), np.uint8)
    raw[:, 0] = 2  # filter type "Up" (the first row's "previous row" is zeros)
    raw[0, 1:] = rowb[0]
    np.subtract(rowb[1:], rowb[:-1], out=raw[1:, 1:])  # uint8 arithmetic wraps mod 256, as PNG wants
    comp = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = comp.compress(raw.tobytes()) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
    return _SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
