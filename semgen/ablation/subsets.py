"""Pools of images (a dataset dir or an ImageFolder), k-shot / fixed-amount subsets, and their
materialisation as small dataset dirs that the classifier trains on.

A subset is a pure function of (pool content, k, seed): each class's images are ordered by sha256
(so file names and listing order do not matter), shuffled with a generator seeded from
(seed, class), and the first k are taken. Subsets are therefore nested (k=5 is inside k=10 at the
same seed) and identical for every arm that asks for the same (k, seed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import SemgenError
from ..imageio import sha256_file
from ..manifests import DatasetDir, read_source
from ..manifests.imagefolder import is_dataset_dir
from ..manifests.ops import link_or_copy
from ..seeding import label_key
from ..taxonomy import CLASSES


@dataclass(frozen=True)
class Item:
    """One image of a pool: absolute path, canonical label, sha256 of the file, its manifest record."""

    path: str
    label: str
    sha256: str
    record: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Pool:
    """All images of a dataset dir or ImageFolder tree, with a content key."""

    root: str
    kind: str  # "dataset" | "imagefolder"
    items: list[Item]

    @property
    def key(self) -> str:
        return content_key(self.items)

    def by_label(self) -> dict[str, list[Item]]:
        groups: dict[str, list[Item]] = defaultdict(list)
        for it in self.items:
            groups[it.label].append(it)
        return {c: sorted(groups[c], key=lambda i: (i.sha256, i.path)) for c in CLASSES if c in groups}

    def counts(self) -> dict[str, int]:
        return dict(Counter(i.label for i in self.items))


def content_key(items) -> str:
    """sha256 over the sorted ``sha256 label`` lines: the identity of a set of labelled images."""
    lines = sorted(f"{i.sha256} {i.label}" for i in items)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def load_pool(path, *, source: str = "real", what: str = "data") -> Pool:
    """Read a dataset dir (its manifest) or an ImageFolder tree (hashing every file).

    Raises :class:`SemgenError` if the path is neither, holds no images, or its manifest lists a
    file that is missing.
    """
    root = Path(path).expanduser().resolve()
    dataset = is_dataset_dir(root)
    items = []
    for it in read_source(root, source=source, what=what):
        if not dataset:  # the record an ImageFolder image has always had here (subset dirs keep their bytes)
            items.append(Item(str(it.path), it.label, sha256_file(it.path),
                              {"source": source, "id": it.record["file_name"]}))
            continue
        if not it.path.is_file():
            raise SemgenError(f"{root}: {it.record['file_name']} is listed in the manifest but missing")
        items.append(Item(str(it.path), it.label, it.record["sha256"], it.record))
    return Pool(str(root), "dataset" if dataset else "imagefolder", items)


def _class_order(items: list[Item], seed: int, label: str) -> list[Item]:
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, label_key(label), 0x5EED])
    rng = np.random.default_rng(ss)
    return [items[j] for j in rng.permutation(len(items))]


def per_class_subset(pool: Pool, k: int | None, seed: int) -> list[Item]:
    """At most ``k`` images of every class (``None`` = all), drawn with ``seed``; nested in k."""
    if k is not None and k < 1:
        raise SemgenError(f"shots / amount must be a positive integer or 'all', got {k}")
    out: list[Item] = []
    for label, items in pool.by_label().items():
        order = _class_order(items, seed, label)
        out.extend(order if k is None else order[:k])
    return out


def materialize(items: list[Item], cache: Path, *, tag: str = "") -> Path:
    """A dataset dir holding exactly ``items`` (hard links, else copies), under ``cache/data/<key>``.

    Idempotent: an existing complete dir is reused; a half-written one (a killed run) is rebuilt,
    because the dir only appears once complete (written beside it, then renamed).
    """
    key = content_key(items)
    dest = Path(cache) / "data" / key[:24]
    if (dest / "dataset.json").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:24]}.", dir=dest.parent))
    try:
        ds = DatasetDir.create(tmp)
        recs = []
        used: set[str] = set()
        for it in sorted(items, key=lambda i: (i.label, i.sha256, i.path)):
            suffix = Path(it.path).suffix.lower() or ".png"
            name = f"images/{it.label}/{it.sha256[:20]}{suffix}"
            n = 1
            while name in used:  # the same bytes twice in one class: keep both, as the pool did
                name = f"images/{it.label}/{it.sha256[:20]}_{n}{suffix}"
                n += 1
            used.add(name)
            dst = link_or_copy(it.path, ds.path(name))
            rec = {k: v for k, v in it.record.items() if k not in ("mask_file_name", "bboxes")}
            rec.update(file_name=name, label=it.label, sha256=it.sha256)
            rec.setdefault("source", "real")
            rec["id"] = name
            if "width" not in rec or "height" not in rec:
                from PIL import Image

                with Image.open(dst) as im:
                    rec["width"], rec["height"] = int(im.size[0]), int(im.size[1])
            recs.append(rec)
        with ds.appender() as app:
            for rec in recs:
                app.append(rec)
        ds.write_info(command=f"semgen ablate (subset {tag})".strip(), records=recs,
                      extra={"ablation_subset": {"key": key, "tag": tag, "semgen": __version__}})
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / "dataset.json").exists():  # lost a race to a twin process: theirs is complete
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def describe(items: list[Item]) -> str:
    c = Counter(i.label for i in items)
    return ", ".join(f"{k} {c[k]}" for k in CLASSES if k in c)


def write_json_atomic(path: Path, obj) -> None:
    from ..imageio import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())
