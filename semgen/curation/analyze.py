"""Everything curation measures on one image file: metrics, hashes and a thumbnail.

:func:`analyze_file` is what the worker processes run (split in :func:`fetch_file` and
:func:`analyze_fetched` where the workers are on other machines). It never raises on a bad image: it
returns ``{"ok": False, "reason": ...}`` with :class:`~semgen.errors.ImageReadError`'s reason,
so that one broken file cannot stop a run.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..errors import ImageReadError
from ..imageio import MAX_PIXELS, read_gray, sha256_bytes
from .hashing import pixel_digest, raw_phash, simhash
from .metrics import METRICS_VERSION, compute_metrics, spectrum

#: Version of the analysis as a whole (metrics + hashes + thumbnail); part of the cache key.
ANALYSIS_VERSION = f"m{METRICS_VERSION}.h2.t2"
#: Side of the thumbnail kept for near-duplicate verification.
THUMB_SIZE = 32


#: Thumbnails are stored as uint16 fixed point (grey level x 256): rounding to whole grey levels
#: would dominate the difference of two low-noise thumbnails.
THUMB_SCALE = 256


def thumbnail(img: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """``size`` x ``size`` area-averaged float32 thumbnail, grey levels (noise averages out, defects stay)."""
    t = cv2.resize(img.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return np.round(t * THUMB_SCALE) / THUMB_SCALE  # exactly what thumb_bytes stores


def thumb_bytes(t: np.ndarray) -> bytes:
    return np.clip(np.rint(t * THUMB_SCALE), 0, 65535).astype("<u2").tobytes()


def thumb_from_bytes(b: bytes) -> np.ndarray:
    return np.frombuffer(b, "<u2").astype(np.float32) / THUMB_SCALE


def thumb_noise(analysis: dict) -> float:
    """Expected noise standard deviation of an image's thumbnail (grey levels): sigma / pixels averaged per side."""
    f = max(analysis["height"], analysis["width"]) / THUMB_SIZE
    return float(analysis["metrics"]["noise_sigma"]) / max(f, 1.0)


def analyze_image(img: np.ndarray) -> dict:
    """Metrics, hashes and thumbnail of a 2-D uint8 image (no I/O)."""
    spec = spectrum(img)
    thumb = thumbnail(img)
    return {
        "metrics": compute_metrics(img, spec),
        "hashes": {"pixels": pixel_digest(img), "phash": f"{raw_phash(img):016x}",
                   "shash": f"{simhash(thumb):016x}"},
        "thumb": thumb_bytes(thumb),
        "height": int(img.shape[0]), "width": int(img.shape[1]),
    }


def error_detail(e: ImageReadError) -> str:
    """The parenthesised detail of an :class:`ImageReadError` message ('' if none)."""
    rest = str(e)[len(f"{e.path}: {e.reason}"):].strip()
    return rest[1:-1] if rest.startswith("(") and rest.endswith(")") else rest


_CACHES: dict = {}


def _cache_lookup(cache_path, sha: str):
    if not cache_path:
        return None
    from .cache import AnalysisCache

    key = (os.getpid(), cache_path)  # an SQLite connection must not cross a fork
    c = _CACHES.get(key)
    if c is None:
        c = _CACHES[key] = AnalysisCache(cache_path, readonly=True)
    return c.get(sha)


def _header_refusal(path, data: bytes, allow_16bit: bool, max_pixels: int) -> dict | None:
    """What :func:`~semgen.imageio.read_gray` would refuse, from the header alone (no decoding)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            (w, h), mode = im.size, im.mode
    except Exception:
        return None  # it was analysed before, so it decodes; let the cached analysis stand
    if w * h > max_pixels:
        return {"reason": "too_large", "detail": f"{w}x{h} > --max-pixels {max_pixels}"}
    if not allow_16bit and mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return {"reason": "high_bit_depth", "detail": f"mode {mode}"}
    return None


def fetch_file(job: tuple) -> dict | tuple:
    """The half of :func:`analyze_file` that needs the file: read it, check its sha256, look up the cache.

    ``job`` as for :func:`analyze_file`. Returns the finished result (unreadable, changed, or
    cached), or ``(path, data, sha256, allow_16bit, max_pixels)`` for :func:`analyze_fetched` to
    decode, which needs neither the file nor the cache: on a remote backend this half runs in the
    process that has both, and only the bytes travel.
    """
    path, expected, cache_path, allow_16bit, max_pixels = job
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {"ok": False, "reason": "missing", "detail": ""}
    except OSError as e:
        return {"ok": False, "reason": "unreadable", "detail": str(e.strerror or e)}
    sha = sha256_bytes(data)
    if expected and sha != expected:
        return {"ok": False, "sha256": sha, "reason": "sha256_mismatch",
                "detail": "the file changed since its manifest line was written"}
    hit = _cache_lookup(cache_path, sha)
    if hit is not None:
        # the cache is keyed by content only: this run's --max-pixels / 16-bit limits still apply
        refused = _header_refusal(path, data, allow_16bit, max_pixels or MAX_PIXELS)
        if refused is not None:
            return {"ok": False, "sha256": sha, **refused}
        return {"ok": True, "sha256": sha, "computed": False, **hit}
    return (path, data, sha, allow_16bit, max_pixels)


def analyze_fetched(fetched: dict | tuple) -> dict:
    """The result of :func:`analyze_file` from what :func:`fetch_file` returned (no file, no cache)."""
    if isinstance(fetched, dict):
        return fetched
    path, data, sha, allow_16bit, max_pixels = fetched
    try:
        img = read_gray(path, allow_16bit=allow_16bit, max_pixels=max_pixels or MAX_PIXELS, data=data)
    except ImageReadError as e:
        return {"ok": False, "sha256": sha, "reason": e.reason, "detail": error_detail(e)}
    if min(img.shape) < 8:
        return {"ok": False, "sha256": sha, "reason": "too_small", "detail": f"{img.shape[1]}x{img.shape[0]}"}
    return {"ok": True, "sha256": sha, "computed": True, **analyze_image(img)}


def analyze_file(job: tuple) -> dict:
    """Analyse one file; ``job`` = (path, expected sha256 or None, cache path or None, allow_16bit, max_pixels).

    Returns a dict with ``ok``, ``sha256`` and either the analysis (``computed`` says whether it
    was computed now or read from the cache) or ``reason`` / ``detail``. The same as
    ``analyze_fetched(fetch_file(job))``, which is how a remote backend runs it.
    """
    return analyze_fetched(fetch_file(job))


def dihedral_variants(img: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations / flips of an image (identity first)."""
    out = []
    for k in range(4):
        r = np.rot90(img, k)
        out += [r, r[:, ::-1]]
    return [np.ascontiguousarray(v) for v in out]


def with_bytes(path: str) -> tuple[str, bytes]:
    """``(path, content)`` of a file, ``b""`` if it cannot be read (read as an empty file: unreadable)."""
    try:
        with open(path, "rb") as f:
            return path, f.read()
    except OSError:
        return path, b""


def dihedral_signatures(path: str | tuple[str, bytes]) -> dict | None:
    """pHashes, SimHashes (hex) and thumbnails (bytes) of the 8 rotations / flips of an image file; None if unreadable.

    Used for the test set in a leakage check: a generator trained with flip / rotation
    augmentation can reproduce a training image turned around. ``path`` may be a
    :func:`with_bytes` pair, the file already read (for a remote backend).
    """
    path, data = path if isinstance(path, tuple) else (path, None)
    try:
        img = read_gray(path, allow_16bit=True, data=data)
    except ImageReadError:
        return None
    vs = dihedral_variants(img)
    thumbs = [thumbnail(v) for v in vs]
    return {"phash": [f"{raw_phash(v):016x}" for v in vs], "shash": [f"{simhash(t):016x}" for t in thumbs],
            "thumb": [thumb_bytes(t) for t in thumbs]}
