"""Reading and writing 8-bit grayscale images with explicit, classified failures."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .errors import ImageReadError

_PNG_SIG = b"\x89PNG\r\n\x1a\n"

#: Largest image accepted by :func:`read_gray`, in pixels (a decompression-bomb guard).
MAX_PIXELS = 8192 * 8192


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, compression: int = 1) -> bytes:
    """Encode a 2-D uint8 or uint16 array as a grayscale PNG, deterministically.

    SEM images are mostly noise, which deflate cannot shrink much: OpenCV's adaptive filters and
    full deflate spend ~2 ms on a 256 x 256 image to save a few percent. Every row here uses the
    PNG "Up" filter (one vectorised subtraction), then semgen's own deflate encoder
    (:func:`semgen.deflate.compress`: literals and runs, one Huffman block), as small as zlib's
    run-length strategy and about twice as fast; masks (long zero runs) shrink to a few hundred
    bytes. The bytes depend only on the array, not on the zlib that Python was built with, so the
    same image has the same sha256 on every machine.

    Parameters
    ----------
    image : ndarray, shape (H, W), dtype uint8 or uint16
    compression : int
        0 stores the pixels uncompressed (fastest, largest); any other value compresses.
    """
    a = np.asarray(image)
    if a.ndim != 2 or a.dtype not in (np.uint8, np.uint16) or a.size == 0:
        raise ValueError(f"encode_png wants a non-empty 2-D uint8/uint16 array, got {a.dtype} {a.shape}")
    h, w = a.shape
    depth = 8 if a.dtype == np.uint8 else 16
    rowb = a.astype(">u2").view(np.uint8).reshape(h, 2 * w) if depth == 16 else a
    raw = np.empty((h, rowb.shape[1] + 1), np.uint8)
    raw[:, 0] = 2  # filter type "Up" (the first row's "previous row" is zeros)
    raw[0, 1:] = rowb[0]
    np.subtract(rowb[1:], rowb[:-1], out=raw[1:, 1:])  # uint8 arithmetic wraps mod 256, as PNG wants
    # imported here: only writers pay for loading the compiled encoder (numba), not every reader
    from .deflate import compress

    data = compress(raw.tobytes(), store=int(compression) == 0)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
    return _PNG_SIG + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes written by :func:`encode_png` (any depth, unchanged)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("not a decodable PNG")
    return arr


def _decode_plain_png(data: bytes) -> np.ndarray | None:
    """An 8-bit grey PNG laid out as :func:`encode_png` writes it, decoded here; None for any other file.

    That layout (IHDR, IDAT chunks, IEND; every CRC right; rows all filtered "Up" or all "None")
    decodes with one inflate and one cumulative sum, 2-3x faster than PIL, to the pixels the PNG
    specification defines. Anything else, a damaged file included, returns None and goes to PIL,
    so what is accepted or refused, and why, does not change.
    """
    if len(data) < 57 or not data.startswith(_PNG_SIG) or data[12:16] != b"IHDR":
        return None
    w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if (depth, colour, comp, filt, interlace) != (8, 0, 0, 0, 0) or w == 0 or h == 0:
        return None
    idat, pos = [], 8
    while pos + 12 <= len(data):
        (n,), tag = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if len(body) != n or data[pos + 8 + n:pos + 12 + n] != struct.pack(">I", zlib.crc32(tag + body)):
            return None
        if tag == b"IEND":
            break
        if tag == b"IDAT":
            idat.append(body)
        elif tag != b"IHDR" or pos != 8:
            return None  # any other chunk: PIL's business
        pos += 12 + n
    else:
        return None  # no IEND
    if pos + 12 != len(data) or not idat:
        return None
    try:
        d = zlib.decompressobj()
        raw = d.decompress(b"".join(idat), h * (w + 1) + 1)
    except zlib.error:
        return None
    if len(raw) != h * (w + 1) or not d.eof or d.unused_data or d.unconsumed_tail:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)
    kind = rows[:, 0]
    if (kind == 2).all():
        # "Up": each row adds the one above, so the pixels are the column-wise running sums of
        # the rows (mod 256). Summed by doubling: log2(H) whole-image adds, 3x faster than
        # np.add.accumulate's row-by-row loop; numpy reads overlapping operands as they were.
        img = rows[:, 1:].copy()
        k = 1
        while k < h:
            np.add(img[k:], img[:-k], out=img[k:])
            k *= 2
        return img
    if (kind == 0).all():
        return rows[:, 1:].copy()
    return None


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def to_uint8_gray(img: Image.Image, *, path="<image>", allow_16bit: bool = True) -> np.ndarray:
    """Convert a PIL image of any common mode to a 2-D uint8 array.

    Colour, palette and alpha images become luminance (alpha composited on black is *not* done:
    alpha is dropped, as SEM exports use it only for padding). 16-bit images are scaled by their
    full range when ``allow_16bit``; otherwise they are an error.
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        if not allow_16bit:
            raise ImageReadError(path, "high_bit_depth", f"mode {mode}")
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return np.clip((arr - lo) * scale + 0.5, 0, 255).astype(np.uint8)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode != "L":
        img = img.convert("L")
    return np.array(img, dtype=np.uint8)


def read_gray(path: str | os.PathLike, *, allow_16bit: bool = True, max_pixels: int = MAX_PIXELS,
              data: bytes | None = None) -> np.ndarray:
    """Read an image file as a 2-D uint8 grayscale array.

    ``data``, if given, is the file's content already read (on another machine, say): it is decoded
    and ``path`` only names it in errors, so the result and the errors are those of the file.

    Raises
    ------
    ImageReadError
        With ``reason`` one of ``missing``, ``empty_file``, ``not_an_image``, ``truncated``,
        ``too_large``, ``high_bit_depth``, ``unreadable``.
    """
    path = Path(path)
    try:
        size = path.stat().st_size if data is None else len(data)
    except FileNotFoundError:
        raise ImageReadError(path, "missing", "no such file") from None
    if size == 0:
        raise ImageReadError(path, "empty_file", "0 bytes")
    if data is not None and size <= max_pixels and data.startswith(_PNG_SIG):
        img = _decode_plain_png(data)  # semgen's own PNGs (data given: curation has read the file)
        if img is not None and img.size <= max_pixels:
            return img
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path if data is None else io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageReadError(path, "too_large", f"{w}x{h}")
                img.load()
                return to_uint8_gray(img, path=path, allow_16bit=allow_16bit)
    except ImageReadError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageReadError(path, "too_large", str(e)) from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not_an_image", "no image format recognises its bytes") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        reason = "truncated" if ("truncated" in msg or "broken" in msg.lower()) else "unreadable"
        raise ImageReadError(path, reason, msg) from None


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """A 2-D image at ``size`` x ``size``, the one rule every model input in semgen follows.

    ``cv2.INTER_AREA`` when shrinking (it averages, so the fine SEM texture does not alias),
    ``cv2.INTER_CUBIC`` when enlarging; an image already that size is returned as is. The aspect
    ratio is not kept: the classifier, the tune objective and the benches all read images this way.

    Parameters
    ----------
    img : ndarray (H, W), any dtype cv2 resizes (uint8 here)
    size : int, > 0

    Returns
    -------
    ndarray (size, size), same dtype

    Examples
    --------
    >>> resize_square(np.zeros((64, 48), np.uint8), 32).shape
    (32, 32)
    >>> a = np.zeros((8, 8), np.uint8); resize_square(a, 8) is a
    True
    """
    if img.shape == (size, size):
        return img
    interp = cv2.INTER_AREA if min(img.shape) >= size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)
