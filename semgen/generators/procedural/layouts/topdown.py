"""Turning a coverage map into a top-down scene (raised features or holes in a film)."""

from __future__ import annotations

import numpy as np

from ..scene import LINE, SUBSTRATE, Scene
from .shapes import smooth_noise


def raised_scene(cov: np.ndarray, film_nm: float, pixel_nm: float, rng: np.random.Generator,
                 top=LINE, floor=SUBSTRATE, grain: float = 0.012, meta: dict | None = None) -> Scene:
    """Features of height ``film_nm`` where ``cov`` is 1 on a flat floor.

    A faint fine-grained SE texture (``grain``, yield units) stands for film granularity and
    keeps flat areas from looking computer-drawn.
    """
    cov = np.clip(cov, 0.0, 1.0).astype(np.float32)
    height = film_nm * cov
    material = np.where(cov >= 0.5, top, floor).astype(np.uint8)
    se = grain * smooth_noise(rng, cov.shape, 0.8) if grain > 0 else None
    return Scene(height=height, material=material, pixel_nm=pixel_nm, view="top-down", meta=dict(meta or {}),
                 se_offset=se)


def holes_scene(hole_cov: np.ndarray, film_nm: float, pixel_nm: float, rng: np.random.Generator,
                film=LINE, floor=SUBSTRATE, depth_dark: float = 0.12, grain: float = 0.012,
                meta: dict | None = None) -> Scene:
    """A film of thickness ``film_nm`` with holes where ``hole_cov`` is 1.

    Deep holes look darker than an open floor because fewer secondaries escape them:
    ``depth_dark`` lowers the SE yield inside, the edge effect of the imaging adds the bright rim.
    """
    cov = np.clip(hole_cov, 0.0, 1.0).astype(np.float32)
    height = film_nm * (1.0 - cov)
    material = np.where(cov >= 0.5, floor, film).astype(np.uint8)
    se = -depth_dark * cov
    if grain > 0:
        se = se + grain * smooth_noise(rng, cov.shape, 0.8)
    return Scene(height=height, material=material, pixel_nm=pixel_nm, view="top-down", meta=dict(meta or {}),
                 se_offset=se.astype(np.float32))
