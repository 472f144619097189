"""Training data for diffusion: images + records from dataset dirs or ImageFolder trees, with weights."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ...errors import SemgenError
from ...imageio import read_gray
from ...manifests import DatasetDir
from ...manifests.imagefolder import is_dataset_dir, scan_imagefolder
from .captions import caption_parts


def parse_data_arg(arg: str) -> tuple[str, float]:
    """``"DIR"`` or ``"DIR=weight"`` -> (DIR, weight)."""
    path, sep, w = str(arg).rpartition("=")
    if not sep or not path:
        return str(arg), 1.0
    try:
        weight = float(w)
    except ValueError:
        return str(arg), 1.0  # a path that contains '='
    if not np.isfinite(weight) or weight <= 0:
        raise SemgenError(f"--data {arg}: weight must be a positive number")
    return path, weight


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


def _records_of(path: Path) -> list[dict]:
    if is_dataset_dir(path):
        ds = DatasetDir.open(path)
        recs = [dict(r, _path=str(ds.path(r["file_name"]))) for r in ds.iter_records()]
        if not recs:
            raise SemgenError(f"training data {path} has no records")
        return recs
    # ImageFolder (e.g. the real train pool): style "real"; view from a labels.csv beside it, if any
    views = {}
    for csv_path in (path / "labels.csv", path.parent / "labels.csv"):
        if csv_path.exists():
            with open(csv_path, newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("file") and row.get("view"):
                        views[(csv_path.parent / row["file"]).resolve()] = row["view"]
    recs = []
    for rel, label in scan_imagefolder(path):
        p = (path / rel).resolve()
        rec = {"file_name": rel, "label": label, "source": "real", "_path": str(p)}
        if p in views:
            rec["view"] = views[p]
        recs.append(rec)
    return recs


def load_training_set(data: list[tuple[str, float]], resolution: int, *, progress: bool = False) -> TrainingSet:
    """Load every image of every input into memory at ``resolution`` (area-resized if needed).

    Each input's total sampling weight is its given weight, shared equally by its images, so
    ``--data proc=1 --data real=1`` draws half the batches' images from each whatever their sizes.
    """
    from tqdm.auto import tqdm

    images, parts, vflip, weights, sources = [], [], [], [], []
    for path, weight in data:
        p = Path(path)
        if not p.exists():
            raise SemgenError(f"training data {p} does not exist")
        recs = _records_of(p)
        for rec in tqdm(recs, desc=f"loading {p.name}", disable=not progress, leave=False):
            img = read_gray(rec["_path"])
            if img.dtype != np.uint8:
                img = (img >> 8).astype(np.uint8)
            if img.shape != (resolution, resolution):
                img = _square_resize(img, resolution)
            images.append(img)
            cp = caption_parts(rec)
            parts.append(cp)
            vflip.append("cross-section" not in cp)
            weights.append(weight / len(recs))
        sources.append({"path": str(p), "weight": weight, "images": len(recs)})
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
