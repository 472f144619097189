"""The objective of ``semgen tune``: how well a discriminator tells generated images from real ones.

For one class, the real reference images and ``n`` generated images are reduced to the curation
texture metrics (:func:`semgen.curation.metrics.compute_metrics`: grey statistics, sharpness,
noise, GLCM, edge density, dominant period, SNR) at the same small size; a standardised logistic
regression is cross-validated on them (stratified folds) and the pooled out-of-fold ROC AUC is
the objective (0.5: indistinguishable on these features; 1.0: separable). It is cheap (tens of
images, no network), deterministic for fixed seeds, and measures the distribution, not single
images. What it cannot see (shape semantics beyond these statistics) it does not tune.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..curation.metrics import METRIC_NAMES, compute_metrics
from ..errors import SemgenError
from ..generators.procedural.generation import generate_one
from ..imageio import read_gray, resize_square, sha256_file
from ..manifests.sources import read_source
from ..seeding import image_seed


def features(images) -> np.ndarray:
    """float64 (n, len(METRIC_NAMES)) texture metrics of 2-D uint8 images (non-finite -> 0).

    Examples
    --------
    >>> features([np.full((32, 32), 128, np.uint8)]).shape == (1, len(METRIC_NAMES))
    True
    """
    rows = []
    for img in images:
        m = compute_metrics(img)
        rows.append([m[k] for k in METRIC_NAMES])
    return np.nan_to_num(np.asarray(rows, np.float64).reshape(-1, len(METRIC_NAMES)), posinf=0.0, neginf=0.0)


def discriminator_auc(real: np.ndarray, synth: np.ndarray, *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``real`` rows from ``synth`` rows.

    Out-of-fold decision scores of stratified ``folds``-fold CV, pooled, then one AUC. Needs at
    least 2 rows of each.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(0, 1, (30, 4)), rng.normal(0, 1, (30, 4))
    >>> discriminator_auc(a, b) < 0.75, discriminator_auc(a, b + 3.0) > 0.95
    (True, True)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_min = min(len(real), len(synth))
    if n_min < 2:
        raise SemgenError(f"the discriminator needs at least 2 real and 2 generated images, got {len(real)} and {len(synth)}")
    x = np.vstack([real, synth])
    y = np.r_[np.ones(len(real)), np.zeros(len(synth))]
    cv = StratifiedKFold(n_splits=min(folds, n_min), shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    score = cross_val_predict(clf, x, y, cv=cv, method="decision_function")
    return float(roc_auc_score(y, score))


class Reference:
    """The real reference pool: per-class features at one size, and its content hash.

    Parameters
    ----------
    root : path
        Dataset dir or ImageFolder tree of real images (a training pool, never a test set).
    size : int
        Side the images are resized to before the features.
    classes : list of str, optional
        Only read (and featurise) these classes; every image still counts in the hash.
    """

    def __init__(self, root, size: int, classes=None):
        items = read_source(root, what="reference")
        self.root = str(root)
        self.size = int(size)
        self.file_hashes = sorted(sha256_file(it.path) for it in items)
        self.sha256 = reference_sha256(self.file_hashes)
        self.paths: dict[str, list[Path]] = {}
        for it in items:
            if classes is None or it.label in classes:
                self.paths.setdefault(it.label, []).append(Path(it.path))
        self._feats: dict[str, np.ndarray] = {}

    def images(self, label: str) -> list[np.ndarray]:
        """The class's images (sorted by path), uint8 at ``size`` x ``size``; at least 2 or an error."""
        paths = self.paths.get(label, [])
        if len(paths) < 2:
            raise SemgenError(f"reference {self.root}: class {label} has {len(paths)} images; tuning needs at least 2")
        return [resize_square(read_gray(p), self.size) for p in sorted(paths)]

    def features(self, label: str) -> np.ndarray:
        """The texture metrics (:func:`features`) of the class's images, computed once."""
        if label not in self._feats:
            self._feats[label] = features(self.images(label))
        return self._feats[label]

    def describe(self) -> dict:
        """The ``reference`` block of a profile."""
        return {"path": self.root, "sha256": self.sha256, "n_images": len(self.file_hashes),
                "files": list(self.file_hashes)}


class TextureAUC:
    """The texture objective: :func:`discriminator_auc` of a class's generated images against its
    reference images (lower is better; 0.5: these statistics cannot tell them apart).

    Every stage scores against the whole reference class: a discriminator needs every real image.
    """

    name = "discriminator_auc"
    title = "discriminator AUC on texture metrics (0.5 = indistinguishable; lower is better)"

    def __init__(self, ref: Reference, gens: dict, *, size: int, seed: int):
        self.ref, self.gens, self.size, self.seed = ref, dict(gens), int(size), int(seed)
        for lb in self.gens:
            ref.features(lb)  # a class without reference images fails now, before any trial

    def settings(self) -> dict:
        return {}

    def display(self, value: float) -> float:
        return value

    def __call__(self, label: str, ranges: dict, *, n: int, start: int, stage: str) -> float:
        synth = features(generated_images(self.gens[label], ranges, n=n, start=start, size=self.size, seed=self.seed))
        return discriminator_auc(self.ref.features(label), synth, seed=self.seed)


def generated_images(gen, ranges: dict, *, n: int, start: int, size: int, seed: int):
    """Images ``start .. start + n - 1`` (uint8, ``size`` px) of generator ``gen`` with ``ranges``
    overriding its sampling (none: its defaults), with the seeds ``semgen procedural --seed seed``
    gives them; a generator, so they can be reduced one by one."""
    g = gen.with_ranges(ranges, where="tune") if ranges else gen
    return (generate_one(g, image_seed(seed, g.label, i), size).image for i in range(start, start + n))


def reference_sha256(file_hashes) -> str:
    """sha256 over the sorted per-file sha256s (newline-joined): the content hash of a pool."""
    return hashlib.sha256("\n".join(sorted(file_hashes)).encode()).hexdigest()
