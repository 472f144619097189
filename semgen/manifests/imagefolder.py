"""Reading plain ImageFolder trees (``ROOT/<class>/*.png``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import SemgenError
from ..taxonomy import canonical

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}


def scan_imagefolder(root, label_map: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """List ``(relative_path, canonical_label)`` of an ImageFolder tree, sorted.

    Folder names go through ``label_map`` (raw name -> class) and then the taxonomy's aliases;
    an unknown folder name is an error naming the valid classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise SemgenError(f"image folder {root} does not exist or is not a directory")
    label_map = {k.lower(): v for k, v in (label_map or {}).items()}
    items: list[tuple[str, str]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = canonical(label_map.get(sub.name.lower(), sub.name))
        for f in sorted(sub.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
                items.append((f.relative_to(root).as_posix(), label))
    if not items:
        raise SemgenError(f"image folder {root} has no images in class sub-folders")
    return items


def is_dataset_dir(path) -> bool:
    p = Path(path)
    return (p / "metadata.jsonl").exists() or (p / "dataset.json").exists()
