"""Where images come from: a dataset dir or an ImageFolder tree, read as ``(path, label, record)``.

Every command that reads images (train, evaluate, diffuse train, ablate, curate, sheet) reads them
through :func:`iter_source`, and every ``--data DIR[=WEIGHT]`` argument is parsed by
:func:`parse_source`, so the two kinds of input mean the same thing everywhere:

- a **dataset dir** (``metadata.jsonl`` / ``dataset.json``): one item per valid manifest record, in
  manifest order; the record is the manifest's.
- an **ImageFolder** (``ROOT/<class>/*.png``): one item per image, sorted; class folder names go
  through the taxonomy's aliases. Its record is made up: ``file_name`` (relative to ROOT),
  ``label``, ``source`` (``"real"`` unless told), and ``view`` where a ``labels.csv`` in ROOT or
  its parent (the layout of the real SEM set) names one for the file.

Examples
--------
>>> parse_source("data/proc=0.5")
DataSource(path=PosixPath('data/proc'), weight=0.5)
>>> parse_source("data/proc=half")
Traceback (most recent call last):
...
semgen.errors.SemgenError: --data data/proc=half: weight 'half' is not a number (use DIR=WEIGHT)
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from ..errors import ManifestError, SemgenError
from .dataset import DatasetDir
from .imagefolder import IMAGE_SUFFIXES, is_dataset_dir, scan_imagefolder
from .jsonl import TornLineWarning, jsonl_lines
from .schema import validate_record

#: ``on_bad(line, object or None, message)``: told about each manifest line that makes no item
#: (``object`` is None where the line does not parse, else the invalid record).
BadLine = Callable[[int, "dict | None", str], None]


class SourceItem(NamedTuple):
    """One image of a source.

    Attributes
    ----------
    path : Path
        The image file.
    label : str or None
        Its canonical class (None for an unlabelled image, ``labels=False`` only).
    record : dict
        The manifest record (dataset dir) or the record made up for it (ImageFolder).
    line : int or None
        Its manifest line (dataset dir only).
    """

    path: Path
    label: str | None
    record: dict
    line: int | None = None


class DataSource(NamedTuple):
    """One ``--data`` argument: a dataset dir or an ImageFolder, and its mixing weight.

    A pair, so ``for path, weight in sources`` works where ``(path, weight)`` tuples did.
    """

    path: Path
    weight: float = 1.0

    @property
    def kind(self) -> str:
        """``"dataset_dir"`` or ``"imagefolder"``."""
        return "dataset_dir" if is_dataset_dir(self.path) else "imagefolder"


def parse_source(arg, *, flag: str = "--data") -> DataSource:
    """``DIR``, ``DIR=WEIGHT``, a ``(path, weight)`` pair or a :class:`DataSource` -> :class:`DataSource`.

    A path that exists is taken whole, even if it contains ``=``. Otherwise the text after the
    last ``=`` must be a positive finite number: ``DIR=half`` is an error, never a path.

    Raises
    ------
    SemgenError
        One line naming ``flag`` and the argument, for a weight that is not a positive number.
    """
    if isinstance(arg, DataSource):
        path, weight = arg
    elif isinstance(arg, (tuple, list)):
        path, weight = arg
    else:
        text = os.fspath(arg) if isinstance(arg, os.PathLike) else str(arg)
        path, weight = text, 1.0
        if "=" in text and not Path(text).exists():
            path, _, w = text.rpartition("=")
            if not path:
                raise SemgenError(f"{flag} {text}: no DIR before '=' (use DIR=WEIGHT)")
            try:
                weight = float(w)
            except ValueError:
                raise SemgenError(f"{flag} {text}: weight '{w}' is not a number (use DIR=WEIGHT)") from None
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise SemgenError(f"{flag} {path}: weight {weight!r} is not a number") from None
    if not math.isfinite(weight) or weight <= 0:
        raise SemgenError(f"{flag} {path}: weight must be a positive number, got {weight:g}")
    return DataSource(Path(path), weight)


def _views(root: Path) -> dict[Path, str]:
    """``{resolved image path: view}`` from a ``labels.csv`` in ``root`` or its parent, if any."""
    views: dict[Path, str] = {}
    for csv_path in (root / "labels.csv", root.parent / "labels.csv"):
        if csv_path.is_file():
            with open(csv_path, newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("file") and row.get("view"):
                        views[(csv_path.parent / row["file"]).resolve()] = row["view"]
    return views


def _dataset_items(root: Path, on_bad: BadLine | None) -> Iterator[SourceItem]:
    ds = DatasetDir.open(root)
    if not ds.manifest_path.exists():
        return
    for n, obj, err, torn in jsonl_lines(ds.manifest_path):
        if obj is None:
            why = f"unreadable line ({err})" + (" (a torn last line: the run that wrote it was interrupted)"
                                                 if torn else "")
            if on_bad is None:
                warnings.warn(f"{ds.manifest_path}:{n}: skipping {why}", TornLineWarning, stacklevel=3)
            else:
                on_bad(n, None, why)
            continue
        try:
            rec = validate_record(obj)
            path = ds.path(rec["file_name"])
        except ManifestError as e:
            if on_bad is None:  # an invalid record is an error unless the caller collects them
                raise ManifestError(f"{ds.manifest_path}:{n}: {e}") from None
            on_bad(n, obj, str(e))
            continue
        yield SourceItem(path, rec["label"], rec, n)


def iter_source(path, *, labels: bool = True, source: str = "real", label_map: dict[str, str] | None = None,
                on_bad: BadLine | None = None, what: str = "data") -> Iterator[SourceItem]:
    """Yield the images of a dataset dir or an ImageFolder tree (see the module docstring).

    Parameters
    ----------
    path : path
        The dataset dir, ImageFolder root or (``labels=False``) any folder or image file.
    labels : bool
        False: a path that is not a dataset dir is read as plain images, every image file under it
        (or the file itself), with label None; class folders are not required.
    source : str
        The ``source`` of an ImageFolder image's made-up record.
    label_map : dict, optional
        ImageFolder folder name -> class, applied before the taxonomy's aliases.
    on_bad : callable, optional
        Called as ``on_bad(line, object, message)`` for each manifest line that makes no item:
        ``object`` is None for a line that does not parse, else the invalid record. Without it an
        unreadable line is skipped with a :class:`~semgen.manifests.TornLineWarning` and an
        invalid record raises :class:`~semgen.errors.ManifestError`.
    what : str
        How an error names the input (``"training data"``, ``"test set dev"``).

    Yields
    ------
    SourceItem
    """
    root = Path(path)
    if not root.exists():
        raise SemgenError(f"{what} {path} does not exist")
    if is_dataset_dir(root):
        yield from _dataset_items(root, on_bad)
        return
    if labels:
        views = _views(root)
        for rel, label in scan_imagefolder(root, label_map):
            p = root / rel
            rec = {"file_name": rel, "label": label, "source": source}
            view = views.get(p.resolve()) if views else None
            if view:
                rec["view"] = view
            yield SourceItem(p, label, rec)
        return
    if root.is_file():
        yield SourceItem(root, None, {"file_name": root.name})
        return
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            yield SourceItem(p, None, {"file_name": p.relative_to(root).as_posix()})


def read_source(path, **kw) -> list[SourceItem]:
    """:func:`iter_source` as a list; an input with no image is a one-line :class:`SemgenError`."""
    items = list(iter_source(path, **kw))
    if not items:
        raise SemgenError(f"{kw.get('what', 'data')} {path} holds no images")
    return items

