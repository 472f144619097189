"""The dataset browser's logic: a light index of a dataset dir or ImageFolder, filters, pages.

Opening a folder reads its manifest once through :func:`semgen.manifests.iter_source` and keeps a
few short fields per image (:class:`Entry`), never the images and never the full records: a page
decodes only its own thumbnails, and a record's JSON is read back when it is clicked. Nothing here
writes anything.

Examples
--------
>>> idx = DataIndex("demo", "ImageFolder", [
...     Entry("a.png", "bridge", "real"), Entry("b.png", "clean", "real"), Entry("c.png", "bridge", "real")])
>>> class_counts(idx, filter_positions(idx))
{'clean': 1, 'bridge': 2}
>>> filter_positions(idx, classes=["clean"])
[1]
>>> page_slice(list(range(10)), page=2, page_size=4)
([4, 5, 6, 7], 3)
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ImageReadError, SemgenError
from ..taxonomy import CLASSES
from . import draw

#: Thumbnails on one page.
PAGE_SIZE = 48
#: Thumbnail side in pixels.
THUMB = 112
#: Manifest problems kept for the page (all are counted).
MAX_PROBLEMS = 20
#: What an absent facet value reads as in the filters.
NONE = "(none)"


class Entry(NamedTuple):
    """The little the browser keeps per image (a tuple: 100,000 of them stay a few tens of MB)."""

    path: str
    label: str
    source: str
    generator: str = ""        #: ``name@version``, "" for none
    status: str = ""           #: ``curation.status``, "" for none
    reasons: tuple = ()        #: ``curation.reasons``
    mask: str | None = None    #: the mask file, if the record names one


@dataclass
class DataIndex:
    """A folder's images as :class:`Entry` rows, in manifest (or sorted ImageFolder) order."""

    root: str
    kind: str                  #: ``dataset dir`` or ``ImageFolder``
    entries: list
    problems: list = field(default_factory=list)   #: the first manifest lines that made no image
    n_problems: int = 0
    stamp: tuple = ()          #: what the cache compares to see that the folder changed


def _generator(rec: dict) -> str:
    g = rec.get("generator")
    if isinstance(g, dict):
        return f"{g.get('name', '?')}@{g.get('version', '?')}"
    return str(g) if g else ""


def _stamp(root: Path) -> tuple:
    """What changes when the folder's manifest (or, for an ImageFolder, the folder) changes."""
    p = root / "metadata.jsonl"
    st = (p if p.exists() else root).stat()
    return (str(root.resolve()), st.st_mtime_ns, st.st_size)


def build_index(root) -> DataIndex:
    """Read a dataset dir or an ImageFolder tree into a :class:`DataIndex`.

    Manifest lines that cannot be read (a torn last line, an invalid record) do not stop it: they
    are listed in ``problems``, and the images of every other line are browsable.

    Raises
    ------
    SemgenError
        A missing folder, a file, a folder that is neither kind, or one with no image.
    """
    from ..manifests import iter_source
    from ..manifests.imagefolder import is_dataset_dir

    text = str(root).strip()
    if not text:
        raise SemgenError("enter a folder: a dataset dir or an ImageFolder tree")
    root = Path(os.path.expanduser(text))
    if not root.exists():
        raise SemgenError(f"folder {root} does not exist")
    if not root.is_dir():
        raise SemgenError(f"{root} is a file; open a dataset dir or an ImageFolder tree")
    kind = "dataset dir" if is_dataset_dir(root) else "ImageFolder"
    problems: list[str] = []
    n_bad = 0

    def on_bad(line, obj, message):
        nonlocal n_bad
        n_bad += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(f"line {line}: {message}")

    entries = []
    for item in iter_source(root, on_bad=on_bad, what="folder"):
        rec = item.record
        cur = rec.get("curation") if isinstance(rec.get("curation"), dict) else {}
        mask = rec.get("mask_file_name")
        entries.append(Entry(
            str(item.path), item.label, str(rec.get("source") or ""), _generator(rec),
            str(cur.get("status") or ""), tuple(str(r) for r in cur.get("reasons") or ()),
            str(root / mask) if isinstance(mask, str) and mask else None))
    if not entries and not n_bad:
        raise SemgenError(f"{root} holds no images")
    return DataIndex(str(root), kind, entries, problems, n_bad, _stamp(root))


_CACHE: "OrderedDict[str, DataIndex]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: Indexes kept between page loads (the most recently opened ones).
CACHE_SIZE = 4


def open_index(root) -> DataIndex:
    """:func:`build_index`, cached until the folder's manifest changes (a growing run shows its new images)."""
    text = str(root).strip()
    key = os.path.abspath(os.path.expanduser(text)) if text else ""
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        try:
            if _stamp(Path(key)) == hit.stamp:
                with _CACHE_LOCK:
                    _CACHE.move_to_end(key)
                return hit
        except OSError:
            pass
    idx = build_index(root)
    with _CACHE_LOCK:
        _CACHE[key] = idx
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return idx


# -- filters, pages, counts ----------------------------------------------------------------------

FACETS = ("label", "source", "generator", "status")


def facet_values(idx: DataIndex) -> dict[str, list[tuple[str, int]]]:
    """For each filter, its values and how many images have each (classes in taxonomy order)."""
    out = {}
    for f in FACETS:
        c = Counter((getattr(e, f) or NONE) for e in idx.entries)
        if f == "label":
            keys = [k for k in CLASSES if k in c] + sorted(k for k in c if k not in CLASSES)
        else:
            keys = sorted(c)
        out[f] = [(k, c[k]) for k in keys]
    return out


def filter_positions(idx: DataIndex, *, classes=None, sources=None, generators=None, statuses=None) -> list[int]:
    """Positions of the entries that pass every filter; an empty or None filter passes all."""
    wanted = [(f, set(v)) for f, v in zip(FACETS, (classes, sources, generators, statuses)) if v]
    if not wanted:
        return list(range(len(idx.entries)))
    return [i for i, e in enumerate(idx.entries) if all((getattr(e, f) or NONE) in v for f, v in wanted)]


def page_slice(positions: list, page: int, page_size: int = PAGE_SIZE) -> tuple[list, int]:
    """The positions on 1-based ``page`` (clamped to the pages there are) and the number of pages."""
    n_pages = max(1, -(-len(positions) // page_size))
    page = min(max(1, int(page)), n_pages)
    return positions[(page - 1) * page_size: page * page_size], n_pages


def class_counts(idx: DataIndex, positions) -> dict[str, int]:
    """Images per class among ``positions``, in taxonomy order."""
    c = Counter(idx.entries[i].label for i in positions)
    return {k: c[k] for k in CLASSES if k in c} | {k: v for k, v in sorted(c.items()) if k not in CLASSES}


def reason_counts(idx: DataIndex, positions) -> list[tuple[str, int]]:
    """Curation reasons among ``positions``, most frequent first (an image can have several)."""
    c = Counter(r for i in positions for r in idx.entries[i].reasons)
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))


# -- pictures and records ------------------------------------------------------------------------

def caption(e: Entry) -> str:
    """A thumbnail's caption: class, curation status (if any) and file name."""
    status = f" · {e.status}" if e.status else ""
    return f"{e.label}{status} · {Path(e.path).name}"


def load_image(path: str) -> tuple[np.ndarray | None, str | None]:
    """``(gray image, None)`` or ``(None, reason)`` for a file that cannot be read."""
    from ..imageio import read_gray

    try:
        return read_gray(path), None
    except ImageReadError as e:
        return None, e.reason
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"


def thumbnails(idx: DataIndex, positions, side: int = THUMB) -> list[tuple[np.ndarray, str]]:
    """``(RGB thumbnail, caption)`` per position; an unreadable image is a crossed tile naming why."""
    out = []
    for i in positions:
        e = idx.entries[i]
        img, why = load_image(e.path)
        if img is None:
            out.append((draw.placeholder(side, why), f"{caption(e)} · unreadable: {why}"))
        else:
            out.append((draw.to_rgb(draw.thumbnail(img, side)), caption(e)))
    return out


def records_at(idx: DataIndex, positions) -> dict[int, dict]:
    """The full records at ``positions``, read back from the folder in one pass (up to the last one).

    Raises
    ------
    SemgenError
        When the folder changed since it was opened so that a position holds another image.
    """
    from ..manifests import iter_source

    want = set(int(p) for p in positions)
    if not want:
        return {}
    out = {}
    items = iter_source(idx.root, on_bad=lambda *a: None, what="folder")
    for pos, item in enumerate(itertools.islice(items, max(want) + 1)):
        if pos in want:
            if str(item.path) != idx.entries[pos].path:
                raise SemgenError(f"{idx.root} changed since it was opened; open it again")
            out[pos] = item.record
    if len(out) != len(want):
        raise SemgenError(f"{idx.root} changed since it was opened; open it again")
    return out


def detail(idx: DataIndex, pos: int, record: dict | None = None) -> tuple[np.ndarray, str]:
    """The clicked image with its mask and boxes drawn, and a one-line note.

    Returns
    -------
    picture : ndarray, uint8 RGB
    note : str
        What is shown (mask, boxes), or why the image or its mask could not be read.
    """
    e = idx.entries[pos]
    img, why = load_image(e.path)
    if img is None:
        return draw.placeholder(256, why), f"{Path(e.path).name} cannot be read: {why}"
    mask, notes = None, []
    if e.mask:
        mask, mwhy = load_image(e.mask)
        notes.append(f"mask: {Path(e.mask).name}" if mask is not None else f"mask {Path(e.mask).name} unreadable: {mwhy}")
    boxes = (record or {}).get("bboxes") or []
    boxes = [b for b in boxes if isinstance(b, (list, tuple)) and len(b) >= 4]
    if boxes:
        notes.append(f"{len(boxes)} box(es)")
    if not notes:
        notes.append("no mask (a clean or real image)")
    return draw.enlarge(draw.overlay(img, mask, boxes)), "; ".join(notes)
