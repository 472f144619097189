"""Tiny synthetic texture datasets for the classifier tests (helpers only: no tests in this module)."""

from __future__ import annotations

import numpy as np

from semgen.imageio import encode_png, sha256_bytes
from semgen.manifests import DatasetDir

#: Three textures that no flip or 90-degree turn confuses: fine stripes, coarse stripes, dots.
SYNTH_CLASSES = ("bridge", "open", "particle")
#: Five, for a gate (clean / defect / other) in front of two families: a ramp and a checkerboard too.
GATED_CLASSES = ("clean", "bridge", "open", "particle", "other")


def texture(label: str, rng: np.random.Generator, side: int = 40) -> np.ndarray:
    """One ``uint8 [side, side]`` image of a class (random phase, orientation, contrast, noise)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    ang = rng.uniform(0, np.pi)
    u = np.cos(ang) * xx + np.sin(ang) * yy
    if label == "bridge":
        img = 0.5 + 0.35 * np.sign(np.sin(2 * np.pi * u / 4.0 + rng.uniform(0, 6.3)))
    elif label == "open":
        img = 0.5 + 0.35 * np.sign(np.sin(2 * np.pi * u / 14.0 + rng.uniform(0, 6.3)))
    elif label == "clean":  # a plain ramp
        img = 0.35 + 0.3 * u / (2 * side)
    elif label == "other":  # a checkerboard
        v = -np.sin(ang) * xx + np.cos(ang) * yy
        img = 0.5 + 0.35 * np.sign(np.sin(2 * np.pi * u / 10.0) * np.sin(2 * np.pi * v / 10.0))
    else:
        img = np.full((side, side), 0.3)
        for _ in range(rng.integers(3, 7)):
            cy, cx, r = rng.uniform(0, side, 2).tolist() + [rng.uniform(2.5, 5)]
            img += 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    img = img * rng.uniform(0.8, 1.2) + rng.normal(0, 0.06, img.shape)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def make_dataset(root, n_per_class: int = 12, seed: int = 0, classes=SYNTH_CLASSES, side: int = 40) -> DatasetDir:
    """Write a dataset dir of ``n_per_class`` textures per class through the manifest API."""
    ds = DatasetDir.create(root)
    rng = np.random.default_rng(seed)
    with ds.appender() as app:
        for label in classes:
            for i in range(n_per_class):
                data = encode_png(texture(label, rng, side))
                name = f"images/{label}/{label}_{i:04d}.png"
                ds.write_file(name, data)
                app.append({"file_name": name, "label": label, "source": "procedural",
                            "sha256": sha256_bytes(data), "width": side, "height": side})
    ds.write_info(command="tests")
    return ds
