"""Tiny synthetic SEM-like images and dataset dirs for the curation tests (numpy only, no generator)."""

from __future__ import annotations

import cv2
import numpy as np

from semgen.imageio import encode_png, sha256_bytes
from semgen.manifests import DatasetDir


def lines(size: int = 64, period: float = 9.5, angle: float = 0.0, ler_seed: int = 0, noise_seed: int = 0,
          bridge=None, noise: float = 10.0, duty: float = 0.5, bright: float = 170, dark: float = 70) -> np.ndarray:
    """A line/space pattern with rough edges, Gaussian noise and optionally a bridge at ``bridge=(x, y)``."""
    rng = np.random.default_rng(ler_seed)
    y, x = np.mgrid[:size, :size].astype(np.float32)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u, v = x * c + y * s, -x * s + y * c
    rough = cv2.GaussianBlur(rng.normal(0, 1.2, (size, size)).astype(np.float32), (0, 0), 3) * 3
    img = np.where(((u + rough) / period) % 1.0 < duty, bright, dark).astype(np.float32)
    if bridge is not None:
        bu, bv = bridge[0] * c + bridge[1] * s, -bridge[0] * s + bridge[1] * c  # into the lines' frame
        k = int(bu // period)
        m = (u >= k * period + duty * period - 1) & (u <= (k + 1) * period + 1) & (np.abs(v - bv) <= 2.5)
        img[m] = bright
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    img += np.random.default_rng(1000 + noise_seed).normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root, images: list[tuple[str, str, np.ndarray]], source: str = "procedural") -> DatasetDir:
    """Write ``[(name, label, uint8 image), ...]`` as a dataset dir; returns it."""
    ds = DatasetDir.create(root)
    with ds.appender() as app:
        for name, label, img in images:
            data = encode_png(img)
            fn = f"images/{label}/{name}.png"
            ds.write_file(fn, data)
            app.append({"file_name": fn, "id": name, "label": label, "source": source,
                        "sha256": sha256_bytes(data), "width": int(img.shape[1]), "height": int(img.shape[0])})
    ds.write_info(command="test")
    return ds


def tree_digest(root) -> dict:
    """{relative path: (bytes, mtime_ns)} of every file under ``root`` (to prove it is unchanged)."""
    from pathlib import Path

    root = Path(root)
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}
