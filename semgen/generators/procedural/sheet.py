"""Contact sheets: N images per class of a dataset dir, optionally beside another dir's.

A sheet is for looking (do generated images look like real ones?). Images are read with
:func:`semgen.imageio.read_gray`, so any dataset dir or ImageFolder tree works on either side.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ...errors import SemgenError
from ...imageio import read_gray, write_bytes_atomic
from ...manifests.sources import iter_source
from ...taxonomy import CLASSES, canonical


#: Largest thumbnail side, in pixels (source images are rarely larger).
MAX_CELL = 1024
#: Largest sheet, in pixels: 256 MiB as 8-bit gray, which any machine that runs semgen can hold and
#: encode (a sheet is for looking; 16 images x 10 classes at --cell 1024 is 3% of it).
MAX_SHEET_PIXELS = 1 << 28


def images_by_class(root: str | os.PathLike) -> dict[str, list[Path]]:
    """``{label: [paths]}`` of a dataset dir or an ImageFolder tree (paths sorted)."""
    out: dict[str, list[Path]] = {}
    for it in iter_source(root):
        out.setdefault(it.label, []).append(it.path)
    return {k: sorted(v) for k, v in out.items()}


def _pick(paths: list[Path], k: int, rng: np.random.Generator) -> list[Path]:
    if len(paths) <= k:
        return list(paths)
    idx = np.sort(rng.choice(len(paths), size=k, replace=False))
    return [paths[i] for i in idx]


def _thumb(path: Path, cell: int) -> np.ndarray:
    try:
        img = read_gray(path)
    except SemgenError:
        img = np.zeros((cell, cell), np.uint8)
        cv2.line(img, (0, 0), (cell - 1, cell - 1), 128, 1)
        return img
    interp = cv2.INTER_AREA if min(img.shape) > cell else cv2.INTER_LINEAR
    return cv2.resize(img, (cell, cell), interpolation=interp)


def _grid(paths: list[Path], cell: int, cols: int, rows: int, pad: int) -> np.ndarray:
    g = np.full((rows * (cell + pad) - pad, cols * (cell + pad) - pad), 40, np.uint8)
    for i, p in enumerate(paths[: rows * cols]):
        r, c = divmod(i, cols)
        g[r * (cell + pad): r * (cell + pad) + cell, c * (cell + pad): c * (cell + pad) + cell] = _thumb(p, cell)
    return g


def _text(img: np.ndarray, s: str, x: int, y: int, scale: float = 0.5) -> None:
    cv2.putText(img, s, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)


def contact_sheet(root, out, *, beside=None, per_class: int = 16, classes=None, cell: int = 96,
                  seed: int = 0, cols: int = 8) -> dict:
    """Draw a contact sheet PNG.

    Parameters
    ----------
    root : path
        Dataset dir or ImageFolder tree.
    out : path
        Output PNG.
    beside : path, optional
        A second dir shown to the right of ``root``, class by class (e.g. real images).
    per_class : int
        Images per class and side.
    classes : list of str, optional
        Classes to show (default: those of ``root``, in taxonomy order).
    cell : int
        Thumbnail size in pixels.
    seed : int
        Which images are picked when a class has more than ``per_class``.

    Returns
    -------
    dict with ``out``, ``width``, ``height``, ``classes``.
    """
    if per_class <= 0 or cell < 16:
        raise SemgenError("--per-class must be positive and --cell at least 16")
    if cell > MAX_CELL:
        raise SemgenError(f"--cell must be at most {MAX_CELL} pixels, got {cell}")
    left = images_by_class(root)
    right = images_by_class(beside) if beside else None
    wanted = [canonical(c) for c in classes] if classes else [c for c in CLASSES if c in left]
    wanted = [c for c in wanted if c in left]
    if not wanted:
        raise SemgenError(f"{root} has none of the classes asked for")
    cols = min(cols, per_class)
    rows = -(-per_class // cols)
    pad, label_w, head = 4, 110, 26
    panel_w = cols * (cell + pad) - pad
    panel_h = rows * (cell + pad) - pad
    n_sides = 2 if right is not None else 1
    width = label_w + n_sides * panel_w + (n_sides - 1) * 3 * pad + pad
    height = head + len(wanted) * (panel_h + 3 * pad) + pad
    if width * height > MAX_SHEET_PIXELS:  # checked before numpy is asked for it: --cell 100000 wanted 37 GiB
        raise SemgenError(f"the sheet would be {width:,} x {height:,} pixels, over the {MAX_SHEET_PIXELS:,} "
                          "semgen draws in one PNG; lower --per-class, --cell or the number of --classes")
    sheet = np.full((height, width), 20, np.uint8)
    names = [Path(root).name or str(root)] + ([Path(beside).name or str(beside)] if beside else [])
    for s, nm in enumerate(names):
        _text(sheet, nm[:60], label_w + s * (panel_w + 3 * pad), 18, 0.55)
    for i, c in enumerate(wanted):
        y = head + i * (panel_h + 3 * pad)
        rng = np.random.default_rng([seed, CLASSES.index(c)])
        _text(sheet, c, 6, y + 20, 0.6)
        _text(sheet, f"n={len(left.get(c, []))}", 6, y + 40, 0.4)
        sheet[y: y + panel_h, label_w: label_w + panel_w] = _grid(_pick(left[c], per_class, rng), cell, cols, rows, pad)
        if right is not None:
            x = label_w + panel_w + 3 * pad
            paths = right.get(c, [])
            if paths:
                _text(sheet, f"n={len(paths)}", 6, y + 58, 0.4)
                sheet[y: y + panel_h, x: x + panel_w] = _grid(_pick(paths, per_class, rng), cell, cols, rows, pad)
            else:
                _text(sheet, "(no images of this class)", x + 8, y + 20, 0.5)
    ok, buf = cv2.imencode(".png", sheet, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover
        raise SemgenError("could not encode the sheet")
    out = Path(out)
    try:
        write_bytes_atomic(out, buf.tobytes())
    except OSError as e:
        raise SemgenError(f"cannot write {out}: {e.strerror or e}") from None
    return {"out": str(out), "width": width, "height": height, "classes": wanted}
