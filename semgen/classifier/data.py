"""Loading classifier data: dataset dirs and ImageFolder trees into an in-memory uint8 cache.

Images are decoded once, resized to ``size x size`` and kept as one ``uint8 [N, S, S]`` tensor, so
that an epoch costs no file I/O and augmentation can run on whole batches in torch.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ImageReadError, SemgenError
from ..imageio import read_gray, resize_square
from ..manifests.sources import DataSource, iter_source, parse_source
from ..taxonomy import CLASSES, canonical

#: ``curation.status`` values whose records are left out of training and evaluation.
EXCLUDED_STATUSES = frozenset({"rejected", "reject", "duplicate", "dropped", "excluded"})


#: The names this module's callers know (train, pretrain, bench): :mod:`semgen.manifests.sources`' own.
Source = DataSource
parse_data_arg = parse_source


class SkippedImageWarning(UserWarning):
    """An image in ``--data`` could not be read and was left out."""


@dataclass
class ImageSet:
    """Decoded images of one or more sources.

    Attributes
    ----------
    images : torch.Tensor, uint8, shape (N, S, S)
    labels : torch.Tensor, int64, shape (N,)
        Indices into ``classes``.
    source : torch.Tensor, int64, shape (N,)
        Index into ``sources`` of each image.
    files : list of str
        Path of each image (as given, for reports).
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: torch.Tensor
    files: list[str]
    classes: list[str]
    sources: list[DataSource]
    skipped: list[dict] = field(default_factory=list)
    dropped_labels: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, idx) -> "ImageSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.source[idx],
                        [self.files[i] for i in idx.tolist()], list(self.classes), list(self.sources))

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return {c: int(n) for c, n in zip(self.classes, counts)}


def usable(record: dict) -> bool:
    """Whether a record may be trained or evaluated on: not marked rejected by curation."""
    status = (record.get("curation") or {}).get("status")
    return not (isinstance(status, str) and status.lower() in EXCLUDED_STATUSES)


def _items(src: DataSource, *, include_rejected: bool = False) -> list[tuple[str, str]]:
    """``(path, canonical label)`` of every usable image of a source, in a fixed order."""
    items = [(str(it.path), it.label) for it in iter_source(src.path)
             if include_rejected or usable(it.record)]
    if not items:
        raise SemgenError(f"data {src.path} has no usable images")
    return items


def _read_resized(path: str, size: int):
    try:
        img = read_gray(path)
    except ImageReadError as e:
        return None, e.reason
    except Exception as e:  # noqa: BLE001 - a bad file is skipped, whatever the decoder raised
        return None, f"unreadable ({type(e).__name__})"
    return resize_square(img, size), None


def decode_images(paths: list[str], size: int, *, progress: bool = False, workers: int | None = None):
    """Read, gray-convert and resize images; unreadable ones are skipped with a warning.

    Returns
    -------
    images : ndarray uint8 (M, size, size)
    ok : ndarray bool (len(paths),)
        Which inputs were read.
    skipped : list of {"file", "reason"}
    """
    from ..progress import progress_bar

    workers = workers or min(4, os.cpu_count() or 1)
    out = np.zeros((len(paths), size, size), np.uint8)
    ok = np.zeros(len(paths), bool)
    skipped = []
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda p: _read_resized(p, size), paths)
        bar = progress_bar(results, total=len(paths), desc="decoding", unit="img", enabled=progress, leave=False)
        for i, (img, reason) in enumerate(bar):
            if img is None:
                skipped.append({"file": paths[i], "reason": reason})
                warnings.warn(f"skipping unreadable image {paths[i]}: {reason}", SkippedImageWarning, stacklevel=2)
                continue
            out[i] = img
            ok[i] = True
    return out[ok], ok, skipped


def order_classes(labels) -> list[str]:
    """Labels in taxonomy order (the class-index order used everywhere)."""
    present = {canonical(x) for x in labels}
    return [c for c in CLASSES if c in present]


def load_image_set(data, *, size: int = 128, classes: list[str] | None = None, progress: bool = False,
                   include_rejected: bool = False, allow_unknown: bool = False) -> ImageSet:
    """Load one or more sources into an :class:`ImageSet`.

    Parameters
    ----------
    data : path, ``"DIR=WEIGHT"``, ``(path, weight)`` or a list of them
    size : int
        Side of the cached square images.
    classes : list of str, optional
        Class order; default: labels present, in taxonomy order. Images of other labels are left
        out (counted in ``dropped_labels``), unless ``allow_unknown``, where they are appended as
        extra classes (evaluation of a test set with classes the model lacks).
    """
    if isinstance(data, (str, os.PathLike, DataSource)) or (
            isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], (int, float))):
        data = [data]
    sources = [parse_source(d) for d in data]
    if not sources:
        raise SemgenError("no --data given")
    items, src_idx = [], []
    for k, s in enumerate(sources):
        its = _items(s, include_rejected=include_rejected)
        items += its
        src_idx += [k] * len(its)
    labels = [lab for _, lab in items]
    if classes is None:
        classes = order_classes(labels)
    else:
        classes = [canonical(c) for c in classes]
    dropped: dict[str, int] = {}
    if allow_unknown:
        extra = [c for c in order_classes(labels) if c not in classes]
        classes = list(classes) + extra
    keep = [i for i, lab in enumerate(labels) if lab in classes]
    for lab in labels:
        if lab not in classes:
            dropped[lab] = dropped.get(lab, 0) + 1
    if dropped:
        warnings.warn(f"leaving out images of classes the run does not have: {dropped}", stacklevel=2)
    paths = [items[i][0] for i in keep]
    imgs, ok, skipped = decode_images(paths, size, progress=progress)
    if not ok.any():
        raise SemgenError(f"no readable images in {', '.join(str(s.path) for s in sources)}")
    keep = [i for i, good in zip(keep, ok) if good]
    cidx = {c: i for i, c in enumerate(classes)}
    return ImageSet(
        images=torch.from_numpy(imgs),
        labels=torch.tensor([cidx[labels[i]] for i in keep], dtype=torch.long),
        source=torch.tensor([src_idx[i] for i in keep], dtype=torch.long),
        files=[items[i][0] for i in keep],
        classes=list(classes),
        sources=sources,
        skipped=skipped,
        dropped_labels=dropped,
    )


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, val)``: ``fraction`` of each class (at least one where it has two or more).

    ``fraction <= 0`` holds out nothing: every image trains and the training keeps its last epoch
    (the recipe for small real pools, where a split of a few dozen images only adds noise).
    """
    if not 0 <= fraction < 1:
        raise SemgenError(f"--val-fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return torch.arange(len(labels), dtype=torch.long), torch.zeros(0, dtype=torch.long)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E1]))
    y = labels.numpy()
    train, val = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(fraction * len(idx)))
        n_val = min(max(n_val, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return torch.tensor(sorted(train), dtype=torch.long), torch.tensor(sorted(val), dtype=torch.long)


def sampling_weights(s: ImageSet) -> torch.Tensor:
    """Per-image sampling probability: sources by their weight, classes balanced within each source."""
    n_src = len(s.sources)
    w_src = torch.tensor([src.weight for src in s.sources], dtype=torch.float64)
    w_src = w_src / w_src.sum()
    k = len(s.classes)
    counts = torch.zeros(n_src, k, dtype=torch.float64)
    counts.index_put_((s.source, s.labels), torch.ones(len(s), dtype=torch.float64), accumulate=True)
    classes_in_src = (counts > 0).sum(1).clamp(min=1)
    # A source with no images after splitting / filtering gives its mass to the others.
    w_src = torch.where(counts.sum(1) > 0, w_src, torch.zeros_like(w_src))
    per = w_src[s.source] / classes_in_src[s.source] / counts[s.source, s.labels]
    return per / per.sum()
