"""Training data for diffusion: images + records from dataset dirs or ImageFolder trees, with weights.

``--data DIR[=WEIGHT]`` is parsed by :func:`semgen.manifests.parse_source` (a bad weight is an
error, never part of the path), which this module exports as ``parse_data_arg`` for its CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ...imageio import read_gray
from ...manifests.sources import parse_source, read_source
from .captions import caption_parts


def parse_data_arg(arg) -> tuple[str, float]:
    """``DIR`` or ``DIR=WEIGHT`` -> ``(DIR, weight)``: :func:`~semgen.manifests.parse_source` as a plain pair."""
    src = parse_source(arg)
    return str(src.path), src.weight


@dataclass
class TrainingSet:
    """Images in memory (uint8, (N, R, R)), their caption phrases, and per-image sampling weights."""

    images: np.ndarray
    parts: list[list[str]]
    vflip_ok: np.ndarray
    weights: np.ndarray
    sources: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def load_training_set(data: list, resolution: int, *, progress: bool = False) -> TrainingSet:
    """Load every image of every input into memory at ``resolution`` (area-resized if needed).

    ``data``: ``(path, weight)`` pairs, ``DIR=WEIGHT`` strings or
    :class:`~semgen.manifests.DataSource` s; each a dataset dir or an ImageFolder
    (:func:`semgen.manifests.iter_source`; an ImageFolder's images are ``real``, with the view a
    ``labels.csv`` beside it names).

    Each input's total sampling weight is its given weight, shared equally by its images, so
    ``--data proc=1 --data real=1`` draws half the batches' images from each whatever their sizes.
    """
    from ...progress import progress_bar

    images, parts, vflip, weights, sources = [], [], [], [], []
    for path, weight in map(parse_source, data):
        items = read_source(path, what="training data")
        for it in progress_bar(items, desc=f"loading {path.name}", unit="img", enabled=progress, leave=False):
            rec = it.record
            img = read_gray(it.path)
            if img.dtype != np.uint8:
                img = (img >> 8).astype(np.uint8)
            if img.shape != (resolution, resolution):
                img = _square_resize(img, resolution)
            images.append(img)
            cp = caption_parts(rec)
            parts.append(cp)
            vflip.append("cross-section" not in cp)
            weights.append(weight / len(items))
        sources.append({"path": str(path), "weight": weight, "images": len(items)})
    w = np.asarray(weights, np.float64)
    return TrainingSet(np.stack(images), parts, np.asarray(vflip, bool), w / w.sum(), sources)


def _square_resize(img: np.ndarray, r: int) -> np.ndarray:
    """Centre-crop to a square, then area-resize to r x r."""
    h, w = img.shape
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    img = img[y:y + s, x:x + s]
    interp = cv2.INTER_AREA if s > r else cv2.INTER_CUBIC
    return cv2.resize(img, (r, r), interpolation=interp)
