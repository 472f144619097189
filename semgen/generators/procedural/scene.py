"""A scene: topography and materials in physical units, before imaging.

Generators build a :class:`Scene` at the output resolution (``pixel_nm`` nanometres per pixel);
:func:`semgen.generators.procedural.imaging.render` turns it into an SEM image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Material ids (uint8). Keep the numbers stable: they are part of the scene contract.
SUBSTRATE = 0   #: exposed substrate / floor between features (top-down)
LINE = 1        #: resist or metal line seen from the top
DIELECTRIC = 2  #: oxide / low-k / passivation (cross-sections)
METAL = 3       #: copper / tungsten / aluminium fill
LINER = 4       #: barrier / liner (Ta/TaN/Ti/TiN)
VOID = 5        #: empty space inside a structure (dark)
PARTICLE = 6    #: foreign particle (bright, charging)
SOLDER = 7      #: solder (bumps)
IMC = 8         #: intermetallic compound
SILICON = 9     #: silicon (cross-section substrate)
RESIDUE = 10    #: polishing / etch residue

MATERIAL_NAMES: dict[int, str] = {
    SUBSTRATE: "substrate", LINE: "line", DIELECTRIC: "dielectric", METAL: "metal", LINER: "liner",
    VOID: "void", PARTICLE: "particle", SOLDER: "solder", IMC: "imc", SILICON: "silicon",
    RESIDUE: "residue",
}
N_MATERIALS = 16  #: size of the per-material lookup tables (room for more ids)

#: Default secondary-electron yield (relative, 0..1) of each material on a flat surface.
#: ``top_level`` / ``substrate_level`` imaging parameters override LINE / SUBSTRATE per image;
#: ``material_contrast`` scales the spread of the rest around their mean.
SE_YIELD: dict[int, float] = {
    SUBSTRATE: 0.28, LINE: 0.52, DIELECTRIC: 0.35, METAL: 0.62, LINER: 0.75, VOID: 0.04,
    PARTICLE: 0.80, SOLDER: 0.58, IMC: 0.46, SILICON: 0.30, RESIDUE: 0.45,
}

VIEWS = ("top-down", "cross-section", "tilted")


@dataclass
class Scene:
    """A scene in physical units, on the output pixel grid.

    Attributes
    ----------
    height : ndarray, float32, (H, W)
        Topography in nm (0 = floor). Its gradient drives the edge effect.
    material : ndarray, uint8, (H, W)
        Material id per pixel (module constants).
    pixel_nm : float
        Pixel size in nm.
    mask : ndarray, uint16, (H, W)
        Defect instance ids (0 = background, k = instance k). Zeros if not given.
    view : str
        "top-down", "cross-section" or "tilted".
    meta : dict
        JSON-serialisable facts for captions and tests (``layout``, ``orientation``, ``pitch_nm``...).
    edges : dict of ndarray, optional
        Generated edge positions (nm), for the physics tests.
    se_offset : ndarray, float32, (H, W), optional
        Added to the SE yield before imaging (grain, texture, residue films...).
    """

    height: np.ndarray
    material: np.ndarray
    pixel_nm: float
    mask: np.ndarray | None = None
    view: str = "top-down"
    meta: dict[str, Any] = field(default_factory=dict)
    edges: dict[str, np.ndarray] | None = None
    se_offset: np.ndarray | None = None

    def __post_init__(self):
        self.height = np.asarray(self.height, dtype=np.float32)
        self.material = np.asarray(self.material, dtype=np.uint8)
        if self.height.ndim != 2 or self.height.shape != self.material.shape:
            raise ValueError(f"height {self.height.shape} and material {self.material.shape} must be equal 2-D")
        if self.mask is None:
            self.mask = np.zeros(self.height.shape, np.uint16)
        else:
            self.mask = np.asarray(self.mask, dtype=np.uint16)
            if self.mask.shape != self.height.shape:
                raise ValueError("mask must have the shape of height")
        if self.se_offset is not None:
            self.se_offset = np.asarray(self.se_offset, dtype=np.float32)
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")
        self.pixel_nm = float(self.pixel_nm)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height.shape  # type: ignore[return-value]

    def bboxes(self) -> list[list[int]]:
        """``[x0, y0, x1, y1]`` (inclusive-exclusive, pixels) of each mask instance, in id order."""
        return mask_bboxes(self.mask)


def mask_bboxes(mask: np.ndarray) -> list[list[int]]:
    """Bounding boxes ``[x0, y0, x1, y1]`` (x1, y1 exclusive) of the instances 1..max of ``mask``."""
    out: list[list[int]] = []
    if mask is None or not mask.any():  # any() is several times cheaper than nonzero() on an empty mask
        return out
    # One pass over the image (the non-zero pixels), then per instance over those only: defects
    # cover a few % of the frame, so this is several times cheaper than np.unique(mask) plus a
    # full-frame comparison per instance.
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return out
    v = mask[ys, xs]
    ids = np.unique(v)
    if len(ids) == 1:  # ys is sorted (row-major scan): its ends are the extremes
        return [[int(xs.min()), int(ys[0]), int(xs.max()) + 1, int(ys[-1]) + 1]]
    for k in ids:
        sel = v == k
        yk, xk = ys[sel], xs[sel]
        out.append([int(xk.min()), int(yk[0]), int(xk.max()) + 1, int(yk[-1]) + 1])
    return out
