"""Geometric edits shared by the defect classes: join two features, cut one, stamp a region
into a scene with its own instance id.

Feature edits act on a :class:`~.shapes.FeatureSet` (before rendering); coverage edits
(:func:`bridge_coverage`, :func:`open_coverage`) on the coverage raster of any built layout, so
that tests can check connectivity directly; scene edits act on a rendered :class:`~..scene.Scene`
and leave everything outside the stamped region untouched.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..portable import gaussian_blur
from ..scene import Scene
from .shapes import FeatureSet, Shape


class NoSite(ValueError):
    """A built layout has no place for the defect (e.g. no two features near enough to bridge).

    :meth:`~.select.LayoutGenerator.build` then builds the layout again, further along the same
    random stream, so that the image stays a pure function of its seed.
    """


def next_id(scene: Scene) -> int:
    """The next free instance id of the scene's mask."""
    return int(scene.mask.max()) + 1


def stamp(scene: Scene, cov: np.ndarray, *, material: int | None = None, height: float | None = None,
          height_add: np.ndarray | float | None = None, se: float | None = None,
          se_add: np.ndarray | float | None = None, instance: int | None = None, thresh: float = 0.5) -> np.ndarray:
    """Write a defect region into ``scene`` in place; returns the boolean region.

    ``cov`` (float in [0, 1]) blends heights softly; material, SE level and the mask instance
    are set where ``cov >= thresh``.
    """
    region = cov >= thresh
    if height is not None:
        scene.height[:] = scene.height * (1 - cov) + np.float32(height) * cov
    if height_add is not None:
        scene.height += (np.asarray(height_add, np.float32) * cov).astype(np.float32)
    if material is not None:
        scene.material[region] = material
    if se is not None or se_add is not None:
        if scene.se_offset is None:
            scene.se_offset = np.zeros(scene.shape, np.float32)
        if se is not None:
            scene.se_offset[:] = scene.se_offset * (1 - cov) + np.float32(se) * cov
        if se_add is not None:
            scene.se_offset += (np.asarray(se_add, np.float32) * cov).astype(np.float32)
    if instance is not None:
        scene.mask[region] = instance
    return region


def neighbours(fs: FeatureSet, k: int, max_dist: float) -> list[int]:
    """Indices of shapes whose centre lies within ``max_dist`` px of shape ``k``, nearest first."""
    cx, cy = fs.shapes[k].center()
    out = []
    for j, s in enumerate(fs.shapes):
        if j == k:
            continue
        x, y = s.center()
        d = float(np.hypot(x - cx, y - cy))
        if d <= max_dist:
            out.append((d, j))
    return [j for _, j in sorted(out)]


def shape_mask(s: Shape, shape, soft: float = 0.7) -> np.ndarray:
    cov = np.zeros(shape, np.float32)
    s.splat(cov, soft)
    return cov


def interior_shapes(fs: FeatureSet, margin: float) -> list[int]:
    """Shapes whose bounding box lies ``margin`` px inside the image."""
    h, w = fs.shape
    out = []
    for k, s in enumerate(fs.shapes):
        x0, y0, x1, y1 = s.bbox((10 ** 9, 10 ** 9))
        if x0 >= margin and y0 >= margin and x1 <= w - margin and y1 <= h - margin:
            out.append(k)
    return out


def visible_shapes(fs: FeatureSet, margin: float) -> list[int]:
    """Shapes whose centre lies ``margin`` px inside the image."""
    h, w = fs.shape
    out = []
    for k, s in enumerate(fs.shapes):
        x, y = s.center()
        if margin <= x <= w - margin and margin <= y <= h - margin:
            out.append(k)
    return out


def gap_between(cov: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float, float, float]:
    """Along the segment a-b, the first and last background points between two features.

    Returns the end points (x0, y0, x1, y1) of the background stretch nearest the middle.
    """
    n = int(max(4, np.hypot(b[0] - a[0], b[1] - a[1]) * 2))
    t = np.linspace(0, 1, n)
    xs = a[0] + t * (b[0] - a[0])
    ys = a[1] + t * (b[1] - a[1])
    h, w = cov.shape
    v = cov[np.clip(ys.astype(int), 0, h - 1), np.clip(xs.astype(int), 0, w - 1)]
    bg = v < 0.5
    if not bg.any():
        return (xs[n // 2], ys[n // 2], xs[n // 2], ys[n // 2])
    idx = np.nonzero(bg)[0]
    return (float(xs[idx[0]]), float(ys[idx[0]]), float(xs[idx[-1]]), float(ys[idx[-1]]))


def components(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean map."""
    lab, n = ndi.label(binary, structure=np.ones((3, 3), bool))
    return lab, int(n)


def emboss(scene: Scene, dh: np.ndarray, light_deg: float, gain: float, blur_px: float = 0.7) -> None:
    """Directional (topographic) SE shading of a height change ``dh`` (nm), in place.

    Slopes facing the detector direction ``light_deg`` brighten and slopes facing away darken,
    saturating at ``gain`` for slopes steeper than 45 degrees: the relief look of scratches,
    chatter marks and residue in an in-lens / Everhart-Thornley image.
    """
    if gain <= 0:
        return
    d = gaussian_blur(dh, blur_px) if blur_px > 0 else dh.astype(np.float32)
    if scene.se_offset is None:
        scene.se_offset = np.zeros(scene.shape, np.float32)
    # The shading is zero wherever d and its neighbours are, and a defect's relief covers a small part
    # of the frame: work on the box of d's support grown by 2 px. Inside it np.gradient's central
    # differences are those of the whole image; on a box side inside the image both differences are
    # of zeros. (Outside, the whole-image version added tanh(0) = 0.)
    rows, cols = np.flatnonzero(d.any(axis=1)), np.flatnonzero(d.any(axis=0))
    if len(rows) == 0:
        return
    h, w = d.shape
    box = (slice(max(0, rows[0] - 2), min(h, rows[-1] + 3)), slice(max(0, cols[0] - 2), min(w, cols[-1] + 3)))
    db = d[box]
    if min(db.shape) < 2:  # np.gradient needs two samples per axis: do the whole frame
        box, db = (slice(None), slice(None)), d
    gy, gx = np.gradient(db)
    a = np.deg2rad(light_deg)
    slope = -(gx * np.cos(a) + gy * np.sin(a)) / max(scene.pixel_nm, 1e-6)
    scene.se_offset[box] += (gain * np.tanh(slope)).astype(np.float32)


# -- coverage edits (any built layout's raster) ------------------------------------------------------

def _interior(lab: np.ndarray, margin: int) -> np.ndarray:
    """Pixels at least ``margin`` px inside the border of ``lab``'s grid."""
    h, w = lab.shape
    ok = np.zeros(lab.shape, bool)
    ok[margin:h - margin, margin:w - margin] = True
    return ok


def bridge_coverage(cov: np.ndarray, rng: np.random.Generator, width_px: float, margin: int = 3,
                    max_gap_px: float | None = None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Join two neighbouring features of ``cov`` (>= 0.5 is material) with a bar of ``width_px``.

    Picks a random feature, then the place where another feature is nearest to it (among the
    near-nearest places, at random) and draws a capsule across the gap. Returns the new coverage,
    the bridge region (the bar, overlapping both features) and the labels of the two joined features.
    """
    binary = cov >= 0.5
    lab, n = components(binary)
    if n < 2:
        raise NoSite("a bridge needs two features")
    ok = _interior(lab, margin)
    ids = [i for i in np.unique(lab[ok & binary]) if i]
    rng.shuffle(ids)
    for a in ids:
        mine = lab == a
        others = binary & ~mine
        dt, (iy, ix) = ndi.distance_transform_edt(~others, return_indices=True)
        edge = mine & ~ndi.binary_erosion(mine) & ok
        if not edge.any():
            continue
        d = dt[edge]
        lim = d.min() * 1.3 + 1.0
        if max_gap_px is not None and d.min() > max_gap_px:
            continue
        ys, xs = np.nonzero(edge)
        cand = np.nonzero(d <= lim)[0]
        k = int(rng.choice(cand))
        y0, x0 = int(ys[k]), int(xs[k])
        y1, x1 = int(iy[y0, x0]), int(ix[y0, x0])
        b = lab[y1, x1]
        bar = np.zeros(cov.shape, np.float32)
        Shape("capsule", (x0 + 0.5, y0 + 0.5, x1 + 0.5, y1 + 0.5, width_px / 2)).splat(bar)
        new = np.maximum(cov, bar)
        # like the line/space bridges, the region covers the bar and the ends where it merges
        # into both features (so it touches both); it must add material somewhere
        if ((bar >= 0.5) & ~binary).any():
            return new, bar >= 0.5, (int(a), int(b))
    raise NoSite("no pair of features to bridge")


def open_coverage(cov: np.ndarray, rng: np.random.Generator, gap_px: float, margin: int = 4,
                  min_length_px: float = 12.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut an elongated feature of ``cov`` across its width with a gap of ``gap_px``.

    The cut is placed at a random point of the feature's medial axis and oriented across the
    local direction of the feature (principal axis of the nearby pixels). Returns the new
    coverage, the removed region and the label of the cut feature.
    """
    binary = cov >= 0.5
    lab, n = components(binary)
    ok = _interior(lab, margin)
    dt = ndi.distance_transform_edt(binary)
    ids = [i for i in np.unique(lab[ok & binary]) if i]
    rng.shuffle(ids)
    yy, xx = np.mgrid[0:cov.shape[0], 0:cov.shape[1]]
    for a in ids:
        mine = lab == a
        ys, xs = np.nonzero(mine)
        if max(np.ptp(ys), np.ptp(xs)) < min_length_px:
            continue
        half = float(dt[mine].max())
        # ridge points: local maxima of the distance map inside the feature, away from the border
        ridge = mine & ok & (dt >= 0.7 * half) & (dt >= ndi.maximum_filter(dt, 3) - 0.5)
        ry, rx = np.nonzero(ridge)
        if len(ry) == 0:
            continue
        for k in rng.permutation(len(ry))[:6]:
            cy, cx = int(ry[k]), int(rx[k])
            near = mine & ((yy - cy) ** 2 + (xx - cx) ** 2 <= (4 * half + 4) ** 2)
            py, px = np.nonzero(near)
            c = np.cov(np.stack([px - px.mean(), py - py.mean()]))
            evals, evecs = np.linalg.eigh(c)
            ux, uy = evecs[:, 1]  # along the feature
            if ux < 0 or (ux == 0 and uy < 0):  # LAPACK's sign is its own choice: fix one
                ux, uy = -ux, -uy
            vx, vy = -uy, ux      # across it
            L = 2.5 * float(dt[cy, cx]) + 3  # across the local width only
            cut = np.zeros(cov.shape, np.float32)
            Shape("capsule", (cx - vx * L, cy - vy * L, cx + vx * L, cy + vy * L, gap_px / 2)).splat(cut)
            new = cov * (1.0 - cut)
            region = (cut >= 0.5) & binary
            if region.any() and components(new >= 0.5)[1] > n:
                return new, region, int(a)
    raise NoSite("no feature long enough to open")
