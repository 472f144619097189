"""Reading and writing 8-bit grayscale images with explicit, classified failures."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .errors import ImageReadError

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


def encode_png(image: np.ndarray, compression: int = 1) -> bytes:
    """Encode a 2-D uint8 (or uint16 mask) array as PNG bytes, deterministically.

    Parameters
    ----------
    image : ndarray, shape (H, W), dtype uint8 or uint16
    compression : int
        zlib level 0-9; 1 is several times faster than the default and only a little larger.
    """
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png wants a 2-D uint8/uint16 array, got {image.dtype} {image.shape}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes written by :func:`encode_png` (any depth, unchanged)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("not a decodable PNG")
    return arr


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


def read_gray(path: str | os.PathLike, *, allow_16bit: bool = True, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as a 2-D uint8 grayscale array.

    Raises
    ------
    ImageReadError
        With ``reason`` one of ``missing``, ``empty_file``, ``not_an_image``, ``truncated``,
        ``too_large``, ``high_bit_depth``, ``unreadable``.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "missing") from None
    if size == 0:
        raise ImageReadError(path, "empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
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
        raise ImageReadError(path, "not_an_image") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        reason = "truncated" if ("truncated" in msg or "broken" in msg.lower()) else "unreadable"
        raise ImageReadError(path, reason, msg) from None
