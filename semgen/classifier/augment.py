"""SEM-suited augmentation, vectorised over a batch in torch.

One ``grid_sample`` does every geometric change of a batch (flips, 90-degree turns, random resized
crop); brightness / contrast / gamma, blur, noise and random erasing are broadcast tensor ops, so a
two-core machine spends its time in the network, not in the data pipeline.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, Field

from ..configs import Config, Flag, Number


def _range(v):
    if not v[0] <= v[1]:
        raise ValueError(f"must be a range (low <= high), got {tuple(v)}")
    return v


#: A probability.
_P = Annotated[Number, Field(ge=0, le=1)]
#: A strength (0 = off).
_S = Annotated[Number, Field(ge=0)]
#: A (low, high) fraction range.
_Range = Annotated[tuple[Annotated[Number, Field(gt=0, le=1)], Annotated[Number, Field(gt=0, le=1)]],
                   AfterValidator(_range)]


class AugmentConfig(Config):
    """Augmentation strengths (a :class:`~semgen.configs.Config`). Probabilities are per image.

    Examples
    --------
    >>> AugmentConfig(erase_p=0.25).erase_p
    0.25
    >>> AugmentConfig(noise_p=2)
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: augment noise_p must be <= 1, got 2 (AugmentConfig.noise_p)
    """

    flags = {name: f"augment {name}" for name in (
        "flip", "rot90", "crop_scale", "crop_ratio", "brightness", "contrast", "gamma", "blur_p", "blur_sigma",
        "noise_p", "noise_std", "erase_p", "erase_area")}

    # Defaults chosen on sem-real/train with a validation split of train only (docs/classifier.md):
    # stronger settings (crops down to 55 %, erasing, more noise) underfit at a few hundred images.
    flip: Flag = True            # horizontal + vertical flips
    rot90: Flag = True           # SEM images have no preferred orientation
    crop_scale: _Range = (0.75, 1.0)   # area fraction of the random resized crop
    crop_ratio: tuple[Annotated[Number, Field(gt=0)], Annotated[Number, Field(gt=0)]] = (0.75, 1.333)
    brightness: _S = 0.08        # additive, in [0, 1] units
    # multiplicative, log-uniform in [1 - contrast / 2, 1 + contrast] (so below 2)
    contrast: Annotated[Number, Field(ge=0, lt=2)] = 0.2
    gamma: _S = 0.2              # exp(U(-g, g))
    blur_p: _P = 0.2
    blur_sigma: tuple[Annotated[Number, Field(gt=0)], Annotated[Number, Field(gt=0)]] = (0.3, 1.3)
    noise_p: _P = 0.3
    noise_std: _S = 0.04         # Gaussian, up to this std
    erase_p: _P = 0.0            # random erasing (off by default; 0.25 is a strong setting)
    erase_area: _Range = (0.02, 0.12)


NO_AUGMENT = AugmentConfig(flip=False, rot90=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                           brightness=0.0, contrast=0.0, gamma=0.0, blur_p=0.0, noise_p=0.0, erase_p=0.0)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W]`` -> float32 ``[B, 1, H, W]`` in ``[0, 1]`` (the model's input)."""
    return images.unsqueeze(1).float().div_(255.0)


def _u(g, n, lo, hi):
    return torch.rand(n, generator=g) * (hi - lo) + lo


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Augment a batch.

    Parameters
    ----------
    images : uint8 tensor ``[B, H, W]``
    cfg : AugmentConfig
    g : torch.Generator
        The only source of randomness (reproducible for a seed).

    Returns
    -------
    float32 tensor ``[B, 1, H, W]`` in ``[0, 1]``
    """
    x = to_float(images)
    b, _, h, w = x.shape

    # Geometry: output coords -> input coords = diag(sx, sy) @ R @ out + t, all in [-1, 1] units.
    area = _u(g, b, *cfg.crop_scale)
    logr = _u(g, b, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
    ratio = torch.exp(logr)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (torch.rand(b, generator=g) * 2 - 1) * (1 - sx)
    ty = (torch.rand(b, generator=g) * 2 - 1) * (1 - sy)
    k = torch.randint(0, 4, (b,), generator=g) if cfg.rot90 else torch.zeros(b, dtype=torch.long)
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0])[k]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0])[k]
    fx = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b)
    fy = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = sx * cos * fx
    theta[:, 0, 1] = -sx * sin * fy
    theta[:, 1, 0] = sy * sin * fx
    theta[:, 1, 1] = sy * cos * fy
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    identity = (sx == 1) & (sy == 1) & (k == 0) & (fx == 1) & (fy == 1)
    if not bool(identity.all()):
        grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # Photometry: gamma, then contrast about the image mean, then brightness.
    if cfg.gamma > 0:
        gam = torch.exp(_u(g, b, -cfg.gamma, cfg.gamma)).view(b, 1, 1, 1)
        x = x.clamp(1e-4, 1.0).pow(gam)
    if cfg.contrast > 0:
        c = torch.exp(_u(g, b, math.log(1 - cfg.contrast * 0.5), math.log(1 + cfg.contrast))).view(b, 1, 1, 1)
        m = x.mean(dim=(2, 3), keepdim=True)
        x = (x - m) * c + m
    if cfg.brightness > 0:
        x = x + _u(g, b, -cfg.brightness, cfg.brightness).view(b, 1, 1, 1)

    # Blur: per-image separable Gaussian as a grouped convolution (a delta kernel where not blurred).
    if cfg.blur_p > 0:
        sigma = _u(g, b, *cfg.blur_sigma)
        on = torch.rand(b, generator=g) < cfg.blur_p
        if bool(on.any()):
            r = 3
            t = torch.arange(-r, r + 1, dtype=torch.float32)
            ker = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
            ker = ker / ker.sum(1, keepdim=True)
            delta = (t == 0).float().expand(b, -1)
            ker = torch.where(on[:, None], ker, delta)
            xx = F.pad(x.transpose(0, 1), (r, r, r, r), mode="reflect")  # [1, B, H+2r, W+2r]
            xx = F.conv2d(xx, ker.view(b, 1, 1, -1), groups=b)
            xx = F.conv2d(xx, ker.view(b, 1, -1, 1), groups=b)
            x = xx.transpose(0, 1)

    if cfg.noise_p > 0:
        std = torch.rand(b, generator=g) * cfg.noise_std * (torch.rand(b, generator=g) < cfg.noise_p)
        x = x + torch.randn(x.shape, generator=g) * std.view(b, 1, 1, 1)

    x = x.clamp_(0.0, 1.0)

    # Random erasing: a rectangle filled with the image mean plus noise.
    if cfg.erase_p > 0:
        on = torch.rand(b, generator=g) < cfg.erase_p
        ea = _u(g, b, *cfg.erase_area)
        er = torch.exp(_u(g, b, math.log(0.3), math.log(3.3)))
        eh = (torch.sqrt(ea * er) * h).clamp(1, h - 1)
        ew = (torch.sqrt(ea / er) * w).clamp(1, w - 1)
        y0 = torch.rand(b, generator=g) * (h - eh)
        x0 = torch.rand(b, generator=g) * (w - ew)
        yy = torch.arange(h, dtype=torch.float32).view(1, h, 1)
        xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
        mask = ((yy >= y0.view(b, 1, 1)) & (yy < (y0 + eh).view(b, 1, 1))
                & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1)) & on.view(b, 1, 1))
        fill = x.mean(dim=(2, 3), keepdim=True) + 0.1 * torch.randn(x.shape, generator=g)
        x = torch.where(mask.unsqueeze(1), fill.clamp(0, 1), x)
    return x


def mixup(x: torch.Tensor, y_soft: torch.Tensor, alpha: float, g: torch.Generator):
    """Mixup with a Beta(alpha, alpha) weight per batch; returns mixed images and soft targets."""
    if alpha <= 0:
        return x, y_soft
    lam, perm = _mix_weights(x.shape[0], alpha, g)
    return lam * x + (1 - lam) * x[perm], lam * y_soft + (1 - lam) * y_soft[perm]


def mix_images(x: torch.Tensor, alpha: float, g: torch.Generator) -> torch.Tensor:
    """Mixup of the images alone (a batch without labels, whose targets a teacher gives).

    Distillation on mixed images is *function matching* (Beyer et al., 2022, "Knowledge
    distillation: a good teacher is patient and consistent"): the student learns the teacher's
    function between the images too, not only at them. The same weight and pairing as
    :func:`mixup` draws, so a labelled batch and an unlabelled one are mixed alike.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    >>> m = mix_images(x, 0.4, g)
    >>> bool(((m >= 0) & (m <= 1)).all()), bool(torch.allclose(m[0] + m[1], torch.ones(1, 2, 2)))
    (True, True)
    >>> bool(torch.equal(mix_images(x, 0.0, g), x))
    True
    """
    if alpha <= 0:
        return x
    lam, perm = _mix_weights(x.shape[0], alpha, g)
    return lam * x + (1 - lam) * x[perm]


def _mix_weights(n: int, alpha: float, g: torch.Generator) -> tuple[float, torch.Tensor]:
    """``(lam, perm)``: the larger of a Beta(alpha, alpha) weight and its complement, and a pairing."""
    # Beta sample from two Gammas drawn through the generator (torch.distributions has no generator).
    lam = float(_beta(alpha, g))
    return max(lam, 1 - lam), torch.randperm(n, generator=g)


def _beta(alpha: float, g: torch.Generator) -> float:
    import numpy as np

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    return np.random.default_rng(seed).beta(alpha, alpha)
