"""Test-time augmentation: average a classifier's probabilities over the symmetries of the square.

An SEM image of a defect has no preferred orientation: a bridge between vertical lines is a bridge
between horizontal ones, and the classifier is trained with flips and 90-degree turns
(:class:`~semgen.classifier.augment.AugmentConfig`). Predicting every turned and flipped view and
averaging the probabilities is then an ensemble that costs inference time only: no training, no
new weights, and the same answer for an image and its mirror image.

The views are exact pixel permutations (no interpolation), so they apply to uint8 images before
any model sees them: the same code serves a torch run dir, ``model.onnx`` and ``model.int8.onnx``.

``none``  the image as it is (1 view)
``flips`` identity, horizontal and vertical flips, half turn (4 views)
``d4``    all 8 symmetries of the square (the 4 above, the quarter turns and both transposes)

What it adds on real images, measured by cross-validation on the training pool and on
``dev_test``, is in docs/results.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import SemgenError

if TYPE_CHECKING:  # the CLI imports TTA_MODES for its choices and stays free of torch
    import torch

#: Each view as a function of a ``[..., H, W]`` tensor (square images: a turn keeps the shape).
_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "flip_h": lambda x: x.flip(-1),
    "flip_v": lambda x: x.flip(-2),
    "turn_180": lambda x: x.rot90(2, (-2, -1)),
    "turn_90": lambda x: x.rot90(1, (-2, -1)),
    "turn_270": lambda x: x.rot90(3, (-2, -1)),
    "transpose": lambda x: x.transpose(-2, -1),
    "anti_transpose": lambda x: x.rot90(2, (-2, -1)).transpose(-2, -1),
}

#: The named view sets, smallest first.
TTA_MODES: dict[str, tuple[str, ...]] = {
    "none": ("identity",),
    "flips": ("identity", "flip_h", "flip_v", "turn_180"),
    "d4": tuple(_VIEWS),
}


def metrics_name(mode: str = "none") -> str:
    """The file name that the benches save ``semgen evaluate``'s metrics under for a TTA mode.

    >>> metrics_name("none"), metrics_name("d4")
    ('metrics.json', 'metrics_tta-d4.json')
    """
    mode = check_tta(mode)
    return "metrics.json" if mode == "none" else f"metrics_tta-{mode}.json"


def check_tta(mode: str | None) -> str:
    """``mode`` (None -> ``"none"``) if it names a view set, else a one-line :class:`SemgenError`."""
    mode = "none" if mode is None else str(mode).lower()
    if mode not in TTA_MODES:
        raise SemgenError(f"--tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    return mode


def tta_views(images: torch.Tensor, mode: str = "d4") -> list[torch.Tensor]:
    """The views of ``mode`` of a batch of square images ``[N, H, W]`` (any dtype), each contiguous.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(4, dtype=torch.uint8).reshape(1, 2, 2)
    >>> [v[0].flatten().tolist() for v in tta_views(x, "flips")]
    [[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]]
    """
    mode = check_tta(mode)
    if images.ndim < 2 or images.shape[-1] != images.shape[-2]:
        raise SemgenError(f"test-time augmentation needs square images, got shape {tuple(images.shape)}")
    return [_VIEWS[name](images).contiguous() for name in TTA_MODES[mode]]


def tta_probs(probs_fn: Callable[[torch.Tensor], np.ndarray | torch.Tensor], images: torch.Tensor,
              mode: str = "d4") -> np.ndarray:
    """The mean of ``probs_fn(view)`` over the views of ``mode``: float32 ``[N, K]``, rows sum to 1.

    ``probs_fn`` maps uint8 images ``[N, S, S]`` to probabilities ``[N, K]`` (a model's softmax).
    With ``mode="none"`` this is ``probs_fn(images)`` itself, unchanged (its bytes too); the mean of
    several views is summed in float64.

    Examples
    --------
    >>> import torch
    >>> probs_fn = lambda x: torch.stack([x[:, 0, 0].float(), 255 - x[:, 0, 0].float()], 1) / 255
    >>> x = torch.zeros(1, 2, 2, dtype=torch.uint8); x[0, 0, 0] = 255
    >>> tta_probs(probs_fn, x, "none").tolist(), tta_probs(probs_fn, x, "flips").tolist()
    ([[1.0, 0.0]], [[0.25, 0.75]])
    """
    def run(x):
        p = probs_fn(x)
        return p.numpy() if hasattr(p, "numpy") else np.asarray(p)  # a torch tensor, or an array

    mode = check_tta(mode)
    if mode == "none":
        return run(images)
    tta_views(images[:0], mode)  # the shape check, before any view of the whole set is made
    names = TTA_MODES[mode]
    # one view at a time: a test set is not held 8 times over in memory
    total = sum(run(_VIEWS[n](images).contiguous()).astype(np.float64) for n in names)
    return (total / len(names)).astype(np.float32)
