"""The classify page's logic: check uploads, predict, reject to ``other``, and Grad-CAM saliency.

Probabilities come from :class:`semgen.classifier.Predictor` (``best.pt`` / a run dir,
``model.onnx`` or ``model.int8.onnx``, with the run's calibrated temperature), and images are
decoded and resized by :func:`semgen.classifier.data.decode_images`, so the page says what
``semgen predict`` says. The saliency map is Grad-CAM (Selvaraju et al., 2017) on the last
convolution with a spatial extent, for the PyTorch model only.

Examples
--------
>>> import numpy as np
>>> decide(np.array([0.2, 0.7, 0.1]), ["clean", "bridge", "open"], threshold=0.5)
('bridge', 0.7, False)
>>> decide(np.array([0.4, 0.35, 0.25]), ["clean", "bridge", "open"], threshold=0.5)
('other', 0.4, True)
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, SemgenError
from . import draw

#: Largest upload, in bytes (an SEM image is a few MB at most; this refuses anything else early).
MAX_UPLOAD_BYTES = 20_000_000
#: Largest upload, in pixels (a decompression-bomb guard well below :data:`semgen.imageio.MAX_PIXELS`).
MAX_UPLOAD_PIXELS = 6000 * 6000
#: Most images one click classifies.
MAX_FILES = 64
#: Default confidence under which a prediction is rejected to ``other``.
DEFAULT_THRESHOLD = 0.5


def size_text(n_bytes: int) -> str:
    """``"20 MB"``, ``"60 kB"``: a byte count as the page states a limit (decimal units).

    >>> size_text(20_000_000), size_text(60_000), size_text(512)
    ('20 MB', '60 kB', '512 B')
    """
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= k:
            return f"{n_bytes / k:.3g} {unit}"
    return f"{int(n_bytes)} B"


def check_upload(path, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS) -> np.ndarray:
    """Read an uploaded file as a gray image, or say in one line why it is refused.

    Raises
    ------
    SemgenError
        A file over ``max_bytes`` or ``max_pixels``, or one that is not a readable image (the
        message names the file and the reason: ``not_an_image``, ``truncated``, ...).
    """
    from ..imageio import read_gray

    p = Path(path)
    name = p.name
    try:
        size = p.stat().st_size
    except OSError:
        raise SemgenError(f"{name}: the upload is gone (upload it again)") from None
    if size > max_bytes:
        raise SemgenError(f"{name} is {size_text(size)}; uploads are limited to {size_text(max_bytes)}")
    try:
        return read_gray(p, max_pixels=max_pixels)
    except ImageReadError as e:
        why = {"not_an_image": "not a readable image (PNG, JPEG, TIFF, BMP, GIF or WebP)",
               "empty_file": "an empty file", "truncated": "a truncated or corrupt image",
               "too_large": f"too large (over {max_pixels:,} pixels)"}.get(e.reason, f"unreadable ({e.reason})")
        raise SemgenError(f"{name} is {why}") from None


# -- models ----------------------------------------------------------------------------------------

def model_choices(runs) -> list[str]:
    """The models found in run dirs: the dir itself (its PyTorch checkpoint), then its ONNX files."""
    out = []
    for r in runs or ():
        p = Path(os.path.expanduser(str(r)))
        if p.is_file():
            out.append(str(p))
            continue
        if not p.is_dir():
            continue
        out.append(str(p))
        for name in ("model.onnx", "model.int8.onnx"):
            if (p / name).is_file():
                out.append(str(p / name))
    return out


_MODELS: "OrderedDict[tuple, object]" = OrderedDict()
_LOCK = threading.Lock()
#: Loaded models kept (a few MB each).
CACHE_SIZE = 4


def _cached(key: tuple, make):
    with _LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
    value = make()
    with _LOCK:
        _MODELS[key] = value
        while len(_MODELS) > CACHE_SIZE:
            _MODELS.popitem(last=False)
    return value


def _stamp(path: Path) -> tuple:
    try:
        st = path.stat()
        return (str(path.resolve()), st.st_mtime_ns)
    except OSError:
        return (str(path), None)


def load_predictor(model):
    """A :class:`semgen.classifier.Predictor`, kept loaded until the file changes."""
    from ..classifier import Predictor

    text = str(model or "").strip()
    if not text:
        raise SemgenError("choose a model: a run dir, best.pt, model.onnx or model.int8.onnx")
    p = Path(os.path.expanduser(text))
    if not p.exists():
        raise SemgenError(f"model {p} does not exist")
    return _cached(("predictor",) + _stamp(p), lambda: Predictor(p, threads=1))


def load_torch_model(model):
    """The PyTorch model behind a run dir or checkpoint (for saliency); None for an ONNX file."""
    p = Path(os.path.expanduser(str(model).strip()))
    if p.suffix == ".onnx":
        return None
    from ..classifier.evaluate import load_eval_model

    return _cached(("torch",) + _stamp(p), lambda: load_eval_model(p)[0])


# -- decisions and saliency --------------------------------------------------------------------------

def decide(probs: np.ndarray, classes: list[str], threshold: float) -> tuple[str, float, bool]:
    """``(label, confidence, rejected)``: the top class, or ``other`` when its probability is under ``threshold``."""
    probs = np.asarray(probs, dtype=np.float64)
    k = int(np.argmax(probs))
    conf = float(probs[k])
    if conf < float(threshold):
        return "other", conf, True
    return classes[k], conf, False


def grad_cam(model, image: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM of one image: where the network looked for its top (or the given) class.

    Parameters
    ----------
    model : torch.nn.Module
        Takes ``float32 [1, 1, S, S]`` in [0, 1] (a semgen classifier).
    image : ndarray, uint8, shape (S, S)
        Already at the model's input size.
    class_index : int, optional
        Default: the predicted class.

    Returns
    -------
    ndarray, float32, shape (S, S), in [0, 1]
        The class-weighted activation of the last convolution whose output still has a spatial
        extent (bilinear up to the image); zeros where the model has no such layer.
    """
    import torch
    import torch.nn.functional as F

    acts: list = []

    def keep(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and min(output.shape[-2:]) > 1:
            output.retain_grad()
            acts.append(output)

    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.uint8)).float().div(255)[None, None]
        with torch.enable_grad():
            out = model(x)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            k = int(logits[0].argmax()) if class_index is None else int(class_index)
            model.zero_grad(set_to_none=True)
            logits[0, k].backward()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    s = image.shape[-1]
    if not acts or acts[-1].grad is None:
        return np.zeros(image.shape, np.float32)
    a, g = acts[-1].detach(), acts[-1].grad.detach()
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=image.shape, mode="bilinear", align_corners=False)[0, 0]
    top = float(cam.max())
    return (cam / top if top > 0 else cam).numpy().astype(np.float32).reshape(s, s)


@dataclass
class Prediction:
    """One uploaded image's result."""

    name: str
    label: str = ""                     #: the decision (``other`` when rejected)
    top: str = ""                       #: the model's top class, even when rejected
    confidence: float = 0.0
    rejected: bool = False
    probs: dict = field(default_factory=dict)    #: class -> probability
    picture: np.ndarray | None = None   #: the image as the model saw it, with the saliency map if any
    error: str = ""                     #: why the file was refused


def classify(model, files, *, threshold: float = DEFAULT_THRESHOLD, saliency: bool = True,
             max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS) -> list[Prediction]:
    """Classify uploaded files; a refused file comes back with ``error`` and the others still run.

    Parameters
    ----------
    model : path
        A run dir or ``.pt`` checkpoint (PyTorch, with saliency), ``model.onnx`` or ``model.int8.onnx``.
    files : list of path
    threshold : float
        Under this confidence a prediction becomes ``other``.
    saliency : bool
        Draw Grad-CAM for a PyTorch model.
    """
    import torch

    from ..classifier.data import decode_images

    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise SemgenError(f"the threshold must be a number in [0, 1], got {threshold!r}") from None
    if not 0.0 <= threshold <= 1.0:
        raise SemgenError(f"the threshold must be in [0, 1], got {threshold}")
    files = [str(f) for f in files or ()]
    if not files:
        raise SemgenError("upload one or more images first")
    if len(files) > MAX_FILES:
        raise SemgenError(f"{len(files)} files; classify at most {MAX_FILES} at a time")
    pred = load_predictor(model)
    results, good = [], []
    for f in files:
        r = Prediction(Path(f).name)
        try:
            check_upload(f, max_bytes=max_bytes, max_pixels=max_pixels)
            good.append((r, f))
        except SemgenError as e:
            r.error = str(e)
        results.append(r)
    if not good:
        return results
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a file that fails here is reported on its row, not warned about
        imgs, ok, skipped = decode_images([f for _, f in good], pred.size, workers=1)
    reasons = {s["file"]: s["reason"] for s in skipped}
    probs = pred.probs(torch.from_numpy(imgs)) if len(imgs) else np.zeros((0, len(pred.classes)))
    net = load_torch_model(model) if saliency else None
    j = 0
    for (r, f), fine in zip(good, ok):
        if not fine:
            r.error = f"{r.name} cannot be read ({reasons.get(f, 'unreadable')})"
            continue
        p, img = probs[j], imgs[j]
        j += 1
        r.label, r.confidence, r.rejected = decide(p, pred.classes, threshold)
        r.top = pred.classes[int(np.argmax(p))]
        r.probs = {c: float(v) for c, v in zip(pred.classes, p)}
        pic = draw.to_rgb(img)
        if net is not None:  # the input beside its map: the map alone hides what it lies on
            gap = np.full((img.shape[0], max(2, img.shape[1] // 32), 3), 255, np.uint8)
            pic = np.concatenate([pic, gap, draw.heatmap(img, grad_cam(net, img))], axis=1)
        r.picture = draw.enlarge(pic)  # the model's input is often 32-128 px
    return results
