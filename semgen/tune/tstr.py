"""The task-aware objective of ``semgen tune``: train on synthetic, test on real (TSTR).

The texture objective (:func:`~.objective.discriminator_auc`) rewards images whose statistics
match the reference; measured against a classifier it made the classes *less* separable on real
images (session 25: particle's AUC improved while its synthetic-only F1 fell from 0.37 to 0.07).
TSTR scores what the generated images are for: a classifier fitted on generated images only is
tested on the real reference, and its macro-F1 is the figure.

To cost seconds per trial on 2 cores, the classifier is a linear probe on frozen embeddings: a
backbone (``--features``, default the ImageNet EfficientNet-Lite0 of the ``imagenet`` extra; any
``semgen train --init`` value works) maps every image to its pooled features once, and a
ridge classifier on standardised features is fitted on the generated images of *every* class (the tuned
class with the trial's ranges, the others with their default ranges, cached) and scored on real
images. So a trial of one class is judged by what it does to all of them: a class that starts
absorbing other classes' real images loses as much as one whose own images stop being recognised.

The real reference is split per class, by the seed, into two halves: the search scores trials on
one, the choice among the best trials (:func:`semgen.tune.search.choose`) on the other, so the
profile is not chosen on the images that steered the search. ``check`` (the report's
before/after) uses every reference image; a test set that semgen never read is the only
unbiased check.
"""

from __future__ import annotations

import json

import numpy as np

from ..imageio import resize_square
from .objective import generated_images

#: L2 strength of the probe (a ridge classifier on standardised features). Measured on
#: sem-real/train with ImageNet EfficientNet-Lite0 features at 128 px, 30 / 60 default images per
#: class (macro-F1 on the search half / the other half; 2-core CPU under load): alpha 1000 scored
#: 0.33 / 0.38 at 0.5 s per fit; alpha 10 0.23 / 0.28; a logistic regression (C 0.003-0.05)
#: 0.32-0.33 / 0.39-0.41 at 8-13 s per fit, too slow for hundreds of trials per class.
PROBE_ALPHA = 1000.0
#: images per forward pass of the embedder
BATCH = 64
#: the parts of the real reference (:class:`TSTR`)
STAGES = ("search", "select", "check")


class Embedder:
    """Pooled features of a frozen classifier backbone, as ``semgen train --init`` would start it.

    Parameters
    ----------
    init : str
        ``imagenet`` (the ``semgen[imagenet]`` extra), ``semgen``, ``scratch`` or a run / checkpoint
        path (:mod:`semgen.classifier.init`).
    arch : str, optional
        Architecture (default: the init's own).
    size : int
        Side the images are resized to before the network.

    Examples
    --------
    >>> e = Embedder("scratch", "mobilenetv3_small_050", size=32)
    >>> e([np.zeros((40, 40), np.uint8)] * 2).shape[0]
    2
    """

    def __init__(self, init: str = "imagenet", arch: str | None = None, *, size: int = 128):
        import torch

        from ..classifier.init import apply_init, resolve_init
        from ..classifier.models import create_model

        spec = resolve_init(init, arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # a scratch backbone is the same network in every run
            model = create_model(spec["arch"], 2, drop_rate=0.0)  # the head is never used
        info = apply_init(model, spec)
        self.model = model.eval()
        self.size = int(size)
        self.record = {"init": str(init), "arch": spec["arch"], "sha256": info.get("sha256"), "size": self.size}

    def __call__(self, images) -> np.ndarray:
        """float32 ``(n, d)`` features of 2-D uint8 images (any size; resized to ``size``)."""
        import torch

        arr = np.stack([resize_square(np.asarray(im, np.uint8), self.size) for im in images])
        net, out = self.model.net, []
        with torch.inference_mode():
            for i in range(0, len(arr), BATCH):
                x = torch.from_numpy(arr[i:i + BATCH]).unsqueeze(1).float().div_(255.0)
                x = (x - self.model.mean) / self.model.std
                out.append(net.forward_head(net.forward_features(x), pre_logits=True).float().numpy())
        return np.concatenate(out).reshape(len(arr), -1)


def probe_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Predictions for ``test_x`` of a ridge classifier (:data:`PROBE_ALPHA`) on standardised
    features, fitted on ``(train_x, train_y)``: closed form, so a fit costs a fraction of a second.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(0, 1, (20, 3)), rng.normal(4, 1, (20, 3))]
    >>> y = np.r_[np.zeros(20, int), np.ones(20, int)]
    >>> probe_predict(x, y, np.array([[0.0, 0, 0], [4.0, 4, 4]])).tolist()
    [0, 1]
    """
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeClassifier(alpha=PROBE_ALPHA)).fit(train_x, train_y).predict(test_x)


class TSTR:
    """TSTR macro-F1 of a linear probe (module docstring); as an objective, ``1 - macro-F1``.

    Parameters
    ----------
    ref : Reference
        The real reference (every class of it with a generator takes part).
    gens : dict
        ``{label: generator}`` of every class in the probe; ``ref`` needs at least 2 images of each.
    embedder : Embedder
    size, seed : int
        Side the generated images are made at (the embedder resizes them), master seed.
    """

    name = "tstr_macro_f1"
    title = "TSTR macro-F1 on the reference (linear probe on frozen features; higher is better)"

    def __init__(self, ref, gens: dict, embedder: Embedder, *, size: int, seed: int):
        self.gens, self.embedder, self.size, self.seed = dict(gens), embedder, int(size), int(seed)
        self.labels = sorted(self.gens)
        x, y, part = [], [], []
        rng = np.random.default_rng([int(seed), 1207])  # the halves: a function of the seed only
        for k, lb in enumerate(self.labels):
            imgs = ref.images(lb)  # sorted by path; at least 2, else a one-line error naming the class
            half = np.zeros(len(imgs), bool)
            half[rng.permutation(len(imgs))[: len(imgs) // 2]] = True
            x.append(embedder(imgs))
            y += [k] * len(imgs)
            part.append(half)
        self.real_x, self.real_y, self._search = np.concatenate(x), np.asarray(y), np.concatenate(part)
        self._cache: dict[tuple, np.ndarray] = {}

    def settings(self) -> dict:
        """What a study records (a resumed study must match)."""
        return {"features": self.embedder.record, "probe_alpha": PROBE_ALPHA, "probe_classes": self.labels}

    def display(self, value: float) -> float:
        """The figure a report shows for an objective value: the macro-F1."""
        return 1.0 - value

    def embed(self, label: str, ranges: dict, *, n: int, start: int, keep: bool = False) -> np.ndarray:
        """Features of images ``start .. start + n - 1`` of ``label`` under ``ranges``; cached for
        the defaults, and with ``keep`` (the selection and check sets, scored again in the joint
        selection) for any ranges."""
        # the defaults, and the chosen ranges the joint selection scores again and again
        key = (label, start, n, json.dumps(ranges, sort_keys=True, default=str))
        if key in self._cache:
            return self._cache[key]
        f = self.embedder(list(generated_images(self.gens[label], ranges, n=n, start=start, size=self.size,
                                                seed=self.seed)))
        if not ranges or keep:  # a search trial's images are used once
            self._cache[key] = f
        return f

    def evaluate(self, ranges_by_label: dict, *, n: int, start: int, stage: str = "check") -> dict:
        """The probe fitted on ``n`` images per class (``ranges_by_label``'s ranges, else the
        defaults) and scored on the ``stage`` part of the reference: the metrics dict of
        :func:`semgen.classifier.metrics.metrics_from_confusion`."""
        from ..classifier.metrics import confusion_matrix, metrics_from_confusion

        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        xs, ys = [], []
        for k, lb in enumerate(self.labels):
            xs.append(self.embed(lb, ranges_by_label.get(lb) or {}, n=n, start=start, keep=stage != "search"))
            ys += [k] * n
        keep = {"search": self._search, "select": ~self._search}.get(stage, np.ones(len(self.real_y), bool))
        pred = probe_predict(np.concatenate(xs), np.asarray(ys), self.real_x[keep])
        return metrics_from_confusion(confusion_matrix(self.real_y[keep], pred, len(self.labels)), self.labels)

    def __call__(self, label: str, ranges: dict, *, n: int, start: int, stage: str) -> float:
        """``1 - macro-F1`` with ``label`` under ``ranges`` and every other class at its defaults."""
        return 1.0 - self.evaluate({label: ranges}, n=n, start=start, stage=stage)["macro_f1"]
